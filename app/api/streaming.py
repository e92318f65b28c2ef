"""From a blocking session iterator to the event loop, and Server-Sent Events to the client.

A reply is produced by `CompletionService` in a thread (the engine's calls block); its
events reach the event loop through an asyncio queue. `EventStream` sends them as SSE and
listens for the client going away at the same time: a closed connection cancels the
generation in the worker at once, not at the next token that fails to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger(__name__)

_END = object()


class ThreadedEvents:
    """Runs `produce()` (a blocking iterator) in a daemon thread; iterate it asynchronously.

    An exception in the thread comes out of the async iteration. `on_close` runs in the
    thread when the iterator ends, however it ends (it releases the request's queue place).
    """

    def __init__(self, produce: Callable[[], Iterator[Any]], on_close: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._produce = produce
        self._on_close = on_close
        self._thread = threading.Thread(target=self._run, name="api-reply", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: the server is shutting down
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _run(self) -> None:
        try:
            for item in self._produce():
                self._put(item)
        except BaseException as exc:  # delivered to the awaiting side
            self._put(_Failure(exc))
        finally:
            try:
                self._on_close()
            finally:
                self._put(_END)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def sse(data: Any) -> bytes:
    """One SSE event: `data: <json>` and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


class EventStream(Response):
    """A text/event-stream response that calls `on_disconnect` the moment the client leaves."""

    media_type = "text/event-stream"

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        on_disconnect: Callable[[], None],
        status_code: int = 200,
    ) -> None:
        super().__init__(status_code=status_code, media_type=self.media_type)
        self.chunks = chunks
        self.on_disconnect = on_disconnect
        self.headers["cache-control"] = "no-cache"
        self.headers["x-accel-buffering"] = "no"  # proxies must not hold the stream back
        del self.headers["content-length"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        gone = False

        async with anyio.create_task_group() as tasks:

            async def watch() -> None:
                nonlocal gone
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        gone = True
                        self.on_disconnect()
                        tasks.cancel_scope.cancel()
                        return

            tasks.start_soon(watch)
            try:
                async for chunk in self.chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except OSError:  # the connection broke while sending
                gone = True
                self.on_disconnect()
            tasks.cancel_scope.cancel()
        if gone:
            log.info("API client left during a streamed reply; its generation was cancelled")
