"""What every route of one app shares: the searcher and its lock, the decode slots and pixel budget, the
timeout, the statistics, the thumbnail cache; and the steps each request goes through: read the upload,
decode it in a slot within the budget, embed and answer under the lock, all within the timeout."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import numpy as np
from fastapi import HTTPException, Request, UploadFile

from simsearch.engine import Searcher
from simsearch.errors import ImageError, SimSearchError
from simsearch.images import PixelBudget, decode_image, image_pixels, load_array, read_file
from simsearch.service.metrics import Metrics, Stats

__all__ = ["Limits", "Service", "service"]

_T = TypeVar("_T")
THUMB = 256
_THUMB_CACHE = 512


class Abandoned(Exception):
    """A request's work found its deadline passed and stopped."""


@dataclass(frozen=True)
class Limits:
    """The bounds one app keeps: upload bytes, seconds a request may take, uploads decoded at once and the
    pixels they may hold between them, and how gallery paths are shown."""

    max_upload: int
    timeout_s: float
    decode_threads: int
    decode_pixels: int
    absolute_paths: bool = False


class Service:
    """One app's shared state and the steps of its requests (routes call these; nothing else holds state)."""

    def __init__(self, searcher: Searcher, limits: Limits, token: str | None) -> None:
        self.searcher, self.limits, self.token = searcher, limits, token
        self.lock = threading.Lock()  # the encoder and the catalog are used by one caller at a time
        # decoding is bounded in count (CPU) and in pixels (memory), whatever the concurrency
        self.decoding = threading.BoundedSemaphore(max(1, limits.decode_threads))
        self.budget = PixelBudget(limits.decode_pixels)
        self.stats = Stats()
        self.metrics = Metrics()
        self.metrics.images.set_function(lambda: self.searcher.count)
        self.thumbs: OrderedDict[int, bytes] = OrderedDict()
        self.thumbs_pending: dict[int, threading.Event] = {}  # a thumbnail being made: later asks wait for it

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Counted in the queue-depth gauge while inside: waiting for a decode slot or for the encoder."""
        self.metrics.queue.inc()
        try:
            yield
        finally:
            self.metrics.queue.dec()

    def shown(self, path: str) -> str:
        return path if self.limits.absolute_paths else self.searcher.relative(path)

    def hit(self, h: Any) -> dict[str, Any]:
        return dict(h.to_dict(), path=self.shown(h.path), name=os.path.basename(h.path))

    async def read_upload(self, file: UploadFile) -> bytes:
        # a declared Content-Length over the limit never gets here: the guard refuses it before reading
        limit = self.limits.max_upload
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"upload too large: the limit is {limit:,} bytes")
        if not data:
            raise HTTPException(400, "the upload is empty")
        return data

    async def guarded(self, steps: Callable[[Callable[[], float]], _T], counted: bool = True) -> _T:
        """Run steps(left) in a worker thread within the timeout (left() is the time remaining, and raises
        Abandoned once there is none): a 504 at the deadline, the query statistics recorded when `counted`."""
        timeout_s = self.limits.timeout_s
        t = time.perf_counter()
        deadline = t + timeout_s

        def left() -> float:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise Abandoned
            return remaining

        def work() -> _T:
            try:
                return steps(left)
            except Abandoned:
                self.stats.abandon()  # counted here: after a 504 nobody awaits this thread
                self.metrics.abandoned.inc()
                raise

        try:
            # the 504 goes out at the deadline; the thread, abandoned, stops itself at its next step
            out = await asyncio.wait_for(anyio.to_thread.run_sync(work, abandon_on_cancel=True), timeout_s)
        except (TimeoutError, Abandoned):
            if counted:
                self.stats.error()
            raise HTTPException(504, f"the request took longer than {timeout_s:g} s") from None
        except (HTTPException, SimSearchError, ValueError):  # answered 4xx (the app's handler maps the others)
            if counted:
                self.stats.error()
            raise
        if counted:
            self.stats.record(time.perf_counter() - t)
        return out

    def locked(self, left: Callable[[], float], answer: Callable[[], _T]) -> _T:
        """answer() under the lock, on the index's newest generation, waiting at most left()."""
        with self.waiting():
            got = self.lock.acquire(timeout=left())
        if not got:
            raise Abandoned
        try:
            left()
            self.searcher.refresh()  # a sync since the last request: answer from the new generation
            return answer()
        finally:
            self.lock.release()

    def decoded(self, data: bytes, left: Callable[[], float], decode: Callable[[bytes], _T]) -> _T:
        """decode(data) in a decode slot, holding its pixels in the budget, within the time left."""
        pixels = image_pixels(data)
        with self.waiting():
            if not self.decoding.acquire(timeout=left()):
                raise Abandoned
        try:
            with self.budget.hold(pixels, timeout=left()):
                left()
                return decode(data)
        except TimeoutError:
            raise Abandoned from None
        finally:
            self.decoding.release()

    async def answer(self, file: UploadFile, respond: Callable[[np.ndarray, str], dict[str, Any]]) -> dict[str, Any]:
        """Read and check the upload, then in a worker thread decode it (in parallel with other
        requests), embed it and call respond(embedding, name) under the lock, within the timeout."""
        data = await self.read_upload(file)
        name = file.filename or "upload"
        embedder = self.searcher.embedder

        def steps(left: Callable[[], float]) -> dict[str, Any]:
            try:
                arr = self.decoded(data, left, lambda d: load_array(d, embedder.preprocess))
            except ImageError as err:
                raise HTTPException(415, f"{name} cannot be used: {err.reason}") from None
            return self.locked(left, lambda: respond(self.searcher.embedder.embed_arrays(arr[None]), name))

        return await self.guarded(steps)

    async def answer_text(self, text: str, respond: Callable[[np.ndarray, str], dict[str, Any]]) -> dict[str, Any]:
        """A text query: embedded by the encoder's text tower under the lock, within the timeout."""
        if not self.searcher.embedder.supports_text:
            raise HTTPException(422, "this index's encoder embeds images only: text search needs a CLIP-family encoder")
        if not text.strip():
            raise HTTPException(422, "the text is empty")
        return await self.guarded(
            lambda left: self.locked(left, lambda: respond(self.searcher.embedder.embed_text([text]), f"text: {text}"))
        )

    def record_path(self, image_id: int) -> str:
        """The path of a gallery image by id, only while it is the regular file that was indexed."""
        with self.lock:
            self.searcher.refresh()
            rec = self.searcher.record(image_id)
        if rec is None:
            raise HTTPException(404, f"no gallery image with id {image_id}")
        # only the regular file that was indexed: not whatever a link put in its place since
        try:
            st = os.stat(rec.path)
        except OSError:
            raise HTTPException(410, f"gallery image {image_id} is no longer on disk") from None
        if not stat.S_ISREG(st.st_mode) or st.st_size != rec.size or st.st_mtime != rec.mtime:
            raise HTTPException(410, f"gallery image {image_id} changed since it was indexed; sync the index")
        return rec.path

    def make_thumbnail(self, image_id: int, left: Callable[[], float]) -> bytes:
        """Decode a gallery image into a JPEG thumbnail as uploads are decoded: within the request's time, a
        decode slot and the pixel budget (the file is read, header checked, before anything is decoded)."""
        path = self.record_path(image_id)
        try:
            img = self.decoded(read_file(path), left, lambda d: decode_image(d, channels=3, min_side=THUMB))
        except ImageError as err:
            raise HTTPException(422, f"gallery image {image_id}: {err.reason}") from None
        img.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG", quality=85)
        return buf.getvalue()

    def thumbnail(self, image_id: int, left: Callable[[], float]) -> bytes:
        """The cached thumbnail, or the one another request is making (waited for), or one made here."""
        while True:
            with self.lock:
                cached = self.thumbs.get(image_id)
                if cached is not None:
                    return cached
                pending = self.thumbs_pending.get(image_id)
                mine = pending is None
                if mine:
                    pending = self.thumbs_pending[image_id] = threading.Event()
            assert pending is not None
            if not mine:
                if not pending.wait(timeout=left()):
                    raise Abandoned
                continue  # made (in the cache now), or its maker failed and this request tries itself
            try:
                return self._made(image_id, self.make_thumbnail(image_id, left))
            finally:
                with self.lock:
                    self.thumbs_pending.pop(image_id, None)
                pending.set()

    def _made(self, image_id: int, made: bytes) -> bytes:
        with self.lock:
            self.thumbs[image_id] = made
            while len(self.thumbs) > _THUMB_CACHE:
                self.thumbs.popitem(last=False)
        return made


def service(request: Request) -> Service:
    """The app's Service (a route's dependency)."""
    svc: Service = request.app.state.service
    return svc
