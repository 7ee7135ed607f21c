"""Limits applied before any parsing: request body size, and open event streams.

The body limit is ASGI middleware, so it runs before routing, authentication and body
parsing: a declared Content-Length over the limit is answered 413 without reading a byte,
and a body without one (chunked) is counted as it arrives and cut off at the limit, so no
request makes the backend hold more than the limit in memory. Each path prefix may have
its own limit (OTLP exports are larger than JSON requests).

Event streams hold a connection and a database poller each for as long as a run lasts;
`StreamSlots` caps how many exist at once, and a stream gives its slot back however it
ends (finished, client gone, server shutting down).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException
from fastapi.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int, setting: str) -> None:
        super().__init__(413, f"request body over {limit} bytes (the limit, set by {setting})")
        self.limit = limit


class BodySizeLimit:
    """413 for bodies over `limit_for(path)` → (bytes, name of the setting), before anything reads them."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], tuple[int, str]]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _reject(send, BodyTooLarge(limit, setting))
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, setting)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:  # raised where no handler turned it into a response
            if started:
                raise
            await _reject(send, exc)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reject(send: Send, exc: BodyTooLarge) -> None:
    body = json.dumps({"detail": exc.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class StreamSlots:
    """A counter of open event streams with a ceiling."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        return self._open

    def acquire(self) -> None:
        """Take a slot or raise 429 naming the limit."""
        with self._lock:
            if self._open >= self.limit:
                raise HTTPException(
                    429,
                    f"too many event streams open ({self.limit}, the limit set by FLOWERBED_MAX_SSE_STREAMS); "
                    "close one or retry later",
                    headers={"Retry-After": "5"},
                )
            self._open += 1

    def release(self) -> None:
        with self._lock:
            self._open -= 1


class SlotStreamingResponse(StreamingResponse):
    """A streaming response that returns its slot when it ends, even if it never started streaming."""

    def __init__(self, *args: Any, slots: StreamSlots, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slots.release()
