"""The app factory: one index opened, its encoder loaded once, the guard in front, the routes behind,
and the one handler that turns the library's refusals into HTTP answers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from simsearch.engine import Searcher
from simsearch.errors import ConfigError, DataError, SimSearchError
from simsearch.images import DEFAULT_MAX_PIXELS
from simsearch.service.declared import SERVICE_NAMES
from simsearch.service.guard import BODY_TIMEOUT_S, LOOPBACK_NAMES, Guard
from simsearch.service.routes import gallery, ops, search
from simsearch.service.state import Limits, Service

__all__ = ["DEFAULT_DECODE_PIXELS", "DEFAULT_MAX_UPLOAD", "DEFAULT_TIMEOUT_S", "create_app"]

DEFAULT_MAX_UPLOAD = 20 * 2**20  # bytes
DEFAULT_TIMEOUT_S = 30.0
# pixels decoded at once across all requests: two of the largest images allowed (about 1.5 GB at most)
DEFAULT_DECODE_PIXELS = 2 * DEFAULT_MAX_PIXELS


def _refused(_: Request, err: Exception) -> JSONResponse:
    """The library's refusals of what a client asked: a setting that cannot be (422, naming the query
    parameter), a gallery that cannot answer it (409)."""
    if isinstance(err, ConfigError):
        return JSONResponse({"detail": err.render(lambda field: SERVICE_NAMES.get(field, field))}, status_code=422)
    status = 409 if isinstance(err, DataError) else 422
    return JSONResponse({"detail": str(err)}, status_code=status)


def create_app(
    index: str | os.PathLike[str],
    model: str | None = None,
    device: str = "auto",
    max_upload: int = DEFAULT_MAX_UPLOAD,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    allowed_hosts: tuple[str, ...] | None = LOOPBACK_NAMES,
    decode_pixels: int = DEFAULT_DECODE_PIXELS,
    decode_threads: int | None = None,
    token: str | None = None,
    absolute_paths: bool = False,
    body_timeout_s: float = BODY_TIMEOUT_S,
) -> FastAPI:
    """A FastAPI app answering over one index (opened now, with its encoder loaded once).

    `allowed_hosts`: the Host header names accepted (loopback names by default: a page on another site
    cannot reach a loopback server through DNS rebinding); None accepts any, for a server bound beyond
    loopback. Bodies over `max_upload` (plus the multipart framing) are refused before they are read.
    At most `decode_threads` uploads (default: the CPU count) are decoded at once, holding at most
    `decode_pixels` pixels between them. A request past its timeout is answered 504 and its work
    stops at the next step (waiting to decode, decoding, waiting to embed): nothing runs on for it.
    `token`: every route then asks for it (an `Authorization: Bearer` header, or the cookie that
    `/?token=...` sets for the page). Answers name gallery images by id and by their path relative to
    the gallery folder; `absolute_paths` gives the server's full paths instead. A request body that
    stalls for `body_timeout_s` between two of its parts is answered 408."""
    if token is not None and not token.strip():
        raise ConfigError("{fields} is empty", ["token"])
    limits = Limits(max_upload, timeout_s, decode_threads or os.cpu_count() or 1, decode_pixels, absolute_paths)
    svc = Service(Searcher(index, model=model, device=device), limits, token)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        svc.searcher.close()

    app = FastAPIOffline(  # /docs and /redoc from assets shipped in the package: they work offline
        title="simsearch",
        version="1",
        description="Reverse image search and one-shot identification over a simsearch index.",
        lifespan=lifespan,
    )
    app.state.service = svc
    app.state.searcher = svc.searcher
    app.add_middleware(
        Guard,
        max_body=max_upload + 64 * 1024,
        allowed_hosts=allowed_hosts,
        token=token,
        metrics=svc.metrics,
        body_timeout_s=body_timeout_s,
    )
    for handled in (SimSearchError, ValueError):
        app.add_exception_handler(handled, _refused)
    for routes in (ops, search, gallery):
        app.include_router(routes.router)
    return app
