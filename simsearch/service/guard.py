"""The ASGI middleware in front of every route: Host check (DNS rebinding), the bearer token, the body's
size and pace, security headers, HEAD as GET, and the access log line and request metrics."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from typing import Any

from fastapi import HTTPException

from simsearch.config.serve import BODY_TIMEOUT_S
from simsearch.service.metrics import Metrics

__all__ = ["BODY_TIMEOUT_S", "LOOPBACK_NAMES", "TOKEN_COOKIE", "Guard", "is_loopback"]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
TOKEN_COOKIE = "simsearch_token"
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_PAGE_CSP = (
    b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    b"script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'"
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})
_LOGGED_PATH = 200  # characters of a request path written to the access log
access_log = logging.getLogger("simsearch.access")


def is_loopback(host: str) -> bool:
    """Whether a --host value binds only this machine."""
    return host.strip("[]") in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _headers_only(send: Any) -> Any:
    """A send that passes a response's start and drops its body (a HEAD request's answer)."""

    async def without_body(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            if not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b""})
            return
        await send(message)

    return without_body


class TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"upload too large: the limit is {limit:,} bytes")


class Guard:
    """ASGI middleware in front of every route: refuses a Host header naming another machine while the
    server is bound to loopback (DNS rebinding), asks for the bearer token when one is set, refuses a
    body whose Content-Length is over the limit before reading it and cuts a streamed one at the limit
    (or when it stalls), adds security headers to every answer, and writes the access log line and the
    request metrics."""

    def __init__(
        self,
        app: Any,
        max_body: int,
        allowed_hosts: tuple[str, ...] | None,
        token: str | None = None,
        metrics: Metrics | None = None,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        self.app, self.max_body, self.allowed_hosts = app, max_body, allowed_hosts
        self.token, self.metrics, self.body_timeout_s = token, metrics, body_timeout_s

    def authorized(self, headers: dict[bytes, bytes]) -> bool:
        assert self.token is not None
        want = self.token.encode()
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer " and hmac.compare_digest(auth[7:].strip(), want):
            return True
        for part in headers.get(b"cookie", b"").split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == TOKEN_COOKIE.encode() and hmac.compare_digest(value, want):
                return True
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(self, scope, receive, send)
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            await exchange.answer()
        finally:
            exchange.record()


class _Exchange:
    """One HTTP request passing the guard: what it sent, what it was answered, how long it took."""

    def __init__(self, guard: Guard, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.guard, self.scope, self.receive, self.send = guard, scope, receive, send
        self.started = time.perf_counter()
        # a method is a metrics label and a log field: a client's own invention is "other", never kept whole
        self.method = scope["method"] if scope["method"] in _METHODS else "other"
        self.headers = {k.lower(): v for k, v in scope.get("headers", [])}
        self.status = 500
        self.seen = 0

    async def secured_send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            extra = list(_SECURITY_HEADERS)
            if not self.scope["path"].startswith(("/docs", "/redoc")):
                extra.append((b"content-security-policy", _PAGE_CSP))
            message = dict(message, headers=[*message.get("headers", []), *extra])
        await self.send(message)

    async def refuse(self, status: int, detail: str, more: list[tuple[bytes, bytes]] | None = None) -> None:
        body = json.dumps({"detail": detail}).encode()
        head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(more or [])]
        await self.secured_send({"type": "http.response.start", "status": status, "headers": head})
        await self.send({"type": "http.response.body", "body": body})

    async def refused(self) -> bool:
        """Answer a request the guard refuses (another host, no token, a declared body too large): True
        when it did."""
        g = self.guard
        if g.allowed_hosts is not None:
            host = self.headers.get(b"host", b"").decode("latin-1").lower()  # host names are case-blind
            name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
            if name not in g.allowed_hosts:
                await self.refuse(421, "this server answers requests for localhost only")
                return True
        if g.token is not None and not g.authorized(self.headers):
            if self.scope["path"] == "/" and self.scope.get("query_string", b"").startswith(b"token="):
                return False  # the page's log-in link: checked there
            await self.refuse(
                401,
                "this server needs its access token: send 'Authorization: Bearer <token>', or open /?token=<token> once",
                [(b"www-authenticate", b"Bearer")],
            )
            return True
        declared = self.headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > g.max_body:
            await self.refuse(413, f"upload too large: the limit is {g.max_body:,} bytes")
            return True
        return False

    async def limited_receive(self) -> dict[str, Any]:
        g = self.guard
        try:  # a stalled upload does not hold its connection and temporary file for as long as it likes
            message: dict[str, Any] = await asyncio.wait_for(self.receive(), g.body_timeout_s)
        except TimeoutError:
            raise HTTPException(408, f"the request body stalled for {g.body_timeout_s:g} s") from None
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > g.max_body:
                raise TooLarge(g.max_body)
        return message

    async def answer(self) -> None:
        if await self.refused():
            return
        if self.scope["method"] == "HEAD":  # answered as GET without the body (405 otherwise)
            scope = dict(self.scope, method="GET")
            await self.guard.app(scope, self.limited_receive, _headers_only(self.secured_send))
            return
        await self.guard.app(self.scope, self.limited_receive, self.secured_send)

    def record(self) -> None:
        """The request's metrics and its access-log line (the path cut and escaped)."""
        elapsed = time.perf_counter() - self.started
        route = getattr(self.scope.get("route"), "path", None) or "unmatched"
        metrics = self.guard.metrics
        if metrics is not None:
            metrics.in_flight.dec()
            metrics.requests.labels(self.method, route, str(self.status)).inc()
            metrics.latency.labels(route).observe(elapsed)
        path = self.scope["path"] if self.scope["path"].isprintable() else repr(self.scope["path"])[1:-1]
        if len(path) > _LOGGED_PATH:
            path = path[:_LOGGED_PATH] + "..."
        access_log.info("%s %s %d %.1f ms", self.method, path, self.status, elapsed * 1000)
