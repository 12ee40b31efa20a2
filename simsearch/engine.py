"""The engine: build/sync an index from a folder, query it, identify by class. Ties embed to index."""

from __future__ import annotations

import hashlib
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from index.catalog import Record
from index.store import IndexStore, Manifest, Transaction
from simsearch.errors import DataError, EncoderMismatchError, ImageError, SimSearchError
from simsearch.images import Skipped, collect_images, scan_folder

# The modules that load torch (checkpoint, device, embed, encoder) are imported where an encoder is
# needed, so reading or editing an index without embedding (info, check, remove) starts at once.
if TYPE_CHECKING:
    import torch

    from simsearch.checkpoint import LoadedModel
    from simsearch.encoder import EncoderConfig

__all__ = [
    "DEFAULT_THRESHOLD",
    "BuildReport",
    "Hit",
    "Identification",
    "QueryResult",
    "Searcher",
    "StrictModeError",
    "build_index",
    "encoder_record",
    "open_index",
]

DEFAULT_THRESHOLD = 0.5
# How many neighbours identify looks at to score classes, and how many best matches a class's mean uses.
_IDENTIFY_POOL = 100
_CLASS_TOP = 3


class StrictModeError(SimSearchError):
    """--strict was given and some files had to be skipped; nothing was written."""

    def __init__(self, skipped: list[Skipped]) -> None:
        super().__init__(f"{len(skipped)} file(s) could not be indexed (--strict): nothing was written")
        self.skipped = skipped


@dataclass
class BuildReport:
    """What a build or sync did. `added` were embedded; `moved` were re-pathed without embedding."""

    index: str
    total: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    elapsed_s: float = 0.0
    created: bool = False

    @property
    def indexed(self) -> int:
        return self.added + self.updated

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "total": self.total,
            "added": self.added,
            "updated": self.updated,
            "moved": self.moved,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "elapsed_s": round(self.elapsed_s, 3),
            "created": self.created,
        }


def encoder_record(model: LoadedModel) -> dict[str, Any]:
    """What an index's manifest records about the encoder that made it."""
    return {
        "source": model.source,
        "fingerprint": model.fingerprint,
        "config": model.config.to_dict(),
    }


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_model_against(manifest: Manifest, model: LoadedModel, index: Path) -> None:
    want = manifest.encoder.get("fingerprint")
    if want != model.fingerprint:
        raise EncoderMismatchError(
            f"{index} was built with encoder {manifest.encoder.get('source')!r} "
            f"(fingerprint {str(want)[:12]}), not {model.source!r} (fingerprint {model.fingerprint[:12]}); "
            "query it with its own encoder, or rebuild with --overwrite"
        )
    if _recorded_config(manifest) not in (None, model.config):
        raise EncoderMismatchError(
            f"{index} was built with the same weights as {model.source!r} but other preprocessing "
            "(input size, crop, ink framing, inversion or contrast); query it with its own encoder, or rebuild with --overwrite"
        )


def _recorded_config(manifest: Manifest) -> EncoderConfig | None:
    """The encoder configuration the manifest recorded, or None when it has none (or an unreadable one)."""
    from simsearch.encoder import EncoderConfig

    try:
        return EncoderConfig.from_dict(manifest.encoder["config"])
    except (KeyError, TypeError, ValueError):
        return None


def _model_for_index(manifest: Manifest, index: Path, model: str | None, device: str) -> LoadedModel:
    """Load the encoder an index was built with (or check that `model` is that encoder)."""
    from simsearch.checkpoint import load_checkpoint
    from simsearch.device import resolve_device

    source = model or manifest.encoder.get("source")
    try:
        loaded = load_checkpoint(source, device=resolve_device(device))
    except SimSearchError as err:
        if model:
            raise
        raise EncoderMismatchError(
            f"{index} was built with encoder {source!r}, which cannot be loaded here ({err})"
        ) from None
    _check_model_against(manifest, loaded, index)
    return loaded


def build_index(
    folder: str | os.PathLike[str],
    index: str | os.PathLike[str],
    model: str | None = None,
    device: str = "auto",
    batch_size: int = 256,
    strict: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    kind: str | None = None,
) -> BuildReport:
    """Embed every image under `folder` into the index at `index`, or sync an existing index.

    `kind` is 'auto' (exact below 50,000 images, HNSW above), 'flat', 'hnsw' or 'ivfpq'; on an
    existing index it converts the index at commit (None keeps what the index has).

    Sync: unchanged files (same path, size, mtime) are kept, changed ones re-embedded, files whose
    content hash matches a vanished entry are re-pathed without embedding, and vanished files are
    removed. The index is written as one atomic commit at the end; an interruption leaves the
    previous index as it was. With strict=True any unreadable file aborts before writing.
    """
    from simsearch.checkpoint import load_checkpoint
    from simsearch.device import resolve_device

    start = time.monotonic()
    root, index_path = Path(folder), Path(index)
    scan = scan_folder(root)
    report = BuildReport(index=str(index_path), skipped=list(scan.skipped))
    dev = resolve_device(device)
    existing = IndexStore.exists(index_path) and not overwrite
    if existing:
        with IndexStore.open(index_path) as store:
            manifest = store.manifest
            loaded = _model_for_index(manifest, index_path, model, device)
        tx = Transaction.begin(index_path)
        if kind is not None:
            tx.request_kind(kind)
    else:
        loaded = load_checkpoint(model, device=dev)
        tx = Transaction.create(index_path, loaded.config.embedding_dim, encoder_record(loaded), kind=kind or "auto")
        report.created = True
    with tx:
        by_path = {r.path: r for r in tx.catalog.all()}
        wanted = {os.path.abspath(f.path): f for f in scan.files}
        to_embed: list[tuple[str, str | None]] = []
        changed_ids: list[int] = []
        changed_paths: set[str] = set()
        for path, f in wanted.items():
            rec = by_path.get(path)
            if rec is None:
                to_embed.append((path, f.label))
                continue
            try:
                st = os.stat(path)
            except OSError as err:
                report.skipped.append(Skipped(path, f"cannot read: {err.strerror}"))
                continue
            if st.st_size == rec.size and st.st_mtime == rec.mtime and rec.label == f.label:
                report.unchanged += 1
            elif st.st_size == rec.size and st.st_mtime == rec.mtime:
                tx.catalog.repath(rec.id, path, f.label, rec.mtime)  # folder renamed: same file, new label
                report.moved += 1
            else:
                changed_ids.append(rec.id)
                changed_paths.add(path)
                to_embed.append((path, f.label))
        vanished = {rec.sha256: rec for path, rec in by_path.items() if path not in wanted}
        # New files whose bytes match a vanished entry are moves: re-path, no embedding.
        if vanished:
            still_new = []
            for path, label in to_embed:
                rec = by_path.get(path)
                if rec is None:
                    try:
                        digest = _hash_file(Path(path))
                    except OSError:
                        digest = ""
                    old = vanished.pop(digest, None)
                    if old is not None:
                        tx.catalog.repath(old.id, path, label, os.stat(path).st_mtime)
                        report.moved += 1
                        continue
                still_new.append((path, label))
            to_embed = still_new
        removed_ids = [rec.id for rec in vanished.values()]
        report.removed = len(removed_ids)
        tx.remove(removed_ids + changed_ids)

        _embed_into(tx, loaded, dev, to_embed, report, batch_size, strict, progress, changed_paths)
        if report.created and not len(tx.vectors) and not report.skipped:
            raise DataError(f"{root}: no image files found (looked for .jpg, .png, .gif, .bmp, .tif, .webp ...)")
        unchanged = not (report.created or report.added or report.updated or report.moved or report.removed)
        if unchanged and tx.base.requested_kind == (kind or tx.base.requested_kind):
            report.total = tx.base.count  # nothing to write: the current generation stays
        else:
            report.total = tx.commit().count
    report.elapsed_s = time.monotonic() - start
    return report


def _embed_into(
    tx: Transaction,
    loaded: LoadedModel,
    dev: torch.device,
    items: list[tuple[str, str | None]],
    report: BuildReport,
    batch_size: int,
    strict: bool,
    progress: bool,
    changed_paths: set[str],
) -> None:
    """Embed (path, label) items into the transaction, counting added/updated and skips in `report`."""
    from simsearch.embed import embed_files

    def on_error(pos: int, err: ImageError) -> None:
        report.skipped.append(Skipped(err.path, err.reason))

    paths = [p for p, _ in items]
    for batch in embed_files(loaded, paths, dev, batch_size=batch_size, on_error=on_error, progress=progress):
        if strict and report.skipped:
            break
        ids = tx.new_ids(len(batch.positions))
        records = [
            Record(int(i), items[pos][0], items[pos][1], fact.size, fact.mtime, fact.sha256)
            for i, pos, fact in zip(ids, batch.positions, batch.facts, strict=True)
        ]
        tx.add(batch.vectors, records)
        updated = sum(1 for r in records if r.path in changed_paths)
        report.updated += updated
        report.added += len(records) - updated
    if strict and report.skipped:
        raise StrictModeError(report.skipped)


def add_files(
    index: str | os.PathLike[str],
    files: list[str],
    label: str | None = None,
    device: str = "auto",
    batch_size: int = 256,
    strict: bool = False,
    progress: bool = True,
) -> BuildReport:
    """Add image files (or folders of them) to an existing index with the index's own encoder.

    Files already in the index (same path) are re-embedded if they changed, else left alone.
    `label` sets the class of every added file (default: none, or the subfolder for folders).
    """
    from simsearch.device import resolve_device

    start = time.monotonic()
    index_path = Path(index)
    with IndexStore.open(index_path) as store:
        loaded = _model_for_index(store.manifest, index_path, None, device)
    scan = collect_images(files)
    report = BuildReport(index=str(index_path), skipped=list(scan.skipped))
    with Transaction.begin(index_path) as tx:
        by_path = {r.path: r for r in tx.catalog.all()}
        items, changed = [], set()
        for f in scan.files:
            path = os.path.abspath(f.path)
            rec = by_path.get(path)
            lbl = label if label is not None else f.label
            if rec is not None:
                st = os.stat(path)
                if st.st_size == rec.size and st.st_mtime == rec.mtime:
                    report.unchanged += 1
                    continue
                tx.remove([rec.id])
                changed.add(path)
            items.append((path, lbl))
        _embed_into(tx, loaded, resolve_device(device), items, report, batch_size, strict, progress, changed)
        report.total = tx.commit().count
    report.elapsed_s = time.monotonic() - start
    return report


def remove_entries(index: str | os.PathLike[str], targets: list[str]) -> tuple[int, list[str]]:
    """Remove gallery entries by path (a file, or every entry under a folder) or by numeric id.

    Returns (how many were removed, the targets that matched nothing). The files themselves are
    not touched.
    """
    with Transaction.begin(index) as tx:
        records = tx.catalog.all()
        doomed: set[int] = set()
        unmatched = []
        for t in targets:
            hits = set()
            if t.isdigit():
                hits = {r.id for r in records if r.id == int(t)}
            if not hits:
                path = os.path.abspath(t)
                hits = {r.id for r in records if r.path == path or r.path.startswith(path.rstrip(os.sep) + os.sep)}
            if not hits:
                unmatched.append(t)
            doomed |= hits
        if doomed:
            tx.remove(sorted(doomed))
            tx.commit()
    return len(doomed), unmatched


def open_index(index: str | os.PathLike[str]) -> IndexStore:
    """Open an index directory for reading (errors are the index layer's, made user-facing by the CLI)."""
    return IndexStore.open(index)


@dataclass(frozen=True)
class Hit:
    rank: int
    id: int
    score: float
    label: str | None
    path: str

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "id": self.id, "score": round(self.score, 6), "label": self.label, "path": self.path}


@dataclass(frozen=True)
class QueryResult:
    query: str
    results: list[Hit]

    def to_dict(self) -> dict[str, Any]:
        return {"query": self.query, "results": [h.to_dict() for h in self.results]}


@dataclass(frozen=True)
class Identification:
    """Per-class decision: the best class, its best score, the mean of its best few, and the margin
    over the runner-up class; known is score >= threshold."""

    query: str
    label: str | None
    known: bool
    score: float
    match: str | None
    mean_score: float
    margin: float
    runner_up: str | None
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "label": self.label if self.known else None,
            "known": self.known,
            "score": round(self.score, 6),
            "match": self.match,
            "best_class": self.label,
            "mean_score": round(self.mean_score, 6),
            "margin": round(self.margin, 6),
            "runner_up": self.runner_up,
            "threshold": round(self.threshold, 6),
        }


class Searcher:
    """An index opened for answering queries, with the encoder that built it loaded once."""

    def __init__(self, index: str | os.PathLike[str], model: str | None = None, device: str = "auto") -> None:
        from simsearch.device import resolve_device

        self.path = Path(index)
        self.store = IndexStore.open(self.path)
        try:
            self.model = _model_for_index(self.store.manifest, self.path, model, device)
        except BaseException:
            self.store.close()
            raise
        self.device = resolve_device(device)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def manifest(self) -> Manifest:
        return self.store.manifest

    def embed_paths(self, paths: list[str]) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """(M, D) embeddings of the readable images, and (path, reason) for the rest, in order."""
        from simsearch.embed import embed_arrays_with, read_and_decode

        pre = self.model.config.preprocess
        arrays, failed = [], []
        for p in paths:
            try:
                arrays.append(read_and_decode(p, pre.channels, pre.size, crop=pre.crop, ink=pre.ink)[0])
            except ImageError as err:
                failed.append((p, err.reason))
        if not arrays:
            return np.zeros((0, self.manifest.dim), np.float32), failed
        return embed_arrays_with(self.model.encoder, np.stack(arrays), self.device), failed

    def search_vectors(self, queries: np.ndarray, names: list[str], k: int) -> list[QueryResult]:
        scores, ids = self.store.vectors.search(queries, k)
        records = self.store.catalog.get(ids.ravel().tolist())
        out = []
        for name, row_s, row_i in zip(names, scores, ids, strict=True):
            hits = [
                Hit(rank=r + 1, id=int(i), score=float(s), label=records[int(i)].label, path=records[int(i)].path)
                for r, (s, i) in enumerate(zip(row_s, row_i, strict=True))
                if i >= 0 and int(i) in records
            ]
            out.append(QueryResult(name, hits))
        return out

    def threshold(self, override: float | None = None) -> float:
        """The acceptance threshold: given > calibrated for this index > the encoder's > default."""
        if override is not None:
            return override
        if self.manifest.threshold is not None:
            return float(self.manifest.threshold)
        t = self.model.meta.get("threshold")
        return float(t) if t is not None else DEFAULT_THRESHOLD

    def identify_vectors(
        self, queries: np.ndarray, names: list[str], threshold: float | None = None
    ) -> list[Identification]:
        labels = self.store.catalog.labels()
        if not any(lbl is not None for lbl in labels):
            raise DataError(f"{self.path}: the gallery has no classes (identify needs images in class subfolders)")
        thr = self.threshold(threshold)
        pool = min(len(self.store.vectors), _IDENTIFY_POOL)
        scores, ids = self.store.vectors.search(queries, pool)
        records = self.store.catalog.get(ids.ravel().tolist())
        out = []
        for name, row_s, row_i in zip(names, scores, ids, strict=True):
            per_class: dict[str, list[tuple[float, str]]] = defaultdict(list)
            for s, i in zip(row_s, row_i, strict=True):
                rec = records.get(int(i))
                if rec is not None and rec.label is not None:
                    per_class[rec.label].append((float(s), rec.path))
            if not per_class:
                out.append(Identification(name, None, False, float("-inf"), None, float("-inf"), 0.0, None, thr))
                continue
            ranked = sorted(per_class.items(), key=lambda kv: kv[1][0][0], reverse=True)
            best_label, best = ranked[0]
            second = ranked[1][1][0][0] if len(ranked) > 1 else -1.0
            mean = float(np.mean([s for s, _ in best[:_CLASS_TOP]]))
            out.append(
                Identification(
                    query=name,
                    label=best_label,
                    known=best[0][0] >= thr,
                    score=best[0][0],
                    match=best[0][1],
                    mean_score=mean,
                    margin=best[0][0] - second,
                    runner_up=ranked[1][0] if len(ranked) > 1 else None,
                    threshold=thr,
                )
            )
        return out


def expand_queries(paths: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Query arguments (files or folders) -> (image paths, (path, reason) for unusable folders)."""
    scan = collect_images(paths)
    return [str(f.path) for f in scan.files], [(s.path, s.reason) for s in scan.skipped]
