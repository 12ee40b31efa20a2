"""Files to embeddings: decode in worker threads while the encoder embeds, batch by batch (the torch/numpy seam)."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from simsearch.checkpoint import LoadedModel
from simsearch.errors import ImageError
from simsearch.images import DEFAULT_MAX_PIXELS, Ink, load_array, read_file

__all__ = ["Embedded", "FileFacts", "embed_arrays_with", "embed_files", "read_and_decode"]


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
    path: str | os.PathLike[str],
    channels: int,
    size: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    crop: float = 1.0,
    ink: Ink | None = None,
) -> tuple[np.ndarray, FileFacts]:
    """Read a file once: hash its bytes and decode them. Raises ImageError."""
    data = read_file(path)
    try:
        st = os.stat(path)
    except OSError as err:
        raise ImageError(str(path), f"cannot read: {err.strerror}") from None
    try:
        arr = load_array(data, channels=channels, size=size, max_pixels=max_pixels, crop=crop, ink=ink)
    except ImageError as err:
        raise ImageError(str(path), err.reason) from None
    return arr, FileFacts(size=st.st_size, mtime=st.st_mtime, sha256=hashlib.sha256(data).hexdigest())


def embed_arrays_with(
    encoder: torch.nn.Module, arrays: np.ndarray, device: torch.device, batch_size: int = 512
) -> np.ndarray:
    """(N, C, S, S) uint8 -> (N, D) float32 C-contiguous unit rows, in eval mode, batch by batch."""
    was_training = encoder.training
    encoder.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(arrays), batch_size):
            x = torch.from_numpy(arrays[i : i + batch_size]).to(device, non_blocking=True).float().div_(255.0)
            if device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out.append(encoder(x).float().cpu().numpy())
    encoder.train(was_training)
    dim = getattr(getattr(encoder, "config", None), "embedding_dim", 0)
    return np.ascontiguousarray(np.concatenate(out) if out else np.zeros((0, dim)), dtype=np.float32)


def embed_files(
    model: LoadedModel,
    files: Sequence[str | os.PathLike[str]],
    device: torch.device,
    batch_size: int = 256,
    workers: int | None = None,
    on_error: Callable[[int, ImageError], None] | None = None,
    progress: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[Embedded]:
    """Embed files batch by batch, streaming: memory is bounded by the batch size and look-ahead.

    Decoding runs in `workers` threads (Pillow releases the GIL), up to two batches ahead of the
    encoder. Files that cannot be read go to `on_error(position, error)` and are left out.
    """
    pre = model.config.preprocess
    workers = workers or min(8, (os.cpu_count() or 1) + 1)
    model.encoder.to(device).eval()
    bar = tqdm(total=len(files), desc="embedding", unit="img", disable=not progress, dynamic_ncols=True)

    def work(path: str | os.PathLike[str]) -> tuple[np.ndarray, FileFacts] | ImageError:
        try:
            return read_and_decode(Path(path), pre.channels, pre.size, max_pixels, pre.crop, pre.ink)
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
                yield Embedded(positions, embed_arrays_with(model.encoder, np.stack(arrays), device), facts)
    finally:
        # On an interruption, drop the decodes still queued instead of finishing them.
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
