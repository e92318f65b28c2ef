"""The remote engine against recorded vLLM-, llama-server- and Ollama-style streams on 127.0.0.1.

Real HTTP on an ephemeral port (tests/remote_replay.py), a real SQLite history, the real
session and CLI: each test fails if the compatibility rule it names breaks.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.cli.main import main
from app.engines.chat_llama.protocol import Done, GenerateRequest, Metrics, TokenEvent
from app.engines.chat_remote.client import DEFAULT_CONTEXT, RemoteChatEngine
from app.engines.chat_remote.probe import check_connection
from app.engines.chat_remote.stream import ChunkAssembler, iter_sse_events
from app.engines.chat_remote.template import SERVER_TEMPLATE, decode_messages
from app.sessions.chat import ChatSession, Reply, Sampling
from app.store import MessageState, open_default_database
from app.store import conversations as convs
from app.store import providers as store
from tests.remote_replay import ReplayServer


@pytest.fixture(autouse=True)
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys go to the private file under the test's HEARTH_HOME, never the real keyring."""
    monkeypatch.setenv("HEARTH_NO_KEYRING", "1")


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayServer]:
    """One recorded-stream server for the module: every scenario is a model id."""
    with ReplayServer.running() as server:
        yield server


@pytest.fixture
def faulty() -> Iterator[ReplayServer]:
    """A server of its own, for tests that switch on server-wide faults."""
    with ReplayServer.running() as server:
        yield server


def provider_for(server: ReplayServer, name: str = "replay", **changes: object) -> store.Provider:
    timeouts = store.Timeouts(connect_s=2.0, read_s=0.5, write_s=2.0, pool_s=2.0)
    fields: dict[str, object] = {"timeouts": timeouts, **changes}
    return store.Provider(name, store.normalise_base_url(server.url), **fields)  # type: ignore[arg-type]


def session_with(server: ReplayServer, **changes: object) -> ChatSession:
    db = open_default_database()
    store.add_provider(db, provider_for(server, **changes), replace_existing=True)
    return ChatSession(db)


def chat(session: ChatSession, model: str, text: str = "Hello!") -> tuple[Reply, convs.Message]:
    session.load_model(f"replay/{model}")
    cid = session.new_conversation()
    reply = session.send(cid, text, Sampling(max_tokens=64))
    return reply, convs.get_message(session.db, reply.message_id)


# --- framing and records ----------------------------------------------------------------------


def test_base_url_is_normalised_to_the_api_root() -> None:
    assert store.normalise_base_url("http://10.0.0.5:8000") == "http://10.0.0.5:8000/v1"
    assert store.normalise_base_url("http://h:11434/v1/") == "http://h:11434/v1"
    assert store.normalise_base_url("https://h/v1/chat/completions") == "https://h/v1"
    assert store.normalise_base_url("https://h/api/openai") == "https://h/api/openai"
    assert store.normalise_base_url("gpu-box:30000") == "http://gpu-box:30000/v1"
    with pytest.raises(store.ProviderError, match="not a server address"):
        store.normalise_base_url("ftp://h/v1")


def test_sse_framing_skips_comments_keepalives_and_joins_multiline_data() -> None:
    lines = [
        ": ping",
        "",
        "event: message",
        'data: {"a":',
        "data: 1}",
        "",
        "",
        "id: 7",
        "data: [DONE]",
    ]
    events = list(iter_sse_events(lines))
    assert [e.data for e in events] == ['{"a":\n1}', "[DONE]"]


def test_provider_records_round_trip_and_the_key_stays_out_of_the_database() -> None:
    db = open_default_database()
    provider = store.Provider(
        "gpu-box",
        store.normalise_base_url("https://gpu-box.lan:8000"),
        headers={"X-Team": "ml"},
        ca_bundle="/etc/ssl/team-ca.pem",
        context_window=32768,
        capabilities=("tools",),
        models=(store.RemoteModel("meta-llama/Llama-3.1-8B-Instruct", 131072),),
    )
    store.add_provider(db, provider)
    got = store.get_provider(db, "gpu-box")
    assert got.base_url == "https://gpu-box.lan:8000/v1"
    assert got.headers == {"X-Team": "ml"} and got.capabilities == ("tools",)
    assert got.context_for("meta-llama/Llama-3.1-8B-Instruct") == 32768  # by hand wins
    found = store.split_remote_model_id(db, "gpu-box/meta-llama/Llama-3.1-8B-Instruct")
    assert found is not None and found[1] == "meta-llama/Llama-3.1-8B-Instruct"
    assert store.split_remote_model_id(db, "elsewhere/model") is None
    with pytest.raises(store.ProviderError, match="already added"):
        store.add_provider(db, provider)
    row = db.execute("SELECT * FROM providers").fetchone()
    assert not any("sk-" in str(value) for value in row)


# --- per-server stream styles, through the real session -----------------------------------


def test_vllm_stream_reasoning_content_and_usage_in_a_chunk_with_empty_choices(
    replay: ReplayServer,
) -> None:
    session = session_with(replay)
    reply, saved = chat(session, "vllm-reasoning")
    assert reply.state == MessageState.COMPLETE
    assert saved.content == "Hello there!" and saved.reasoning == "The user greets me."
    assert (saved.provider, saved.model) == ("replay", "vllm-reasoning")
    assert saved.metrics["prompt_tokens"] == 12 and saved.metrics["generated_tokens"] == 5
    assert saved.metrics["n_ctx"] == 8192  # vLLM's max_model_len, detected
    assert saved.metrics["backend"] == "remote replay"
    body = replay.bodies("vllm-reasoning")[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"][-1] == {"role": "user", "content": "Hello!"}


def test_llama_server_stream_with_pings_and_usage_in_the_final_choice(replay: ReplayServer) -> None:
    _reply, saved = chat(session_with(replay), "llama-server")
    assert saved.state == MessageState.COMPLETE
    assert saved.content == "Hi!" and saved.reasoning == "Think."
    assert saved.metrics["prompt_tokens"] == 9 and saved.metrics["generated_tokens"] == 3


def test_ollama_stream_reasoning_field_without_usage_is_estimated(replay: ReplayServer) -> None:
    session = session_with(replay)
    loaded = session.load_model("replay/ollama")
    assert loaded.n_ctx == DEFAULT_CONTEXT and loaded.note and "--context" in loaded.note
    _reply, saved = chat(session, "ollama")
    assert saved.content == "Hey!" and saved.reasoning == "Hmm, a greeting."
    assert saved.metrics["generated_tokens"] == 4  # chunks with text, as no usage came
    assert saved.metrics["prompt_tokens"] > 0  # Hearth's estimate


def test_raw_think_tags_split_across_chunks_go_to_reasoning(replay: ReplayServer) -> None:
    _reply, saved = chat(session_with(replay), "think-tags")
    assert saved.reasoning == "plan it" and saved.content == "The answer is 4."


def test_tool_call_deltas_are_assembled_by_index(replay: ReplayServer) -> None:
    engine = RemoteChatEngine(provider_for(replay), "tool-calls")
    assembler = ChunkAssembler()
    body = {"model": "tool-calls", "messages": [{"role": "user", "content": "?"}], "stream": True}
    assert list(engine.stream_chat(body, assembler)) == []
    calls = assembler.ordered_tool_calls()
    assert [(c.id, c.name) for c in calls] == [("call_a", "get_weather"), ("call_b", "get_time")]
    assert calls[0].parsed_arguments() == {"city": "Paris"}
    assert calls[1].parsed_arguments() == {"tz": "UTC"}
    assert assembler.finish_reason == "tool_calls"


# --- durability ----------------------------------------------------------------------------


def test_a_connection_cut_mid_answer_keeps_the_partial_as_interrupted(replay: ReplayServer) -> None:
    _reply, saved = chat(session_with(replay), "cut")
    assert saved.state == MessageState.INTERRUPTED
    assert saved.content == "The first half of an answer"
    assert saved.error and "dropped mid-answer" in saved.error


def test_a_stream_without_finish_reason_is_marked_truncated(replay: ReplayServer) -> None:
    _reply, saved = chat(session_with(replay), "no-finish")
    assert saved.state == MessageState.INTERRUPTED
    assert saved.content == "The first half of an answer"
    assert saved.error and "no finish_reason" in saved.error


def test_an_error_chunk_mid_stream_fails_with_the_servers_words(replay: ReplayServer) -> None:
    _reply, saved = chat(session_with(replay), "error-mid-stream")
    assert saved.state == MessageState.FAILED
    assert saved.content == "The first half of an answer"
    assert saved.error and "CUDA out of memory" in saved.error


def test_a_silent_server_times_out_in_one_sentence(replay: ReplayServer) -> None:
    _reply, saved = chat(session_with(replay), "silent")
    assert saved.state == MessageState.FAILED
    assert saved.error and "accepted the request but sent nothing for 0.5 s" in saved.error


def test_cancel_ends_the_stream_with_done_cancelled(replay: ReplayServer) -> None:
    engine = RemoteChatEngine(provider_for(replay), "vllm-reasoning")
    engine.load(engine.load_request())
    prompt = SERVER_TEMPLATE.render([{"role": "user", "content": "Hi"}])
    events = []
    for event in engine.generate(GenerateRequest("r1", prompt)):
        events.append(event)
        if isinstance(event, TokenEvent):
            engine.cancel("r1")
    assert isinstance(events[-1], Done) and events[-1].reason == "cancelled"
    assert isinstance(events[-2], Metrics)
    texts = [e.text for e in events if isinstance(e, TokenEvent)]
    assert texts == ["<think>The user ", "</think>"]  # the reasoning is closed, nothing more


# --- per-provider request differences --------------------------------------------------------


def test_max_tokens_switches_to_max_completion_tokens_on_a_400_and_is_remembered(
    replay: ReplayServer,
) -> None:
    session = session_with(replay)
    _reply, saved = chat(session, "wants-max-completion-tokens")
    assert saved.state == MessageState.COMPLETE and saved.content == "OK"
    first, second = replay.bodies("wants-max-completion-tokens")[-2:]
    assert "max_tokens" in first and "max_completion_tokens" not in first
    assert second["max_completion_tokens"] == first["max_tokens"] and "max_tokens" not in second
    assert store.get_provider(session.db, "replay").token_param == "max_completion_tokens"


def test_stream_options_are_dropped_for_a_server_that_refuses_them(replay: ReplayServer) -> None:
    _reply, saved = chat(session_with(replay), "no-stream-options")
    assert saved.state == MessageState.COMPLETE
    assert "stream_options" not in replay.bodies("no-stream-options")[-1]


def test_history_is_trimmed_to_the_servers_context_window(replay: ReplayServer) -> None:
    session = session_with(replay)
    session.load_model("replay/small-context")  # max_model_len 256
    cid = session.new_conversation()
    for i in range(4):
        session.send(cid, f"Question {i}: " + "words " * 60, Sampling(max_tokens=32))
    reply = session.send(cid, "Last question?", Sampling(max_tokens=32))
    assert reply.dropped_messages > 0
    sent = replay.bodies("small-context")[-1]["messages"]
    assert sent[-1]["content"] == "Last question?"
    assert not any(m["content"].startswith("Question 0") for m in sent)
    assert sent[0]["role"] == "user"  # it still starts with a question
    assert sent and replay.bodies("small-context")[-1]["max_tokens"] <= 32


def test_a_server_that_ignores_stream_still_answers(replay: ReplayServer) -> None:
    _reply, saved = chat(session_with(replay), "ignores-stream")
    assert saved.state == MessageState.COMPLETE and saved.content == "OK"


def test_the_key_and_extra_headers_are_sent_and_nothing_else_of_the_environment(
    replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # would break every request if used
    provider = provider_for(replay, headers={"X-Team": "ml"})
    engine = RemoteChatEngine(provider, "plain", api_key="sk-abc")
    engine.list_models()
    sent = replay.headers[-1]
    assert sent["authorization"] == "Bearer sk-abc" and sent["x-team"] == "ml"
    assert sent["user-agent"].startswith("Hearth/")


def test_server_template_round_trips_messages() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "日本"}]
    assert decode_messages(SERVER_TEMPLATE.render(messages)) == messages
    assert decode_messages("plain text") == [{"role": "user", "content": "plain text"}]


# --- test connection: one sentence for each failure ------------------------------------------


def test_connection_test_passes_all_three_checks(replay: ReplayServer) -> None:
    report = check_connection(provider_for(replay), None, "vllm-reasoning")
    assert report.ok, report.checks
    assert [c.name for c in report.checks] == ["models", "one-token", "stream"]
    assert any(m.id == "vllm-reasoning" and m.context_window == 8192 for m in report.models)


def test_connection_test_names_a_refused_connection() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    provider = store.Provider("gone", f"http://127.0.0.1:{port}/v1")
    report = check_connection(provider, None)
    assert not report.ok
    assert "refused the connection" in report.checks[0].sentence


def test_connection_test_names_a_wrong_key(faulty: ReplayServer) -> None:
    faulty.api_key = "sk-right"
    report = check_connection(provider_for(faulty), "sk-wrong", "plain")
    assert "refused the API key (401" in report.checks[0].sentence
    assert check_connection(provider_for(faulty), "sk-right", "vllm-reasoning").ok


def test_connection_test_names_a_missing_model_list_and_model(faulty: ReplayServer) -> None:
    faulty.models_status = 404
    report = check_connection(provider_for(faulty), None, "no-such-model")
    models, one_token, _stream = report.checks
    assert not models.ok and "(404" in models.sentence and "/v1/models" in models.sentence
    assert not one_token.ok and "'no-such-model' does not exist" in one_token.sentence


def test_connection_test_names_a_timeout(faulty: ReplayServer) -> None:
    faulty.hang_everything = True
    report = check_connection(provider_for(faulty), None)
    assert report.checks[0].sentence.endswith("accepted the request but sent nothing for 0.5 s.")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_connection_test_names_an_untrusted_certificate_and_a_ca_bundle_fixes_it(
    tls_files: tuple[Path, Path],
) -> None:
    cert_file, key_file = tls_files
    server = ReplayServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/v1"
        report = check_connection(store.Provider("tls", url), None, "vllm-reasoning")
        assert "TLS certificate of" in report.checks[0].sentence
        assert "could not be verified" in report.checks[0].sentence
        trusted = store.Provider("tls", url, ca_bundle=str(cert_file))
        assert check_connection(trusted, None, "vllm-reasoning").ok
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --- the CLI as a person uses it -------------------------------------------------------------


def test_cli_add_list_test_rm(
    replay: ReplayServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLAY_KEY", "sk-test-123")
    assert main(["remote", "add", "replay", replay.url, "--key-env", "REPLAY_KEY"]) == 0
    out = capsys.readouterr()
    assert "http://127.0.0.1" in out.out and "warning" not in out.err  # loopback: no warning
    assert main(["remote", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "replay" and listed[0]["has_key"] is True
    assert "sk-test-123" not in json.dumps(listed)
    assert main(["remote", "test", "replay", "--model", "vllm-reasoning"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok  ") == 3 and "hearth chat -m replay/vllm-reasoning" in out
    assert main(["remote", "rm", "replay", "--yes"]) == 0
    capsys.readouterr()
    assert main(["remote", "list"]) == 0
    assert "No remote providers" in capsys.readouterr().out


def test_cli_add_warns_about_a_key_over_plain_http_to_another_machine(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAN_KEY", "sk-lan")
    assert main(["remote", "add", "lan", "http://192.168.1.20:8000", "--key-env", "LAN_KEY"]) == 0
    err = capsys.readouterr().err
    assert "unencrypted over http:// to 192.168.1.20" in err
    assert main(["remote", "add", "lan2", "http://192.168.1.20:8000"]) == 0  # no key: no warning
    assert "warning" not in capsys.readouterr().err


def test_cli_chat_through_a_remote_keeps_local_history(
    replay: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["remote", "add", "replay", replay.url, "--read-timeout", "5"]) == 0
    capsys.readouterr()
    assert main(["chat", "-m", "replay/vllm-reasoning", "--json", "Hello!"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["content"] == "Hello there!" and reply["state"] == "complete"
    assert main(["history", "export", reply["conversation_id"], "--format", "json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["model"] == "replay/vllm-reasoning"
    assert exported["messages"][-1]["provider"] == "replay"
    assert exported["messages"][-1]["reasoning"] == "The user greets me."


def test_nothing_is_sent_to_a_provider_that_was_not_added(
    replay: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(replay.requests)
    assert main(["chat", "-m", "replay/vllm-reasoning", "Hello!"]) == 1  # not added here
    assert len(replay.requests) == before
    assert "error:" in capsys.readouterr().err
