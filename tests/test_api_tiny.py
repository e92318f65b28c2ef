"""The local API on a tiny real GGUF whose own chat template takes tools and opens `<think>`.

The model has random weights (it talks nonsense, quickly), but llama.cpp really runs it:
a required tool call is sampled through a grammar, so it parses; text after an opened
`<think>` is reasoning; a worker killed mid-answer ends the stream with an error chunk.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import httpx
import openai
import pytest

from app.api.server import ApiServer, ServeConfig
from app.engines.chat_llama.client import ChatEngineClient
from app.models.portable import import_model
from app.paths import hearth_paths
from app.planner import LoadSettings
from app.sessions.serving import CompletionService
from app.store.db import open_database
from tests.gguf_factory import write_tiny_gguf

KEY = "hearth-test-key-for-the-tiny-server"
#: A template in the style of Qwen's and Hermes': it lists `tools` and opens `<think>`.
TOOLS_TEMPLATE = (
    "{%- if tools %}<|system|>You may call: {{ tools | tojson }}\n{% endif %}"
    "{%- for m in messages %}<|{{ m.role }}|>{{ m.content }}"
    "{%- if m.tool_calls %}<tool_call>{{ m.tool_calls | tojson }}</tool_call>{% endif %}\n"
    "{%- endfor %}{% if add_generation_prompt %}<|assistant|><think>{% endif %}"
)
TOOL = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, str]]:
    root = tmp_path_factory.mktemp("api-tiny")
    paths = hearth_paths({"HEARTH_HOME": str(root / "home")}).ensure()
    gguf = write_tiny_gguf(root / "tiny-tools.gguf", chat_ready=True, chat_template=TOOLS_TEMPLATE)
    db = open_database(paths.database)
    (model,) = import_model(gguf, link=True, db=db, paths=paths)
    db.close()
    service = CompletionService(
        lambda: open_database(paths.database), load_settings=LoadSettings(n_ctx=512)
    )
    api = ApiServer(ServeConfig(port=0, key=KEY), service=service)
    api.start()
    yield api, model.name
    api.stop()


@pytest.fixture
def client(served: tuple[ApiServer, str]) -> Iterator[openai.OpenAI]:
    api, _ = served
    assert api.service.wait_idle(30)
    with openai.OpenAI(base_url=f"{api.url}/v1", api_key=KEY, max_retries=0, timeout=60) as c:
        yield c


def test_a_template_with_tools_gets_them_and_a_required_call_parses(
    client: openai.OpenAI, served: tuple[ApiServer, str]
) -> None:
    _, model = served
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Add 2 and 3."}],
        tools=[TOOL],
        tool_choice="required",
        temperature=0,
        max_tokens=80,
    )
    assert reply.choices[0].finish_reason == "tool_calls"
    (call,) = reply.choices[0].message.tool_calls or []
    assert call.function.name == "add"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["a"], int) and isinstance(arguments["b"], int)


def test_text_after_an_opened_think_is_reasoning_content(
    client: openai.OpenAI, served: tuple[ApiServer, str]
) -> None:
    _, model = served
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], temperature=0, max_tokens=12
    )
    message = reply.model_dump()["choices"][0]["message"]
    assert message["reasoning_content"]
    assert "<think>" not in (message["content"] or "")
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Hi"}],
        temperature=0,
        max_tokens=12,
        stream=True,
    )
    deltas = [c.model_dump()["choices"][0]["delta"] for c in stream if c.choices]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == message["reasoning_content"]


def test_a_worker_dying_mid_answer_ends_the_stream_with_an_error_chunk(
    served: tuple[ApiServer, str],
) -> None:
    api, model = served
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 480,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    # The tiny model makes ~1500 tokens/s, so on a busy machine the answer can end before
    # the kill lands: then try again (the kill is sent as soon as the first chunk is out).
    for _attempt in range(3):
        assert api.service.wait_idle(30)
        with httpx.stream(
            "POST", f"{api.url}/v1/chat/completions", json=body, headers=headers, timeout=60
        ) as response:
            assert response.status_code == 200  # sent once the first event is there
            engine = api.service._engine
            assert isinstance(engine, ChatEngineClient) and engine.pid
            os.kill(engine.pid, signal.SIGKILL)
            rest = [line for line in response.iter_lines() if line]
        assert rest[0].startswith("data: {")
        if '"error"' in rest[-2]:
            break
    assert rest[-1] == "data: [DONE]"
    error = json.loads(rest[-2].removeprefix("data: "))
    assert error["error"]["type"] == "server_error"
    assert error["error"]["code"] == "engine_lost"
