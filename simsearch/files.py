"""Atomic file writes for the encoder side (checkpoints, histories, result files); torch- and faiss-free."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` so that a reader sees the old file or the new one, never a part.

    The bytes go to a hidden temporary file beside `path` (same file system), are flushed to disk,
    and the temporary file is renamed over `path`; on any failure the temporary file is removed
    and `path` is untouched. (index/ has its own copy for index files: index/ imports nothing of
    simsearch.)
    """
    target = Path(path)
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False) as f:
        tmp = Path(f.name)
        try:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        except BaseException:
            f.close()
            tmp.unlink(missing_ok=True)
            raise
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
