"""The search service: reverse image search and identification over HTTP, and the page at `/`.

The encoder and the index are loaded once when the app is made. Uploads are decoded in the
request's worker thread (in parallel); embedding and searching share one lock, because the SQLite
catalog and the encoder are used by one caller at a time. Nothing a request does writes to the
gallery or the index. Gallery files are served by catalog id only: no request names a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import json
import logging
import os
import stat
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import anyio
import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi import Path as FastApiPath
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from simsearch.engine import OperatingPoint, Searcher
from simsearch.errors import DataError, ImageError
from simsearch.images import DEFAULT_MAX_PIXELS, PixelBudget, decode_image, image_pixels, load_array, read_file

__all__ = [
    "DEFAULT_DECODE_PIXELS",
    "DEFAULT_MAX_UPLOAD",
    "DEFAULT_TIMEOUT_S",
    "LOOPBACK_NAMES",
    "create_app",
    "is_loopback",
]

DEFAULT_MAX_UPLOAD = 20 * 2**20  # bytes
DEFAULT_TIMEOUT_S = 30.0
# pixels decoded at once across all requests: two of the largest images allowed (about 1.5 GB at most)
DEFAULT_DECODE_PIXELS = 2 * DEFAULT_MAX_PIXELS
_T = TypeVar("_T")
_THUMB = 256
_THUMB_CACHE = 512
_MAX_RANK = 10_000  # offset + k: how deep a result list may be paged
_MAX_TEXT = 1000  # characters of a text query
TOKEN_COOKIE = "simsearch_token"
access_log = logging.getLogger("simsearch.access")


class _Metrics:
    """Prometheus metrics of one app (its own registry, so two apps in a process do not mix)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "simsearch_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "simsearch_request_duration_seconds",
            "Time to answer a request",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.in_flight = Gauge("simsearch_requests_in_flight", "Requests being answered", registry=self.registry)
        self.queue = Gauge(
            "simsearch_queue_depth", "Queries waiting for a decode slot or for the encoder", registry=self.registry
        )
        self.images = Gauge("simsearch_index_images", "Images in the served index", registry=self.registry)
        self.abandoned = Counter(
            "simsearch_abandoned", "Queries whose work stopped after their timeout", registry=self.registry
        )


class _Stats:
    """Query count and recent latencies (the last 10,000), safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.queries = 0
        self.errors = 0
        self.abandoned = 0
        self._lat: deque[float] = deque(maxlen=10_000)

    def record(self, seconds: float) -> None:
        with self._lock:
            self.queries += 1
            self._lat.append(seconds)

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def abandon(self) -> None:
        with self._lock:
            self.abandoned += 1

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            lat = np.array(self._lat) * 1000
            queries, errors, abandoned = self.queries, self.errors, self.abandoned
        pct = {f"p{p}": round(float(np.percentile(lat, p)), 3) if len(lat) else None for p in (50, 90, 99)}
        return {
            "queries": queries,
            "errors": errors,
            "abandoned": abandoned,
            "uptime_s": round(time.time() - self.started, 1),
            "latency_ms": pct,
        }


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_PAGE_CSP = (
    b"default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
    b"script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'"
)
_MAX_ID = 2**63 - 1
ImageId = Annotated[int, FastApiPath(ge=0, le=_MAX_ID, description="the image's catalog id")]


def is_loopback(host: str) -> bool:
    """Whether a --host value binds only this machine."""
    return host.strip("[]") in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})
_LOGGED_PATH = 200  # characters of a request path written to the access log
BODY_TIMEOUT_S = 30.0  # the longest wait for the next part of a request body


def _headers_only(send: Any) -> Any:
    """A send that passes a response's start and drops its body (a HEAD request's answer)."""

    async def without_body(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            if not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b""})
            return
        await send(message)

    return without_body


class _Abandoned(Exception):
    """A request's work found its deadline passed and stopped."""


class _TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"upload too large: the limit is {limit:,} bytes")


class _Guard:
    """ASGI middleware in front of every route: refuses a Host header naming another machine while the
    server is bound to loopback (DNS rebinding), asks for the bearer token when one is set, refuses a
    body whose Content-Length is over the limit before reading it and cuts a streamed one at the limit,
    adds security headers to every answer, and writes the access log line and the request metrics."""

    def __init__(
        self,
        app: Any,
        max_body: int,
        allowed_hosts: tuple[str, ...] | None,
        token: str | None = None,
        metrics: _Metrics | None = None,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        self.app, self.max_body, self.allowed_hosts = app, max_body, allowed_hosts
        self.token, self.metrics, self.body_timeout_s = token, metrics, body_timeout_s

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
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
        started = time.perf_counter()
        # a method is a metrics label and a log field: a client's own invention is "other", never kept whole
        method = scope["method"] if scope["method"] in _METHODS else "other"
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        status_seen = [500]

        async def secured_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_seen[0] = int(message["status"])
                extra = list(_SECURITY_HEADERS)
                if not scope["path"].startswith(("/docs", "/redoc")):
                    extra.append((b"content-security-policy", _PAGE_CSP))
                message = dict(message, headers=[*message.get("headers", []), *extra])
            await send(message)

        async def refuse(status: int, detail: str, more: list[tuple[bytes, bytes]] | None = None) -> None:
            body = json.dumps({"detail": detail}).encode()
            await secured_send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        *(more or []),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})

        async def answer() -> None:
            if self.allowed_hosts is not None:
                host = headers.get(b"host", b"").decode("latin-1").lower()  # host names are case-blind
                name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
                if name not in self.allowed_hosts:
                    await refuse(421, "this server answers requests for localhost only")
                    return
            if self.token is not None and not self._authorized(headers):
                if scope["path"] == "/" and scope.get("query_string", b"").startswith(b"token="):
                    await self.app(scope, receive, secured_send)  # the page's log-in link: checked there
                    return
                await refuse(
                    401,
                    "this server needs its access token: send 'Authorization: Bearer <token>', or open /?token=<token> once",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
            declared = headers.get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_body:
                await refuse(413, f"upload too large: the limit is {self.max_body:,} bytes")
                return
            seen = 0

            async def limited_receive() -> dict[str, Any]:
                nonlocal seen
                try:  # a stalled upload does not hold its connection and temporary file for as long as it likes
                    message = await asyncio.wait_for(receive(), self.body_timeout_s)
                except TimeoutError:
                    raise HTTPException(408, f"the request body stalled for {self.body_timeout_s:g} s") from None
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > self.max_body:
                        raise _TooLarge(self.max_body)
                return message

            if scope["method"] == "HEAD":  # answered as GET without the body (405 otherwise)
                await self.app(dict(scope, method="GET"), limited_receive, _headers_only(secured_send))
                return
            await self.app(scope, limited_receive, secured_send)

        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            await answer()
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            if self.metrics is not None:
                self.metrics.in_flight.dec()
                self.metrics.requests.labels(method, route, str(status_seen[0])).inc()
                self.metrics.latency.labels(route).observe(elapsed)
            path = scope["path"] if scope["path"].isprintable() else repr(scope["path"])[1:-1]
            if len(path) > _LOGGED_PATH:
                path = path[:_LOGGED_PATH] + "..."
            access_log.info("%s %s %d %.1f ms", method, path, status_seen[0], elapsed * 1000)


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
    the gallery folder; `absolute_paths` gives the server's full paths instead. A request body that stalls for `body_timeout_s`
    between two of its parts is answered 408."""
    if token is not None and not token.strip():
        raise ValueError("the access token is empty")
    searcher = Searcher(index, model=model, device=device)
    lock = threading.Lock()
    # decoding is bounded in count (CPU) and in pixels (memory), whatever the concurrency
    decoding = threading.BoundedSemaphore(max(1, decode_threads or os.cpu_count() or 1))
    budget = PixelBudget(decode_pixels)
    stats = _Stats()
    metrics = _Metrics()
    metrics.images.set_function(lambda: len(searcher.store.vectors))
    thumbs: OrderedDict[int, bytes] = OrderedDict()
    page = resources.files("simsearch").joinpath("web/index.html").read_text(encoding="utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        searcher.close()

    app = FastAPIOffline(  # /docs and /redoc from assets shipped in the package: they work offline
        title="simsearch",
        version="1",
        description="Reverse image search and one-shot identification over a simsearch index.",
        lifespan=lifespan,
    )
    app.state.searcher = searcher
    app.add_middleware(
        _Guard,
        max_body=max_upload + 64 * 1024,
        allowed_hosts=allowed_hosts,
        token=token,
        metrics=metrics,
        body_timeout_s=body_timeout_s,
    )

    @contextlib.contextmanager
    def waiting() -> Iterator[None]:
        """Counted in the queue-depth gauge while inside: waiting for a decode slot or for the encoder."""
        metrics.queue.inc()
        try:
            yield
        finally:
            metrics.queue.dec()

    def shown(path: str) -> str:
        return path if absolute_paths else searcher.relative(path)

    async def _read_upload(file: UploadFile) -> bytes:
        # a declared Content-Length over the limit never gets here: _Guard refuses it before reading
        data = await file.read(max_upload + 1)
        if len(data) > max_upload:
            raise HTTPException(413, f"upload too large: the limit is {max_upload:,} bytes")
        if not data:
            raise HTTPException(400, "the upload is empty")
        return data

    async def _guarded(steps: Callable[[Callable[[], float]], _T], counted: bool = True) -> _T:
        """Run steps(left) in a worker thread within the timeout (left() is the time remaining, and raises
        _Abandoned once there is none): a 504 at the deadline, the query statistics recorded when `counted`."""
        t = time.perf_counter()
        deadline = t + timeout_s

        def left() -> float:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise _Abandoned
            return remaining

        def work() -> _T:
            try:
                return steps(left)
            except _Abandoned:
                stats.abandon()  # counted here: after a 504 nobody awaits this thread
                metrics.abandoned.inc()
                raise

        try:
            # the 504 goes out at the deadline; the thread, abandoned, stops itself at its next step
            out = await asyncio.wait_for(anyio.to_thread.run_sync(work, abandon_on_cancel=True), timeout_s)
        except (TimeoutError, _Abandoned):
            if counted:
                stats.error()
            raise HTTPException(504, f"the request took longer than {timeout_s:g} s") from None
        except HTTPException:
            if counted:
                stats.error()
            raise
        if counted:
            stats.record(time.perf_counter() - t)
        return out

    def _locked(left: Callable[[], float], answer: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """answer() under the lock (the encoder and the catalog are shared), waiting at most left()."""
        with waiting():
            got = lock.acquire(timeout=left())
        if not got:
            raise _Abandoned
        try:
            left()
            searcher.refresh()  # a sync since the last request: answer from the new generation
            return answer()
        finally:
            lock.release()

    async def _answer(file: UploadFile, respond: Callable[[np.ndarray, str], dict[str, Any]]) -> dict[str, Any]:
        """Read and check the upload, then in a worker thread decode it (in parallel with other
        requests), embed it and call respond(embedding, name) under the lock, within the timeout."""
        data = await _read_upload(file)
        name = file.filename or "upload"

        def steps(left: Callable[[], float]) -> dict[str, Any]:
            try:
                pixels = image_pixels(data)
                with waiting():
                    if not decoding.acquire(timeout=left()):
                        raise _Abandoned
                try:
                    with budget.hold(pixels, timeout=left()):
                        left()
                        arr = load_array(data, searcher.embedder.preprocess)
                finally:
                    decoding.release()
            except ImageError as err:
                raise HTTPException(415, f"{name} cannot be used: {err.reason}") from None
            except TimeoutError:
                raise _Abandoned from None
            return _locked(left, lambda: respond(searcher.embedder.embed_arrays(arr[None]), name))

        return await _guarded(steps)

    async def _answer_text(text: str, respond: Callable[[np.ndarray, str], dict[str, Any]]) -> dict[str, Any]:
        """A text query: embedded by the encoder's text tower under the lock, within the timeout."""
        if not searcher.embedder.supports_text:
            raise HTTPException(422, "this index's encoder embeds images only: text search needs a CLIP-family encoder")
        if not text.strip():
            raise HTTPException(422, "the text is empty")
        return await _guarded(
            lambda left: _locked(left, lambda: respond(searcher.embedder.embed_text([text]), f"text: {text}"))
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home(token_given: Annotated[str | None, Query(alias="token")] = None) -> Response:
        if token is not None and token_given is not None:
            # the log-in link: a right token becomes a cookie (so the page's requests carry it) and leaves the URL
            if not hmac.compare_digest(token_given.encode(), token.encode()):
                raise HTTPException(401, "wrong access token")
            answer = RedirectResponse("/", status_code=303)
            answer.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return answer
        return HTMLResponse(page)

    def _hit(h: Any) -> dict[str, Any]:
        return dict(h.to_dict(), path=shown(h.path), name=os.path.basename(h.path))

    @app.post("/search", summary="Nearest gallery images to an uploaded image, or to a text, best first")
    async def search(
        file: Annotated[UploadFile | None, File(description="the query image (or give text)")] = None,
        text: Annotated[
            str | None,
            Form(
                max_length=_MAX_TEXT,
                description="words to search by instead of an image, e.g. 'a red dress' (CLIP-family encoders)",
            ),
        ] = None,
        k: Annotated[int, Query(ge=1, le=1000, description="how many results")] = 5,
        offset: Annotated[int, Query(ge=0, le=_MAX_RANK, description="skip this many best results first (paging)")] = 0,
        label: Annotated[
            list[str] | None, Query(max_length=100, description="only images of these classes (repeat for several)")
        ] = None,
        under: Annotated[
            str | None, Query(max_length=4096, description="only images under this folder of the gallery (relative)")
        ] = None,
    ) -> dict[str, Any]:
        if offset + k > _MAX_RANK:
            raise HTTPException(422, f"offset + k may be at most {_MAX_RANK:,}")
        if under is not None and (os.path.isabs(under) or ".." in Path(under).parts):
            raise HTTPException(422, "under must be a folder of the gallery, relative to it (like 'cats/2021')")

        def respond(vec: np.ndarray, name: str) -> dict[str, Any]:  # under the lock: the catalog is ours
            folder = None
            if under is not None and under.strip("/. "):
                root = searcher.gallery_root
                if root is None:
                    raise HTTPException(422, "this index has no gallery folder to filter by")
                folder = os.path.join(root, under)
            try:
                res = searcher.search_vectors(vec, [name], k, offset=offset, labels=label or None, under=folder)[0]
            except ValueError as err:  # a class the gallery does not have
                raise HTTPException(422, str(err)) from None
            return dict(res.to_dict(), results=[_hit(h) for h in res.results])

        if (file is None) == (text is None):
            raise HTTPException(422, "give a query image (file) or a text, not both or neither")
        if text is not None:
            return await _answer_text(text, respond)
        assert file is not None
        return await _answer(file, respond)

    @app.post("/identify", summary="Which gallery class an uploaded image shows, or unknown")
    async def identify(
        file: Annotated[UploadFile, File(description="the query image")],
        threshold: Annotated[
            float | None, Query(ge=-1, le=1, description="a cosine threshold instead of a target")
        ] = None,
        fpir: Annotated[
            float | None,
            Query(gt=0, lt=1, description="target FPIR: share of probes of absent classes accepted (default 0.01)"),
        ] = None,
        fnir: Annotated[
            float | None, Query(gt=0, lt=1, description="target FNIR: share of known probes not given their class")
        ] = None,
        closed_set: Annotated[bool, Query(description="always the nearest class, never unknown")] = False,
    ) -> dict[str, Any]:
        try:
            point = OperatingPoint(threshold=threshold, fpir=fpir, fnir=fnir, closed_set=closed_set)
            searcher.decision(point=point)
        except ValueError as err:
            raise HTTPException(422, str(err)) from None
        except DataError as err:
            raise HTTPException(409, str(err)) from None

        def respond(vec: np.ndarray, name: str) -> dict[str, Any]:
            try:
                answer = searcher.identify_vectors(vec, [name], point=point)[0].to_dict()
                if answer.get("match") is not None:
                    answer["match"] = shown(answer["match"])
                return answer
            except DataError as err:  # a gallery without classes
                raise HTTPException(409, str(err)) from None

        return await _answer(file, respond)

    def _record_path(id_: int) -> str:
        with lock:
            searcher.refresh()
            rec = searcher.store.catalog.get([id_]).get(id_)
        if rec is None:
            raise HTTPException(404, f"no gallery image with id {id_}")
        # only the regular file that was indexed: not whatever a link put in its place since
        try:
            st = os.stat(rec.path)
        except OSError:
            raise HTTPException(410, f"gallery image {id_} is no longer on disk") from None
        if not stat.S_ISREG(st.st_mode) or st.st_size != rec.size or st.st_mtime != rec.mtime:
            raise HTTPException(410, f"gallery image {id_} changed since it was indexed; sync the index")
        return rec.path

    @app.get("/images/{image_id}", summary="A gallery image, by catalog id")
    def image(image_id: ImageId) -> FileResponse:
        return FileResponse(_record_path(image_id))

    thumbs_pending: dict[int, threading.Event] = {}  # a thumbnail being made: later asks for it wait for it

    def _make_thumbnail(image_id: int, left: Callable[[], float]) -> bytes:
        """Decode a gallery image into a JPEG thumbnail as uploads are decoded: within the request's time, a
        decode slot and the pixel budget (the file is read, header checked, before anything is decoded)."""
        path = _record_path(image_id)
        try:
            data = read_file(path)
            pixels = image_pixels(data)
            with waiting():
                if not decoding.acquire(timeout=left()):
                    raise _Abandoned
            try:
                with budget.hold(pixels, timeout=left()):
                    left()
                    img = decode_image(data, channels=3, min_side=_THUMB)
            finally:
                decoding.release()
        except ImageError as err:
            raise HTTPException(422, f"gallery image {image_id}: {err.reason}") from None
        except TimeoutError:
            raise _Abandoned from None
        img.thumbnail((_THUMB, _THUMB))
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG", quality=85)
        return buf.getvalue()

    def _thumbnail_steps(image_id: int, left: Callable[[], float]) -> bytes:
        """The cached thumbnail, or the one another request is making (waited for), or one made here."""
        while True:
            with lock:
                cached = thumbs.get(image_id)
                if cached is not None:
                    return cached
                pending = thumbs_pending.get(image_id)
                mine = pending is None
                if mine:
                    pending = thumbs_pending[image_id] = threading.Event()
            assert pending is not None
            if not mine:
                if not pending.wait(timeout=left()):
                    raise _Abandoned
                continue  # made (in the cache now), or its maker failed and this request tries itself
            try:
                made = _make_thumbnail(image_id, left)
                with lock:
                    thumbs[image_id] = made
                    while len(thumbs) > _THUMB_CACHE:
                        thumbs.popitem(last=False)
                return made
            finally:
                with lock:
                    thumbs_pending.pop(image_id, None)
                pending.set()

    @app.get("/thumbnails/{image_id}", summary="A JPEG thumbnail of a gallery image, by catalog id")
    async def thumbnail(image_id: ImageId) -> Response:
        made = await _guarded(lambda left: _thumbnail_steps(image_id, left), counted=False)
        return Response(made, media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})

    @app.get("/classes", summary="The gallery's classes and how many images each has, largest first")
    def classes() -> dict[str, Any]:
        with lock:
            searcher.refresh()
            sizes = searcher.store.catalog.labels()
        named = sorted(((c, n) for c, n in sizes.items() if c is not None), key=lambda cn: (-cn[1], cn[0]))
        return {"classes": [{"label": c, "images": n} for c, n in named], "unlabelled": sizes.get(None, 0)}

    @app.get("/metrics", summary="Prometheus metrics: requests, latency histogram, queue depth, index size")
    def metrics_view() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health", summary="Liveness")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats", summary="Index size, encoder, query count and latency percentiles")
    def stats_view() -> dict[str, Any]:
        with lock:
            searcher.refresh()
            m = searcher.manifest
            count = len(searcher.store.vectors)
        return {
            "index": str(searcher.path),
            "count": count,
            "kind": m.kind.value,
            "dim": m.dim,
            "encoder": m.encoder.get("source"),
            "text_search": searcher.embedder.supports_text,
            "fingerprint": m.encoder.get("fingerprint"),
            **searcher.decision().to_dict(),
            "max_upload_bytes": max_upload,
            "timeout_s": timeout_s,
            **stats.to_dict(),
        }

    return app
