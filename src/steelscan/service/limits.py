"""What a request must pass before the app reads its body, as plain ASGI middleware and a uvicorn protocol.

- `Guard`: the Host header names this server (DNS rebinding), a state-changing request carries no foreign
  Origin (cross-site requests: a page the operator opens must not post frames or close coils), the bearer token
  (/v1, and /metrics unless public) is checked from the headers alone, so a 20 MB body without a token is never
  read; and every response gets the security headers (CSP with frame-ancestors, nosniff, no framing).
- `BodyLimit`: body size refused from Content-Length before a byte is read, and counted while streaming when the
  client sends no length (chunked), so an oversized upload never fills memory.
- `header_timeout_protocol`: uvicorn's h11 protocol closing connections whose request headers are not complete
  within a time (uvicorn has no such timeout: slow-header connections stayed open for good).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from urllib.parse import urlsplit

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    # inline styles: the coil report (opened by the dashboard as a blob, which inherits this policy) has them
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                 b"img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; "
                                 b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
]
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


async def _send_error(send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": message, "status": status}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})


def token_ok(authorization: str, expected: bytes) -> bool:
    scheme, _, value = authorization.partition(" ")
    # compare_digest: the time taken does not tell how much of a guess was right
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), expected)


def split_host(value: str) -> str:
    """The name of a Host header value: lower case, without port, brackets or a trailing dot."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


class Guard:
    """Host, Origin and token checks from the headers alone, and the security headers on every response."""

    def __init__(self, app, *, hosts: frozenset[str] | None, token: str | None, metrics_public: bool = False,
                 on_refusal: Callable[[int], None] | None = None):
        self.app, self.hosts, self.metrics_public = app, hosts, metrics_public
        self.expected = token.encode() if token else None
        self.on_refusal = on_refusal

    def _refusal(self, scope) -> tuple[int, str, list] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self.hosts is not None and split_host(host) not in self.hosts:
            names = ", ".join(sorted(self.hosts))
            return 400, (f"Host header {host[:100]!r} is not a name of this server: expected one of {names} "
                         "(serve --allowed-host NAME adds one)"), []
        origin = headers.get("origin")
        if origin is not None and scope["method"].upper() not in SAFE_METHODS:
            parts = urlsplit(origin)
            same = origin != "null" and parts.netloc.lower() == host.strip().lower()
            allowed = self.hosts is not None and origin != "null" and (parts.hostname or "") in self.hosts
            if not (same or allowed):
                return 403, (f"cross-site request refused: Origin {origin[:100]!r} is not this server "
                             f"({host[:100]!r}); state-changing requests come from the dashboard or from clients "
                             "without an Origin"), []
        path = scope["path"]
        guarded = path == "/v1" or path.startswith("/v1/") or (path == "/metrics" and not self.metrics_public)
        if guarded and self.expected is not None and not token_ok(headers.get("authorization", ""), self.expected):
            return 401, "missing or bad token: send 'Authorization: Bearer <token>'", [(b"www-authenticate", b"Bearer")]
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self._refusal(scope)
        if refusal is not None:
            status, message, extra = refusal
            if self.on_refusal is not None:
                self.on_refusal(status)
            return await _send_error(send, status, message, [*extra, *SECURITY_HEADERS])

        async def secured(msg):
            if msg["type"] == "http.response.start":
                present = {k.lower() for k, _ in msg.get("headers", [])}
                extra = [h for h in SECURITY_HEADERS if h[0] not in present]
                msg = {**msg, "headers": [*msg.get("headers", []), *extra]}
            await send(msg)

        await self.app(scope, receive, secured)


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


def header_timeout_protocol(seconds: float) -> type:
    """uvicorn's h11 protocol, closing a connection (after a 408) whose request headers take longer than
    `seconds` to arrive: at connect, and again after each response on a kept-alive connection. Bodies are the
    request timeout's."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the headers are in
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            if self.conn.our_state is h11.IDLE:
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            self.transport.close()

    HeaderTimeoutProtocol.__name__ = HeaderTimeoutProtocol.__qualname__ = f"HeaderTimeoutProtocol_{seconds:g}s"
    return HeaderTimeoutProtocol
