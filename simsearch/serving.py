"""Running the service under uvicorn with bounds on slow and numerous clients, on a port the OS may choose."""

from __future__ import annotations

import socket
from typing import Any

from simsearch.config.serve import HEADER_TIMEOUT_S, MAX_CONNECTIONS

__all__ = ["HEADER_TIMEOUT_S", "MAX_CONNECTIONS", "bind", "run"]


def _protocol(header_timeout_s: float = HEADER_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS) -> type:
    """uvicorn's h11 protocol, closing a connection that has not sent a whole request head within
    header_timeout_s of opening (slow-header clients) and refusing connections past max_connections (each
    holds a file descriptor: a crowd of slow clients would otherwise leave none for /health)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class BoundedH11(H11Protocol):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.close()
                return
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_late)

        def _head_late(self) -> None:
            if self.cycle is None and not self.transport.is_closing():  # no request head yet
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            timer = getattr(self, "_head_timer", None)
            if timer is not None:
                timer.cancel()
            super().connection_lost(exc)

    return BoundedH11


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: one the OS picks; read it from getsockname())."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(
    app: Any,
    sock: socket.socket,
    log_level: str,
    header_timeout_s: float = HEADER_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
) -> None:
    """Serve `app` on the bound socket until interrupted, closing connections whose request head is late
    and refusing those past max_connections."""
    import uvicorn

    config = uvicorn.Config(
        app,
        http=_protocol(header_timeout_s, max_connections),
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=5,
    )
    uvicorn.Server(config).run(sockets=[sock])
