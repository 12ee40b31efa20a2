"""The index directory: manifest, vectors and catalog, saved atomically as numbered generations.

Layout of an index directory:
    manifest.json           the commit point: names the current generation and describes it
    gen-000007/vectors.faiss
    gen-000007/catalog.sqlite
    gen-000007/tombstones.npy   hnsw only, when removed ids still sit in the graph
    gen-000007/exact_ids.npy    ivfpq only: sorted ids and their float32 vectors (exact.npy),
    gen-000007/exact.npy        memory-mapped to re-rank the PQ candidates exactly
A write builds a complete new generation in a temporary folder, renames it into place and only
then replaces manifest.json (write to a temporary file, fsync, rename). A crash or kill at any
moment leaves manifest.json naming a complete generation; leftovers are removed on the next write.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from index.catalog import Catalog, Record
from index.errors import (
    IndexChangedError,
    IndexCorruptError,
    IndexLockedError,
    IndexStoreError,
    VectorError,
)
from index.manifest import CATALOG, FORMAT_VERSION, MANIFEST, VECTORS, CheckReport, Manifest, now, read_manifest
from index.vector_index import KIND_RULES, IndexKind, KindParams, VectorIndex, choose_kind

__all__ = ["FORMAT_VERSION", "CheckReport", "IndexStore", "Manifest", "Transaction"]

TOMBSTONES = "tombstones.npy"
EXACT_IDS = "exact_ids.npy"  # ivfpq only: sorted ids and their float32 vectors, for exact re-ranking
EXACT = "exact.npy"
LOCK = ".lock"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    """The process's umask, read without changing it where Linux states it (simsearch.files has the twin:
    index/ imports nothing of simsearch)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write bytes through a temporary file in the same folder, fsync, and rename into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600: honour the umask as open() would
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_INDEX_FILES = {VECTORS, TOMBSTONES, EXACT_IDS, EXACT, CATALOG, f"{CATALOG}-journal"}
_GEN_NAME = re.compile(r"gen-\d{6}")
_TMP_NAME = re.compile(r"\.gen-tmp-[a-z0-9_]{8}")


def _index_owned(entry: Path) -> bool:
    """Whether `entry` in an index directory is something the index wrote, and so may be removed: a
    generation folder (gen-NNNNNN) or a write's temporary folder (.gen-tmp-XXXXXXXX) holding nothing but
    index files (and their own temporary files). A user's folder named like one is never touched."""
    if not (_GEN_NAME.fullmatch(entry.name) or _TMP_NAME.fullmatch(entry.name)):
        return False
    if entry.is_symlink() or not entry.is_dir():
        return False
    try:
        names = [p.name for p in entry.iterdir()]
    except OSError:
        return False
    return all(n in _INDEX_FILES or (n.startswith(".") and n.endswith(".tmp")) for n in names)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def checksum_problems(root: Path, manifest: Manifest) -> list[str]:
    """The files of the current generation whose bytes do not match the checksums its manifest recorded
    (overwritten in place, damaged, or missing); empty for a sound generation or an index too old to
    have checksums."""
    problems = []
    gen = root / manifest.gen_dir
    for name, want in sorted(manifest.checksums.items()):
        path = gen / name
        try:
            got = _sha256(path) if Path(name).name == name else None
        except OSError:
            got = None
        if got is None:
            problems.append(f"{manifest.gen_dir}/{name}: missing")
        elif got != want:
            problems.append(f"{manifest.gen_dir}/{name}: content does not match its checksum (damaged or overwritten)")
    return problems


def _load_vectors(gen: Path, manifest: Manifest) -> VectorIndex:
    try:
        data = (gen / VECTORS).read_bytes()
        tomb = (gen / TOMBSTONES).read_bytes() if (gen / TOMBSTONES).exists() else None
        exact = None
        if KIND_RULES[manifest.kind].trained:  # the exact vectors beside the codes
            exact = (np.load(gen / EXACT_IDS, allow_pickle=False), np.load(gen / EXACT, mmap_mode="r"))
    except OSError as err:
        raise IndexCorruptError(f"{gen.parent}: vector file missing or unreadable ({err.strerror})") from None
    except ValueError as err:
        raise IndexCorruptError(f"{gen.parent}: exact vector file unreadable ({err})") from None
    try:
        params = manifest.kind_params
    except (ValueError, TypeError, KeyError) as err:
        raise IndexCorruptError(f"{gen.parent}: {MANIFEST} has damaged index parameters ({err})") from None
    return VectorIndex.from_bytes(data, manifest.dim, manifest.kind, params, tomb, exact)


class IndexStore:
    """An index directory opened for reading: its manifest, vectors (in memory) and catalog."""

    def __init__(self, path: Path, manifest: Manifest, vectors: VectorIndex, catalog: Catalog) -> None:
        self.path = path
        self.manifest = manifest
        self.vectors = vectors
        self.catalog = catalog

    @staticmethod
    def exists(path: str | os.PathLike[str]) -> bool:
        return (Path(path) / MANIFEST).is_file()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> IndexStore:
        """Open for reading. Raises IndexNotFoundError or IndexCorruptError.

        A writer may commit (and remove the generation just read) while this reads: a failure after
        which manifest.json names another generation is retried on that one, so a reader never fails
        because a writer committed."""
        root = Path(path)
        for _ in range(5):
            manifest = read_manifest(root)
            try:
                return cls._open_generation(root, manifest)
            except IndexCorruptError:
                try:
                    moved_on = read_manifest(root).generation != manifest.generation
                except IndexStoreError:
                    moved_on = False
                if not moved_on:
                    raise
        return cls._open_generation(root, read_manifest(root))

    @classmethod
    def _open_generation(cls, root: Path, manifest: Manifest) -> IndexStore:
        gen = root / manifest.gen_dir
        vectors = _load_vectors(gen, manifest)
        if not (gen / CATALOG).is_file():
            raise IndexCorruptError(f"{root}: catalog file missing")
        catalog = Catalog(gen / CATALOG, read_only=True)
        store = cls(root, manifest, vectors, catalog)
        try:
            n_cat = catalog.count()
        except Exception as err:  # sqlite3.DatabaseError and friends
            catalog.close()
            raise IndexCorruptError(f"{root}: catalog is unreadable ({err})") from None
        if not (len(vectors) == n_cat == manifest.count):
            catalog.close()
            raise IndexCorruptError(
                f"{root}: damaged index: {len(vectors)} vectors, {n_cat} catalog rows, manifest says {manifest.count}"
            )
        return store

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self) -> CheckReport:
        """Compare vector ids, catalog ids and the manifest's count."""
        problems = []
        vec_ids, cat_ids = set(self.vectors.ids().tolist()), set(self.catalog.ids())
        if len(vec_ids) != len(self.vectors):
            problems.append("duplicate ids in the vector index")
        if vec_ids - cat_ids:
            problems.append(f"{len(vec_ids - cat_ids)} vectors have no catalog row")
        if cat_ids - vec_ids:
            problems.append(f"{len(cat_ids - vec_ids)} catalog rows have no vector")
        if self.manifest.count != len(cat_ids):
            problems.append(f"manifest count {self.manifest.count} != catalog rows {len(cat_ids)}")
        if cat_ids and max(cat_ids) >= self.manifest.next_id:
            problems.append("manifest next_id is not above every id")
        damaged = checksum_problems(self.path, self.manifest)
        if damaged and read_manifest(self.path).generation != self.manifest.generation:
            damaged = []  # a writer committed and removed this generation meanwhile: nothing is damaged
        problems += damaged
        _, vecs = self.vectors.vectors()
        if len(vecs):
            bad = ~np.isfinite(vecs).all(axis=1) | (np.abs(np.linalg.norm(vecs, axis=1) - 1) > 1e-2)
            if bad.any():
                problems.append(f"{int(bad.sum())} vectors are not finite unit vectors")
        return CheckReport(count=len(cat_ids), problems=problems)

    def size_on_disk(self) -> int:
        gen = self.path / self.manifest.gen_dir
        files = (gen / VECTORS, gen / CATALOG, gen / TOMBSTONES, self.path / MANIFEST)
        return sum(p.stat().st_size for p in files if p.exists())


class Transaction:
    """A write to an index directory: changes go to a new generation that commit() makes current.

    Holds an exclusive lock on the directory from begin to commit/abort; abort (or an exception
    inside a `with` block) leaves the directory exactly as it was.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        manifest: Manifest | None,
        fresh: bool,
        expect: Manifest | None = None,
        replace_existing: bool = True,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise IndexLockedError(f"{self.path}: another simsearch process is writing this index") from None
        self._closed = False
        try:
            # what the caller decided on before the lock was taken must still hold under it: another writer
            # may have committed in between (an --overwrite with another encoder, or a new index at this path)
            if fresh and not replace_existing and IndexStore.exists(self.path):
                raise IndexChangedError(
                    f"{self.path}: another simsearch process made an index here meanwhile; nothing was written "
                    "(run again to sync it, or give --overwrite to replace it)"
                )
            if manifest is None:
                manifest = read_manifest(self.path)
                if expect is not None and (
                    manifest.encoder.get("fingerprint") != expect.encoder.get("fingerprint")
                    or manifest.created != expect.created
                ):
                    raise IndexChangedError(
                        f"{self.path}: the index was replaced by another simsearch process (another encoder or a "
                        "new build) while this one was starting; nothing was written: run the command again"
                    )
            self._cleanup_leftovers(keep=None if fresh else manifest.gen_dir)
            self.base = manifest
            self.tmp = Path(tempfile.mkdtemp(prefix=".gen-tmp-", dir=self.path))
            os.chmod(self.tmp, 0o777 & ~_umask())  # mkdtemp makes 0700: readers under other accounts need in
            if fresh:
                self.vectors = VectorIndex(manifest.dim, manifest.kind, manifest.kind_params)
            else:
                old = self.path / manifest.gen_dir
                damaged = checksum_problems(self.path, manifest)
                if damaged:  # never build a new generation on damaged files
                    raise IndexCorruptError(
                        f"{self.path}: {damaged[0]}; rebuild the index with `index build --overwrite`"
                    )
                shutil.copyfile(old / CATALOG, self.tmp / CATALOG)
                self.vectors = _load_vectors(old, manifest)
            self.catalog = Catalog(self.tmp / CATALOG)
            # never reuse an id, even when the manifest's next_id is stale
            self.next_id = max(manifest.next_id, self.catalog.max_id() + 1)
        except BaseException:
            tmp = getattr(self, "tmp", None)
            if tmp is not None:  # a failed start (disk full copying the catalog) leaves no temporary folder
                shutil.rmtree(tmp, ignore_errors=True)
            self._release()
            raise

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        dim: int,
        encoder: dict[str, Any],
        kind: str = "auto",
        params: KindParams | None = None,
        replace_existing: bool = True,
    ) -> Transaction:
        """Start a brand-new index at `path` (replacing an existing index only when committed).

        Refuses a folder that holds other files and is not an index, so no user folder is clobbered; with
        replace_existing=False, also an index that appears at `path` before the lock is taken (two builds
        racing to make one new index: the second is refused instead of silently replacing the first).
        """
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise IndexStoreError(f"{root}: exists and is not a folder")
        if root.is_dir() and not IndexStore.exists(root):
            stray = [p.name for p in root.iterdir() if p.name != LOCK and not _index_owned(p)]
            if stray:
                raise IndexStoreError(
                    f"{root}: folder is not empty and is not a simsearch index; choose another --index path"
                )
        generation = 0
        created = now()
        if IndexStore.exists(root):
            try:
                old = read_manifest(root)
                generation, created = old.generation, old.created
            except IndexStoreError:
                pass
        # 'auto' starts exact and is resolved by size at commit
        initial = IndexKind.FLAT if kind == "auto" else IndexKind.parse(kind)
        settings = dict((params or KindParams()).to_dict(), requested=kind)
        manifest = Manifest(
            dim=dim, encoder=encoder, kind=initial, params=settings, generation=generation, created=created
        )
        return cls(root, manifest, fresh=True, replace_existing=replace_existing)

    @classmethod
    def begin(cls, path: str | os.PathLike[str], expect: Manifest | None = None) -> Transaction:
        """Start changing an existing index (the manifest is read after the lock is taken, so a
        writer always builds on the last commit). `expect`: the manifest the caller read before (to load
        its encoder); an index replaced since (another encoder, or built anew) is refused."""
        read_manifest(Path(path))  # a clear error for a missing index before a lock file is made
        return cls(path, None, fresh=False, expect=expect)

    def new_ids(self, n: int) -> np.ndarray:
        ids = np.arange(self.next_id, self.next_id + n, dtype=np.int64)
        self.next_id += n
        return ids

    def add(self, vectors: np.ndarray, records: list[Record]) -> None:
        """Add vectors and their catalog rows together (ids taken from the records)."""
        ids = np.array([r.id for r in records], dtype=np.int64)
        self.vectors.add(vectors, ids)
        self.catalog.add(records)

    def adopt(self, vectors: VectorIndex, records: list[Record]) -> None:
        """A new index takes a vector index built elsewhere (a distributed ivfpq build) with the
        catalog rows of exactly its ids."""
        if len(self.vectors) or self.catalog.count():
            raise VectorError("only a new, empty index can take a vector index built elsewhere")
        if vectors.dim != self.vectors.dim:
            raise VectorError(f"the vector index has dimension {vectors.dim}, this index {self.vectors.dim}")
        if not np.array_equal(np.sort(vectors.ids()), np.sort(np.array([r.id for r in records], dtype=np.int64))):
            raise VectorError("the vector index's ids are not the catalog rows' ids")
        self.vectors = vectors
        self.catalog.add(records)

    def remove(self, ids: list[int]) -> None:
        self.vectors.remove(np.asarray(ids, dtype=np.int64))
        self.catalog.remove(ids)

    def commit(self, **manifest_changes: Any) -> Manifest:
        """Make this generation current; returns the new manifest."""
        self.catalog.commit()
        count = self.catalog.count()
        if count != len(self.vectors):
            raise IndexCorruptError(f"refusing to commit: {len(self.vectors)} vectors but {count} catalog rows")
        self.catalog.close()
        self._settle_kind()
        write_file_atomic(self.tmp / VECTORS, self.vectors.to_bytes())
        tomb = self.vectors.tombstone_bytes()
        if tomb is not None:
            write_file_atomic(self.tmp / TOMBSTONES, tomb)
        exact = self.vectors.exact_bytes()
        if exact is not None:
            write_file_atomic(self.tmp / EXACT_IDS, exact[0])
            write_file_atomic(self.tmp / EXACT, exact[1])
        written = [n for n in (VECTORS, CATALOG, TOMBSTONES, EXACT_IDS, EXACT) if (self.tmp / n).is_file()]
        manifest = replace(
            self.base,
            kind=self.vectors.kind,
            generation=self.base.generation + 1,
            count=count,
            next_id=self.next_id,
            updated=now(),
            checksums={n: _sha256(self.tmp / n) for n in written},
            **manifest_changes,
        )
        final = self.path / manifest.gen_dir
        if final.exists() or final.is_symlink():  # a leftover of a crashed write that never became current
            if not _index_owned(final):
                raise IndexStoreError(
                    f"{final}: exists and was not written by simsearch; move it out of the index folder"
                )
            shutil.rmtree(final)
        os.rename(self.tmp, final)
        _fsync_dir(self.path)
        write_file_atomic(self.path / MANIFEST, manifest.to_json().encode())
        self._cleanup_leftovers(keep=manifest.gen_dir)
        self._release()
        return manifest

    def request_kind(self, requested: str) -> None:
        """Ask for another index kind ('auto' or a name); the change happens at commit."""
        choose_kind(requested, 0)  # validates the name
        self.base = replace(self.base, params=dict(self.base.params, requested=requested))

    def _settle_kind(self) -> None:
        """Purge piled-up tombstones, and convert to the kind asked for (auto: by size)."""
        self.vectors.compact()
        target = choose_kind(self.base.requested_kind, len(self.vectors))
        if target is self.vectors.kind:
            return
        ids, vecs = self.vectors.vectors()
        converted = VectorIndex(self.vectors.dim, target, self.base.kind_params)
        for start in range(0, len(ids), 65_536):
            converted.add(vecs[start : start + 65_536], ids[start : start + 65_536])
        self.vectors = converted

    def abort(self) -> None:
        if self._closed:
            return
        self.catalog.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._release()

    def _cleanup_leftovers(self, keep: str | None) -> None:
        # A generation is garbage only when neither manifest.json nor the caller names it, and only
        # what the index itself wrote is ever removed.
        current = read_manifest(self.path).gen_dir if IndexStore.exists(self.path) else None
        for p in self.path.iterdir():
            if p.name not in (keep, current, getattr(self, "tmp", Path()).name) and _index_owned(p):
                shutil.rmtree(p, ignore_errors=True)

    def _release(self) -> None:
        if not self._closed:
            self._closed = True
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.abort()
