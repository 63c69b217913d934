"""Request body size limit as plain ASGI middleware: refused from Content-Length before a byte is read, and
counted while streaming when the client sends no length (chunked), so an oversized upload never fills memory."""

from __future__ import annotations

import json


class _TooLarge(Exception):
    pass


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = f"the upload limit is {self.max_bytes} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return await _send_error(send, 400, f"Content-Length must be an integer, got {length[:40]!r}")
            if n > self.max_bytes:
                return await _send_error(send, 413, f"request body is {n} bytes; {limit}")
        seen, started = 0, False

        async def counted():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return msg

        async def tracked(msg):
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await _send_error(send, 413, f"request body exceeds {self.max_bytes} bytes; {limit}")
