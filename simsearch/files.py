"""Safe reads and atomic writes of files for the encoder side (images, checkpoints, histories, result files);
torch- and faiss-free."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["NotReadable", "read_regular", "write_atomic"]


class NotReadable(Exception):
    """A file that read_regular refuses, with a reason a person can act on."""


def read_regular(path: str | os.PathLike[str], limit: int, sniff: Callable[[BinaryIO], None] | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, read once.

    Only regular files are read (a FIFO, a device or a socket, even behind a symlink, is refused
    without blocking), the size is checked before anything is read, and `sniff(file)` may look at
    the head of the file and raise NotReadable before the body is read. Raises NotReadable or OSError.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise NotReadable("not a regular file (a pipe, device or socket)")
        if st.st_size > limit:
            raise NotReadable(f"{st.st_size:,} bytes is over the limit of {limit:,}")
        if sniff is not None:
            sniff(f)
            f.seek(0)
        data = f.read(limit + 1)
    if len(data) > limit:
        raise NotReadable(f"grew past the limit of {limit:,} bytes while being read")
    return data


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
