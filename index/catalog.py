"""The SQLite catalog: what each vector id stands for (path, label, size, mtime, sha256)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from index.errors import IndexCorruptError, IndexStoreError

__all__ = ["Catalog", "Record"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id     INTEGER PRIMARY KEY,
    path   TEXT NOT NULL UNIQUE,
    label  TEXT,
    size   INTEGER NOT NULL,
    mtime  REAL NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS images_sha256 ON images(sha256);
CREATE INDEX IF NOT EXISTS images_label ON images(label);
"""


@dataclass(frozen=True)
class Record:
    """One gallery image: its vector id and what identifies the file it came from."""

    id: int
    path: str
    label: str | None
    size: int
    mtime: float
    sha256: str


class Catalog:
    """An open catalog database; use as a context manager or call close()."""

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        """Open (a writer: create) the catalog. A reader opens it read-only and never writes to the file,
        not even a schema into an empty one (which then reads as damaged)."""
        self.path = Path(path)
        try:
            # usable from another thread (a service's worker threads), one caller at a time
            if read_only:
                self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
                self._db.execute("SELECT COUNT(*) FROM images").fetchone()
            else:
                self._db = sqlite3.connect(str(self.path), check_same_thread=False)
                self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as err:
            raise IndexCorruptError(f"{self.path}: catalog is unreadable ({err})") from None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write's failures said as what happened (a row the catalog refuses, a full disk), not as damage:
        the write is to a new generation's copy, so the index as committed is untouched."""
        try:
            yield
        except sqlite3.IntegrityError as err:
            raise IndexStoreError(
                f"the catalog refused a row ({err}): a path given twice, or a missing value"
            ) from None
        except sqlite3.OperationalError as err:
            full = "full" in str(err).lower()
            why = "the disk is full" if full else f"the catalog could not be written ({err})"
            raise IndexStoreError(f"{why}; the index was not changed") from None

    def commit(self) -> None:
        with self._writing():
            self._db.commit()

    def add(self, records: Iterable[Record]) -> None:
        with self._writing():
            self._db.executemany(
                "INSERT INTO images (id, path, label, size, mtime, sha256) VALUES (?, ?, ?, ?, ?, ?)",
                [(r.id, r.path, r.label, r.size, r.mtime, r.sha256) for r in records],
            )

    def remove(self, ids: Iterable[int]) -> None:
        with self._writing():
            self._db.executemany("DELETE FROM images WHERE id = ?", [(int(i),) for i in ids])

    def repath(self, id_: int, path: str, label: str | None, mtime: float) -> None:
        with self._writing():
            self._db.execute("UPDATE images SET path = ?, label = ?, mtime = ? WHERE id = ?", (path, label, mtime, id_))

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0])

    def max_id(self) -> int:
        row = self._db.execute("SELECT MAX(id) FROM images").fetchone()
        return -1 if row[0] is None else int(row[0])

    def get(self, ids: Iterable[int]) -> dict[int, Record]:
        """Records by id (ids not in the catalog are absent from the result)."""
        wanted = sorted({int(i) for i in ids if int(i) >= 0})
        out: dict[int, Record] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            q = f"SELECT id, path, label, size, mtime, sha256 FROM images WHERE id IN ({','.join('?' * len(chunk))})"
            for row in self._db.execute(q, chunk):
                out[row[0]] = Record(*row)
        return out

    def all(self) -> list[Record]:
        return [
            Record(*row)
            for row in self._db.execute("SELECT id, path, label, size, mtime, sha256 FROM images ORDER BY id")
        ]

    def ids(self) -> list[int]:
        return [int(r[0]) for r in self._db.execute("SELECT id FROM images ORDER BY id")]

    def ids_where(self, labels: list[str] | None = None, under: str | None = None) -> list[int]:
        """Ids of the entries with one of `labels` (None: any) whose path starts with `under` (None: any)."""
        where: list[str] = []
        args: list[object] = []
        if labels is not None:
            where.append(f"label IN ({','.join('?' * len(labels))})")
            args += list(labels)
        if under is not None:
            where.append("substr(path, 1, ?) = ?")
            args += [len(under), under]
        q = "SELECT id FROM images" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return [int(r[0]) for r in self._db.execute(q, args)]

    def paths(self) -> list[str]:
        return [str(r[0]) for r in self._db.execute("SELECT path FROM images")]

    def labels(self) -> dict[str | None, int]:
        """Image count per label."""
        return {r[0]: int(r[1]) for r in self._db.execute("SELECT label, COUNT(*) FROM images GROUP BY label")}
