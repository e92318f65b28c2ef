"""A recorded-stream OpenAI-compatible server on 127.0.0.1, for the remote engine's tests.

Each model id the server lists is a scenario: the stream a real server sends, in its own
style. The streams follow what these servers send (field names, where usage comes, how
reasoning is named):

- `vllm-reasoning`: vLLM with a reasoning parser: `reasoning_content` deltas, a final
  chunk with `finish_reason`, then usage in a chunk with empty `choices`, `[DONE]`.
- `llama-server`: llama.cpp's server: `reasoning_content`, usage and `timings` in the
  final choice chunk, and `: ping` comments and blank keep-alives between chunks.
- `ollama`: Ollama's `/v1`: `reasoning` deltas, no usage at all.
- `think-tags`: raw `<think>` tags inside `content`, split across chunks.
- `tool-calls`: two tool calls whose deltas are split across chunks and interleaved.
- `cut`: a few chunks, then the connection is dropped (no final chunk of the body).
- `no-finish`: a few chunks and `[DONE]`, but no `finish_reason` ever.
- `error-mid-stream`: a few chunks, then an `{"error": ...}` chunk.
- `wants-max-completion-tokens`: answers 400 naming `max_tokens` until asked with
  `max_completion_tokens` (OpenAI's newer models).
- `no-stream-options`: answers 400 naming `stream_options` when it is sent (older servers).
- `silent`: accepts the request and never answers (until the server stops).
- `ignores-stream`: answers one JSON completion even when asked to stream.

Server-wide faults: `api_key` (401 without it), `models_status` (e.g. 404 for the list).
Every request body is recorded in `requests`.

Run it by hand for a demo: `python -m tests.remote_replay --port 8766`.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CREATED = 1_733_000_000


def _chunk(
    model: str, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return {
        "id": "chatcmpl-replay",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [choice],
        **extra,
    }


def _data(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def vllm_reasoning(model: str) -> list[bytes]:
    return [
        _data(_chunk(model, {"role": "assistant", "content": ""})),
        _data(_chunk(model, {"reasoning_content": "The user "})),
        _data(_chunk(model, {"reasoning_content": "greets me."})),
        _data(_chunk(model, {"content": "Hello"})),
        _data(_chunk(model, {"content": " there!"})),
        _data(_chunk(model, {}, "stop")),
        _data(
            {
                "id": "chatcmpl-replay",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "choices": [],
                "usage": USAGE,
            }
        ),
        DONE,
    ]


def llama_server(model: str) -> list[bytes]:
    return [
        b": ping\n\n",
        _data(_chunk(model, {"role": "assistant", "content": None})),
        b"\n",
        _data(_chunk(model, {"reasoning_content": "Think."})),
        b": ping - 2026-12-01 12:00:00\n\n",
        _data(_chunk(model, {"content": "Hi"})),
        b"\n\n",
        _data(_chunk(model, {"content": "!"})),
        _data(
            _chunk(
                model,
                {},
                "stop",
                usage={"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
                timings={"prompt_n": 9, "predicted_n": 3},
            )
        ),
        DONE,
    ]


def ollama(model: str) -> list[bytes]:
    return [
        _data(_chunk(model, {"role": "assistant", "content": "", "reasoning": "Hmm, "})),
        _data(_chunk(model, {"role": "assistant", "content": "", "reasoning": "a greeting."})),
        _data(_chunk(model, {"role": "assistant", "content": "Hey"})),
        _data(_chunk(model, {"role": "assistant", "content": "!"})),
        _data(_chunk(model, {"role": "assistant", "content": ""}, "stop")),
        DONE,
    ]


def think_tags(model: str) -> list[bytes]:
    return [
        _data(_chunk(model, {"content": "<thi"})),
        _data(_chunk(model, {"content": "nk>plan it</th"})),
        _data(_chunk(model, {"content": "ink>\n\nThe answer"})),
        _data(_chunk(model, {"content": " is 4."})),
        _data(_chunk(model, {}, "stop")),
        DONE,
    ]


def tool_calls(model: str) -> list[bytes]:
    def call(index: int, **function: Any) -> dict[str, Any]:
        piece: dict[str, Any] = {"index": index, "function": function}
        return {"tool_calls": [piece]}

    first = call(0, name="get_weather", arguments="")
    first["tool_calls"][0].update(id="call_a", type="function")
    second = call(1, name="get_time", arguments='{"tz"')
    second["tool_calls"][0].update(id="call_b", type="function")
    return [
        _data(_chunk(model, {"role": "assistant", "content": None})),
        _data(_chunk(model, first)),
        _data(_chunk(model, call(0, arguments='{"city": '))),
        _data(_chunk(model, second)),
        _data(_chunk(model, call(0, arguments='"Paris"}'))),
        _data(_chunk(model, call(1, arguments=': "UTC"}'))),
        _data(_chunk(model, {}, "tool_calls")),
        DONE,
    ]


def partial(model: str) -> list[bytes]:
    return [
        _data(_chunk(model, {"role": "assistant", "content": ""})),
        _data(_chunk(model, {"content": "The first half"})),
        _data(_chunk(model, {"content": " of an answer"})),
    ]


def error_mid_stream(model: str) -> list[bytes]:
    return [
        *partial(model),
        _data({"error": {"message": "CUDA out of memory", "type": "server_error", "code": 500}}),
    ]


def plain(model: str) -> list[bytes]:
    return [
        _data(_chunk(model, {"role": "assistant", "content": "OK"})),
        _data(_chunk(model, {}, "stop")),
        DONE,
    ]


@dataclass
class Scenario:
    """How the server answers a chat completion for one model id."""

    stream: list[bytes] = field(default_factory=list)
    cut: bool = False  # drop the connection after the stream instead of ending the body
    hang: bool = False  # read the request, never answer
    refuse: str | None = None  # answer 400 naming this field while the body has it
    status: int | None = None  # answer this status with an OpenAI error envelope
    entry: dict[str, Any] = field(default_factory=dict)  # extra /v1/models fields
    ignores_stream: bool = False  # answer one JSON completion even when asked to stream


def default_scenarios() -> dict[str, Scenario]:
    return {
        "vllm-reasoning": Scenario(vllm_reasoning("vllm-reasoning"), entry={"max_model_len": 8192}),
        "llama-server": Scenario(
            llama_server("llama-server"), entry={"meta": {"n_ctx_train": 32768}}
        ),
        "ollama": Scenario(ollama("ollama")),
        "think-tags": Scenario(think_tags("think-tags")),
        "tool-calls": Scenario(tool_calls("tool-calls")),
        "cut": Scenario(partial("cut"), cut=True),
        "no-finish": Scenario([*partial("no-finish"), DONE]),
        "error-mid-stream": Scenario(error_mid_stream("error-mid-stream")),
        "wants-max-completion-tokens": Scenario(
            plain("wants-max-completion-tokens"), refuse="max_tokens"
        ),
        "no-stream-options": Scenario(plain("no-stream-options"), refuse="stream_options"),
        "silent": Scenario(hang=True),
        "small-context": Scenario(plain("small-context"), entry={"max_model_len": 256}),
        "ignores-stream": Scenario(ignores_stream=True),
    }


class ReplayServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, scenarios: dict[str, Scenario] | None = None, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.scenarios = scenarios if scenarios is not None else default_scenarios()
        self.api_key: str | None = None
        self.models_status: int | None = None
        self.hang_everything = False
        self.requests: list[tuple[str, str, dict[str, Any]]] = []  # (method, path, body)
        self.headers: list[dict[str, str]] = []  # each request's headers, in the same order
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up (a cancelled stream, a timeout) are expected here."""
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def bodies(self, model: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for m, p, b in self.requests if m == "POST" and b.get("model") == model]

    @classmethod
    @contextmanager
    def running(cls, scenarios: dict[str, Scenario] | None = None) -> Iterator[ReplayServer]:
        server = cls(scenarios)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.stopping.set()
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


class _Handler(BaseHTTPRequestHandler):
    server: ReplayServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._record({})
        if self._refused():
            return
        if self.path.rstrip("/") != "/v1/models":
            return self._error(404, f"No route for {self.path}")
        if self.server.models_status:
            return self._error(self.server.models_status, "The model list is not here.")
        data = [
            {"id": name, "object": "model", "created": CREATED, "owned_by": "replay", **s.entry}
            for name, s in self.server.scenarios.items()
        ]
        self._json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self._error(400, "The body is not JSON.")
        self._record(body)
        if self._refused():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, f"No route for {self.path}")
        scenario = self.server.scenarios.get(str(body.get("model")))
        if scenario is None:
            return self._error(404, f"The model '{body.get('model')}' does not exist.")
        if scenario.hang:
            self.server.stopping.wait(60)
            return
        if scenario.status:
            return self._error(scenario.status, "Replayed failure.")
        if scenario.refuse and scenario.refuse in body:
            other = "max_completion_tokens" if scenario.refuse == "max_tokens" else ""
            hint = f" Use '{other}' instead." if other else ""
            return self._error(
                400, f"Unsupported parameter: '{scenario.refuse}' is not supported.{hint}"
            )
        if not body.get("stream") or scenario.ignores_stream:
            return self._json(200, _completion(str(body["model"]), scenario))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for piece in scenario.stream:
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.flush()
        if scenario.cut:
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _record(self, body: dict[str, Any]) -> None:
        with self.server.lock:
            self.server.requests.append((self.command, self.path, body))
            self.server.headers.append({k.lower(): v for k, v in self.headers.items()})

    def _refused(self) -> bool:
        if self.server.hang_everything:
            self.server.stopping.wait(60)
            self.close_connection = True
            return True
        key = self.server.api_key
        if key and self.headers.get("Authorization") != f"Bearer {key}":
            self._error(401, "Incorrect API key provided.", kind="invalid_request_error")
            return True
        return False

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._json(status, {"error": {"message": message, "type": kind, "code": status}})

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _completion(model: str, scenario: Scenario) -> dict[str, Any]:
    return {
        "id": "chatcmpl-replay",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "OK"},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }


def main() -> None:  # pragma: no cover - a demo
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8766)
    server = ReplayServer(port=parser.parse_args().port)
    print(f"replaying at {server.url}/v1 (models: {', '.join(server.scenarios)})")
    server.serve_forever()


if __name__ == "__main__":  # pragma: no cover
    main()
