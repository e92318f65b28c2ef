"""The local API with real clients on the real Gemma model: the `openai` package and raw HTTP.

One server (uvicorn in a thread, an ephemeral port on 127.0.0.1) and one loaded model are
shared by the module. Every JSON body and stream chunk is checked against the OpenAI
schemas in tests/data/openai/.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import openai
import pytest

from app.api.server import ApiServer, ServeConfig
from app.models.portable import import_model
from app.paths import hearth_paths
from app.planner import LoadSettings
from app.sessions.serving import CompletionService
from app.store.db import open_database

KEY = "hearth-test-key-for-the-gemma-server"
SCHEMAS = Path(__file__).parent / "data" / "openai"


def _schema(name: str) -> Any:
    return jsonschema_rs.validator_for(json.loads((SCHEMAS / f"{name}.json").read_text()))


CHAT, CHUNK, MODELS, ERROR = (
    _schema(n) for n in ("chat_completion", "chat_completion_chunk", "model_list", "error")
)
QUESTION = [{"role": "user", "content": "Name three colours."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


class Server:
    def __init__(self, api: ApiServer, model: str) -> None:
        self.api = api
        self.model = model
        self.finished: dict[str, tuple[str, int]] = {}
        self.finished_event: dict[str, threading.Event] = {}

    @property
    def service(self) -> CompletionService:
        return self.api.service


@pytest.fixture(scope="module")
def server(gemma_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    paths = hearth_paths({"HEARTH_HOME": str(tmp_path_factory.mktemp("api-gemma"))}).ensure()
    db = open_database(paths.database)
    (model,) = import_model(gemma_gguf, link=True, db=db, paths=paths)
    db.close()
    service = CompletionService(
        lambda: open_database(paths.database),
        load_settings=LoadSettings(n_ctx=1024),
        max_queue=1,  # one request at a time: a second one gets the 429
    )
    api = ApiServer(ServeConfig(port=0, key=KEY), service=service)
    served = Server(api, model.name)

    def on_finished(rid: str, reason: str, tokens: int) -> None:
        served.finished[rid] = (reason, tokens)
        served.finished_event.setdefault(rid, threading.Event()).set()

    service.on_finished = on_finished
    api.start()
    yield served
    api.stop()


@pytest.fixture
def client(server: Server) -> Iterator[openai.OpenAI]:
    assert server.service.wait_idle(30), "the previous test's request is still running"
    with openai.OpenAI(
        base_url=f"{server.api.url}/v1", api_key=KEY, max_retries=0, timeout=120
    ) as c:
        yield c


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    assert server.service.wait_idle(30)
    with httpx.Client(
        base_url=server.api.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120
    ) as c:
        yield c


def sse_events(response: httpx.Response) -> list[str]:
    """The `data:` payloads of an SSE body, checking the framing on the way."""
    text = response.read().decode()
    assert text.endswith("\n\n")
    payloads = []
    for block in text.split("\n\n")[:-1]:
        lines = block.split("\n")
        assert len(lines) == 1 and lines[0].startswith("data: "), block
        payloads.append(lines[0].removeprefix("data: "))
    return payloads


def test_models_are_listed_by_library_name(
    client: openai.OpenAI, http: httpx.Client, server: Server
) -> None:
    assert [m.id for m in client.models.list()] == [server.model]
    assert "/" not in server.model and not server.model.endswith(".gguf")
    MODELS.validate(http.get("/v1/models").json())
    assert client.models.retrieve(server.model).id == server.model


def test_streamed_and_non_streamed_replies_are_the_same_at_temperature_zero(
    client: openai.OpenAI, server: Server
) -> None:
    # Asked once first: the worker keeps the conversation's prefix in its KV cache, so the
    # two compared requests both find it there and evaluate only the prompt's last token.
    # (A fresh prompt evaluated as one batch and a cached one can round differently: on
    # AVX-512 CPUs Gemma's greedy path then parts after a few tokens.)
    client.chat.completions.create(model=server.model, messages=QUESTION, max_tokens=1)
    whole = client.chat.completions.create(
        model=server.model, messages=QUESTION, temperature=0, max_tokens=24
    )
    CHAT.validate(whole.model_dump(mode="json", exclude_unset=True))
    answer = whole.choices[0].message.content
    assert answer and whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage is not None and whole.usage.prompt_tokens > 0
    assert 0 < whole.usage.completion_tokens <= 24

    stream = client.chat.completions.create(
        model=server.model,
        messages=QUESTION,
        temperature=0,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == answer
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason


def test_sse_framing_chunks_and_done(http: httpx.Client, server: Server) -> None:
    body = {
        "model": server.model,
        "messages": QUESTION,
        "max_tokens": 8,
        "temperature": 0,
        "stream": True,
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        payloads = sse_events(response)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    for chunk in chunks:
        CHUNK.validate(chunk)
        assert "usage" not in chunk  # only with stream_options.include_usage
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert len({c["id"] for c in chunks}) == 1

    with http.stream(
        "POST", "/v1/chat/completions", json={**body, "stream_options": {"include_usage": True}}
    ) as response:
        chunks = [json.loads(p) for p in sse_events(response)[:-1]]
    for chunk in chunks:
        CHUNK.validate(chunk)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])


def test_a_required_tool_call_comes_back_as_tool_calls(
    client: openai.OpenAI, server: Server
) -> None:
    # Gemma's template has no tools: Hearth describes them in the system turn, and a
    # required call is sampled through a grammar made from the tool's parameters.
    reply = client.chat.completions.create(
        model=server.model,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
        max_tokens=60,
    )
    CHAT.validate(reply.model_dump(mode="json", exclude_unset=True))
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)

    # The tool's answer goes back in, and the model answers in text.
    follow = client.chat.completions.create(
        model=server.model,
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'},
        ],
        tools=[WEATHER_TOOL],
        tool_choice="none",
        temperature=0,
        max_tokens=16,
    )
    assert follow.choices[0].message.tool_calls is None
    assert follow.choices[0].message.content


def test_response_format_json_object_gives_json(client: openai.OpenAI, server: Server) -> None:
    reply = client.chat.completions.create(
        model=server.model,
        messages=[{"role": "user", "content": "Give a JSON object with a name."}],
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "person",
                "schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "maxLength": 20}},
                    "required": ["name"],
                },
            },
        },
        temperature=0,
        max_tokens=40,
    )
    assert isinstance(json.loads(reply.choices[0].message.content or "")["name"], str)


def test_legacy_completions_continue_raw_text(client: openai.OpenAI, server: Server) -> None:
    whole = client.completions.create(
        model=server.model, prompt="The sky is", max_tokens=6, temperature=0
    )
    assert whole.choices[0].text and whole.usage and whole.usage.completion_tokens <= 6
    streamed = client.completions.create(
        model=server.model, prompt="The sky is", max_tokens=6, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == whole.choices[0].text


def test_errors_arrive_as_openai_exceptions(client: openai.OpenAI, server: Server) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.api.url}/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=QUESTION)
    ERROR.validate(missing.value.response.json())
    with pytest.raises(openai.BadRequestError) as embeddings:
        client.embeddings.create(model=server.model, input="hello")
    assert "embedding" in embeddings.value.message


def test_a_full_queue_answers_429_with_retry_after(client: openai.OpenAI, server: Server) -> None:
    with client.chat.completions.create(
        model=server.model, messages=QUESTION, max_tokens=400, stream=True
    ) as running:
        next(iter(running))  # the one place in the queue is taken
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model=server.model, messages=QUESTION, max_tokens=4)
        assert int(refused.value.response.headers["retry-after"]) > 0
        ERROR.validate(refused.value.response.json())


def test_closing_the_stream_cancels_the_generation_in_the_worker(
    http: httpx.Client, server: Server
) -> None:
    body = {
        "model": server.model,
        "messages": QUESTION,
        "max_tokens": 900,
        "stream": True,
        "temperature": 1.0,
    }
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = response.iter_lines()
        first = json.loads(next(line for line in lines if line).removeprefix("data: "))
        rid = first["id"].removeprefix("chatcmpl-")
        done = server.finished_event.setdefault(rid, threading.Event())
    # The client has gone: the worker must stop generating within a second.
    assert done.wait(1.0), "the worker was still generating a second after the client left"
    reason, tokens = server.finished[rid]
    assert reason == "cancelled" and tokens < 900
