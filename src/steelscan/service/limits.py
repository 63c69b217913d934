"""Request body size limit as plain ASGI middleware: refused from Content-Length before a byte is read, and
counted while streaming when the client sends no length (chunked), so an oversized upload never fills memory."""

from __future__ import annotations

import json


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
        seen, exceeded, sent = 0, False, False

        async def counted():
            # Past the limit the app is told the client left, so it stops reading; whatever it answers
            # then (frameworks turn a broken body into a 400) is replaced by the 413 below.
            nonlocal seen, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return msg

        async def guarded(msg):
            nonlocal sent
            if exceeded:
                if not sent:
                    sent = True
                    await _send_error(send, 413, f"request body exceeds {self.max_bytes} bytes; {limit}")
                return
            sent = sent or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not sent:
            await _send_error(send, 413, f"request body exceeds {self.max_bytes} bytes; {limit}")
