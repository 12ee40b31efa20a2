"""Safe reads and atomic writes of files for the encoder side (images, checkpoints, histories, result files);
torch- and faiss-free."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["NotReadable", "commit_pair", "file_mode", "pending_name", "read_regular", "settled_json", "write_atomic"]


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
        # read what fstat says, plus one byte to see growth: never a buffer of `limit` bytes for a small file
        data = f.read(st.st_size + 1)
    if len(data) > st.st_size:
        raise NotReadable("grew while being read; try again once it is written")
    return data


def file_mode() -> int:
    """The permission bits a plain `open()` would give a new file under the process's umask (0o666 & ~umask):
    atomic writes go through temporary files, which Python makes 0600, and would otherwise keep that."""
    return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux states it without changing it
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # elsewhere: read by setting (briefly) and restoring
    os.umask(old)
    return old


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
            os.fchmod(f.fileno(), file_mode())
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


def pending_name(json_name: str) -> str:
    """Where commit_pair puts a pair's new JSON while its data file is being replaced."""
    return f".{json_name}.pending"


def commit_pair(folder: str | os.PathLike[str], data_name: str, data: bytes, json_name: str, doc: bytes) -> None:
    """Replace a data file and the JSON that describes it (and records the data's sha256) as one step.

    The new JSON is first written whole beside the pair as a pending file, then the data file is replaced
    (atomically), then the pending JSON is renamed over the old one. A stop at any point leaves either the
    old pair, or the new data with its JSON still pending, which `settled_json` completes: never data
    with another data's description."""
    root = Path(folder)
    pending = root / pending_name(json_name)
    write_atomic(pending, doc)
    write_atomic(root / data_name, data)
    os.replace(pending, root / json_name)


def settled_json(
    folder: str | os.PathLike[str], json_name: str, data_sha256: str, recorded: Callable[[dict[str, Any]], object]
) -> dict[str, Any] | None:
    """The JSON of a pair whose commit was stopped after the data file was replaced: the pending JSON when
    `recorded(doc)` (the data hash it records) is `data_sha256`, renamed into place when the folder is
    writable; None when there is no such pending JSON."""
    import json

    root = Path(folder)
    pending = root / pending_name(json_name)
    try:
        doc = json.loads(pending.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or recorded(doc) != data_sha256:
        return None
    try:
        os.replace(pending, root / json_name)
    except OSError:  # a read-only checkpoint still loads
        pass
    return doc
