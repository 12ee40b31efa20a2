"""The page at /, and what an operator asks: /health, /stats, /metrics (Prometheus)."""

from __future__ import annotations

import hmac
from functools import cache
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from simsearch.service.guard import TOKEN_COOKIE
from simsearch.service.state import Service, service

__all__ = ["router"]

router = APIRouter()


@cache
def _page() -> str:
    return resources.files("simsearch").joinpath("web/index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home(
    svc: Annotated[Service, Depends(service)],
    token_given: Annotated[str | None, Query(alias="token")] = None,
) -> Response:
    token = svc.token
    if token is not None and token_given is not None:
        # the log-in link: a right token becomes a cookie (so the page's requests carry it) and leaves the URL
        if not hmac.compare_digest(token_given.encode(), token.encode()):
            raise HTTPException(401, "wrong access token")
        answer = RedirectResponse("/", status_code=303)
        answer.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return answer
    return HTMLResponse(_page())


@router.get("/metrics", summary="Prometheus metrics: requests, latency histogram, queue depth, index size")
def metrics_view(svc: Annotated[Service, Depends(service)]) -> Response:
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/health", summary="Liveness")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/stats", summary="Index size, encoder, query count and latency percentiles")
def stats_view(svc: Annotated[Service, Depends(service)]) -> dict[str, Any]:
    searcher = svc.searcher
    with svc.lock:
        searcher.refresh()
        m = searcher.manifest
        count = searcher.count
    return {
        "index": str(searcher.path),
        "count": count,
        "kind": m.kind.value,
        "dim": m.dim,
        "encoder": m.encoder.get("source"),
        "text_search": searcher.embedder.supports_text,
        "fingerprint": m.encoder.get("fingerprint"),
        **searcher.decision().to_dict(),
        "max_upload_bytes": svc.limits.max_upload,
        "timeout_s": svc.limits.timeout_s,
        **svc.stats.to_dict(),
    }
