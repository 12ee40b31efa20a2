"""Embedder: one encoder on one device turning arrays, PIL images, paths or streams of files into
(N, D) float32 unit rows. Every path that embeds goes through it (the torch/numpy seam)."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from simsearch.errors import ImageError, ModelError
from simsearch.images import DEFAULT_MAX_PIXELS, load_array, read_file, to_array
from simsearch.preprocess import Preprocess

if TYPE_CHECKING:
    from PIL import Image

    from simsearch.checkpoint import LoadedModel
    from simsearch.encoder import Encoder

__all__ = ["Embedded", "Embedder", "FileFacts", "read_and_decode"]


@dataclass(frozen=True)
class FileFacts:
    """What the catalog records about a file: bytes, modification time, content hash."""

    size: int
    mtime: float
    sha256: str


@dataclass(frozen=True)
class Embedded:
    """One batch: positions into the input list, (n, D) float32 unit rows, and the files' facts."""

    positions: list[int]
    vectors: np.ndarray
    facts: list[FileFacts]


def read_and_decode(
    path: str | os.PathLike[str], pre: Preprocess, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, FileFacts]:
    """Read a file once: hash its bytes and decode them as `pre` says. Raises ImageError."""
    data = read_file(path)
    try:
        st = os.stat(path)
    except OSError as err:
        raise ImageError(str(path), f"cannot read: {err.strerror}") from None
    try:
        arr = load_array(data, pre, max_pixels=max_pixels)
    except ImageError as err:
        raise ImageError(str(path), err.reason) from None
    return arr, FileFacts(size=st.st_size, mtime=st.st_mtime, sha256=hashlib.sha256(data).hexdigest())


class Embedder:
    """An encoder on a device, with its preprocessing: the one way images become embeddings.

    Every method returns float32, C-contiguous (N, D) rows of unit L2 norm. The encoder runs in
    eval mode and inference mode (its training mode is restored afterwards, so training can
    validate with the weights it is training); bfloat16 autocast on CUDA.
    """

    def __init__(self, encoder: Encoder, device: str | torch.device = "cpu", model: LoadedModel | None = None) -> None:
        from simsearch.device import resolve_device

        self.encoder = encoder
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model = model  # where the encoder came from (source, fingerprint, meta), when loaded from a checkpoint
        encoder.to(self.device)

    @classmethod
    def load(cls, model: str | None = None, device: str | torch.device = "auto") -> Embedder:
        """The encoder named `model` (a built-in name or checkpoint folder; None: the default)."""
        from simsearch.checkpoint import load_checkpoint
        from simsearch.device import resolve_device

        dev = resolve_device(device) if isinstance(device, str) else device
        loaded = load_checkpoint(model, device=dev)
        return cls(loaded.encoder, dev, loaded)

    @property
    def loaded(self) -> LoadedModel:
        """The checkpoint this encoder came from (source, fingerprint, meta); Embedder.load sets it."""
        if self.model is None:
            raise ModelError("this encoder was not loaded from a checkpoint, so it has no source or fingerprint")
        return self.model

    @property
    def preprocess(self) -> Preprocess:
        return self.encoder.config.preprocess

    @property
    def dim(self) -> int:
        return int(self.encoder.config.embedding_dim)

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dim), np.float32)

    @property
    def supports_text(self) -> bool:
        """Whether text queries work: a CLIP-family encoder (an OpenCLIP import, or one trained with --captions)."""
        return bool(self.encoder.config.supports_text)

    def embed_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """N strings -> (N, D) unit rows in the images' space. Raises ModelError for an image-only encoder."""
        if not self.supports_text:
            raise ModelError(
                "this index's encoder embeds images only: text queries need a CLIP-family encoder "
                "(an OpenCLIP import, or one trained with simsearch train --captions)"
            )
        return self._in_batches(len(texts), batch_size, lambda b: self.encoder.embed_text(list(texts[b])))

    def embed_arrays(self, arrays: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """(N, C, S, S) uint8 arrays already framed as `preprocess` says -> (N, D) unit rows.
        Batches hold 512 images of 64 pixels, fewer of larger input (32 of a backbone's 224)."""
        if batch_size is None:
            batch_size = max(16, min(512, 512 * 64 * 64 // self.preprocess.size**2))
        dev = self.device
        # bf16 on a GPU for simsearch's own networks (cosines within 1e-3 of the CPU's); a library network keeps
        # float32: EfficientNet-Lite's depthwise stages drifted to a cosine of 0.990 in bf16 (BENCHMARKS.md)
        half = dev.type == "cuda" and self.encoder.config.backbone is None

        def embed(batch: slice) -> torch.Tensor:
            x = torch.from_numpy(np.require(arrays[batch], requirements=["C", "W"]))
            x = x.to(dev, non_blocking=True).float().div_(255.0)
            if dev.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=half):
                return self.encoder(x)

        return self._in_batches(len(arrays), batch_size, embed)

    def _in_batches(self, n: int, batch_size: int, embed: Callable[[slice], torch.Tensor]) -> np.ndarray:
        """embed(batch) over n items in slices of batch_size, in eval and inference mode (the encoder's
        training mode restored afterwards): (n, D) float32, C-contiguous."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            with torch.inference_mode():
                out = [embed(slice(i, i + batch_size)).float().cpu().numpy() for i in range(0, n, batch_size)]
        finally:
            self.encoder.train(was_training)
        return np.ascontiguousarray(np.concatenate(out) if out else self._empty(), dtype=np.float32)

    def embed_images(self, images: Sequence[Image.Image], chunk: int = 2048) -> np.ndarray:
        """PIL images (any mode) -> (N, D) unit rows, framed in worker threads (Pillow releases the GIL)."""
        pre = self.preprocess
        parts = []
        with ThreadPoolExecutor() as pool:
            for s in range(0, len(images), chunk):
                arrays = np.stack(list(pool.map(lambda im: to_array(im, pre), images[s : s + chunk])))
                parts.append(self.embed_arrays(arrays))
        return np.concatenate(parts) if parts else self._empty()

    def embed_paths(self, paths: Sequence[str | os.PathLike[str]]) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """(M, D) rows of the readable images in order, and (path, reason) for the others."""
        arrays, failed = [], []
        for p in paths:
            try:
                arrays.append(read_and_decode(p, self.preprocess)[0])
            except ImageError as err:
                failed.append((str(p), err.reason))
        return (self.embed_arrays(np.stack(arrays)) if arrays else self._empty()), failed

    def embed_faces(
        self, paths: Sequence[str | os.PathLike[str]]
    ) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
        """Every face of each photo (largest first), for an encoder that frames faces: (M, D) rows,
        a name for each ("photo.jpg#face2@x,y,wxh": its box in the photo's pixels), and (path, reason)
        for the photos that could not be read or show no face."""
        from simsearch.errors import SimSearchError
        from simsearch.images import decode_image, face_arrays, keep_side

        pre = self.preprocess
        if not pre.face:
            raise SimSearchError("every face of a photo needs an encoder that frames faces (such as faces)")
        arrays, names, failed = [], [], []
        for p in paths:
            try:
                img = decode_image(p, channels=pre.channels, min_side=keep_side(pre.size, face=True))
                found = face_arrays(img, pre.size, every=True, name=str(p), align=pre.face_align)
            except ImageError as err:
                failed.append((str(p), err.reason))
                continue
            for n, (face, arr) in enumerate(found, 1):
                x, y, w, h = face.box
                arrays.append(arr)
                names.append(f"{p}#face{n}@{x},{y},{w}x{h}")
        return (self.embed_arrays(np.stack(arrays)) if arrays else self._empty()), names, failed

    def embed_bytes(self, data: bytes) -> np.ndarray:
        """One encoded image (its file's bytes) -> (1, D). Raises ImageError."""
        return self.embed_arrays(load_array(data, self.preprocess)[None])

    def stream(
        self,
        files: Sequence[str | os.PathLike[str]],
        batch_size: int = 256,
        workers: int | None = None,
        on_error: Callable[[int, ImageError], None] | None = None,
        progress: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> Iterator[Embedded]:
        """Embed files batch by batch, streaming: memory is bounded by the batch size and look-ahead.

        Decoding runs in `workers` threads (Pillow releases the GIL), up to three batches ahead of
        the encoder. Files that cannot be read go to `on_error(position, error)` and are left out.
        """
        pre = self.preprocess
        workers = workers or min(8, (os.cpu_count() or 1) + 1)
        bar = tqdm(total=len(files), desc="embedding", unit="img", disable=not progress, dynamic_ncols=True)

        def work(path: str | os.PathLike[str]) -> tuple[np.ndarray, FileFacts] | ImageError:
            try:
                return read_and_decode(Path(path), pre, max_pixels)
            except ImageError as err:
                return err

        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            pending: deque[tuple[int, Future[tuple[np.ndarray, FileFacts] | ImageError]]] = deque()
            submitted = 0
            lookahead = 3 * batch_size
            while submitted < len(files) or pending:
                while submitted < len(files) and len(pending) < lookahead:
                    pending.append((submitted, pool.submit(work, files[submitted])))
                    submitted += 1
                positions: list[int] = []
                arrays: list[np.ndarray] = []
                facts: list[FileFacts] = []
                while pending and len(positions) < batch_size:
                    pos, fut = pending.popleft()
                    res = fut.result()
                    bar.update(1)
                    if isinstance(res, ImageError):
                        if on_error is not None:
                            on_error(pos, res)
                        continue
                    positions.append(pos)
                    arrays.append(res[0])
                    facts.append(res[1])
                    # keep the decoders busy while this batch fills
                    if submitted < len(files):
                        pending.append((submitted, pool.submit(work, files[submitted])))
                        submitted += 1
                if positions:
                    yield Embedded(positions, self.embed_arrays(np.stack(arrays)), facts)
        finally:
            # On an interruption, drop the decodes still queued instead of finishing them.
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
