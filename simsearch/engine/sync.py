"""Build, sync, add to and remove from an index: the files on one side, the catalog and vectors on the other."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from index.catalog import Record
from index.store import IndexStore, Transaction
from simsearch.engine.calibrate import content_key, gallery_calibration
from simsearch.engine.compat import encoder_record, model_for_index
from simsearch.errors import DataError, ImageError, SimSearchError
from simsearch.images import Skipped, collect_images, gallery_path, scan_folder

if TYPE_CHECKING:
    from simsearch.embed import Embedded, Embedder

__all__ = [
    "BuildReport",
    "Embedding",
    "LocalEmbedding",
    "StrictModeError",
    "add_files",
    "build_index",
    "index_info",
    "open_index",
    "remove_entries",
]


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
    outside: int = 0  # entries from outside the synced folder (index add), kept as they are
    skipped: list[Skipped] = field(default_factory=list)
    elapsed_s: float = 0.0
    created: bool = False
    warnings: list[str] = field(default_factory=list)  # what the build noticed that the user may not want

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
            "outside": self.outside,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "elapsed_s": round(self.elapsed_s, 3),
            "created": self.created,
            "warnings": self.warnings,
        }


def commit_measured(tx: Transaction, embedder: Any = None, progress: bool = False, **changes: Any) -> Any:
    """Commit with the gallery measured on itself (its own open-set curve at its new size); a curve
    `calibrate` fitted on another gallery size is marked stale, and no longer used. `embedder`: the index's
    encoder where it is at hand, for a copies encoder's gallery to probe itself with edited copies of its
    pictures (engine.calibrate.edited_self_probes); without it a gallery goes without them."""
    own = gallery_calibration(tx.vectors, tx.catalog, embedder, progress)
    changes["gallery_calibration"] = own
    cal = tx.base.calibration
    if isinstance(cal, dict) and "curve" in cal and not cal.get("stale"):
        if "gallery_key" in cal:  # measured on this content: any other ids or labels make it stale
            changed = cal["gallery_key"] != content_key(tx.catalog)
        else:  # recorded before content keys: judged by its counts, as then
            changed = (own.get("images"), own.get("classes")) != (cal.get("images"), cal.get("classes"))
        if changed:
            changes["calibration"] = dict(cal, stale=True)
    return tx.commit(**changes)


def encoder_fit_warnings(model: Any, files: list[Path], sample: int = 24) -> list[str]:
    """Why this encoder may be the wrong one for these pictures: an encoder for one-channel drawings
    (characters, signatures) given a folder that is mostly colour photos, or an encoder of faces
    given pictures most of which show no face. Looks at up to `sample` files spread over the folder."""
    from simsearch.images import colourfulness

    pre = model.config.preprocess
    if not files or (pre.channels != 1 and not pre.face):
        return []
    picks = [files[int(i)] for i in np.linspace(0, len(files) - 1, min(sample, len(files))).round()]
    if pre.face:
        found = [f for f in (_shows_face(p, pre) for p in picks) if f is not None]
        faceless = found.count(False)
        if found and faceless >= 0.5 * len(found):
            return [
                f"{faceless} of {len(found)} sampled pictures show no face, and encoder {model.source!r} identifies "
                "faces (pictures without one are skipped); for photos of other things use --model photos"
            ]
        return []
    scores = [c for c in (colourfulness(p) for p in picks) if c is not None]
    colourful = sum(c > COLOURFUL for c in scores)
    if scores and colourful >= 0.5 * len(scores):
        return [
            f"{colourful} of {len(scores)} sampled pictures are colour photos, and encoder {model.source!r} is for "
            "one-channel drawings (it sees them in grey, as strokes); for photos use --model photos "
            "(`simsearch models` lists the encoders)"
        ]
    return []


def _shows_face(path: Path, pre: Any) -> bool | None:
    """Whether the face finder finds a face in the picture (None: it cannot be read)."""
    from simsearch.faces import NO_FACE
    from simsearch.images import load_array

    try:
        load_array(path, pre)
    except ImageError as err:
        return False if err.reason == NO_FACE else None
    return True


# mean chroma (max - min of R, G, B, in grey levels) above which a picture counts as a colour photo
COLOURFUL = 16.0


def _hash_file(path: Path) -> str:
    """sha256 of a regular file's bytes ("" for anything else: a pipe or device is never read)."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Embedding(Protocol):
    """Where a build's files are embedded: here (LocalEmbedding, the default) or on a cluster
    (engine.distributed.ClusterEmbedding). The build decides what to embed and writes the index; this
    embeds it and hands the vectors to the transaction."""

    loaded: Any  # the encoder's checkpoint: its record, its width, what it is for

    def check(self, files: int) -> None:
        """Refuse a new index of this many files before anything is written (DataError)."""
        ...

    def stream(self, paths: list[str], on_error: Any) -> Iterable[Embedded]:
        """Batches of the files' embeddings (positions into `paths`); a file that cannot be read goes to
        on_error(position, ImageError) instead."""
        ...

    def add(self, tx: Transaction, vectors: np.ndarray, records: list[Record]) -> None:
        """One batch into the transaction."""
        ...

    def finish(self, tx: Transaction) -> None:
        """After the last batch, before the commit."""
        ...


class LocalEmbedding:
    """Embedding here, on this machine's GPU or CPU, batch by batch into the transaction."""

    def __init__(self, embedder: Embedder, batch_size: int = 256, progress: bool = True) -> None:
        self.embedder, self.batch_size, self.progress = embedder, batch_size, progress
        self.loaded = embedder.loaded

    def check(self, files: int) -> None:
        pass

    def stream(self, paths: list[str], on_error: Any) -> Iterable[Embedded]:
        return self.embedder.stream(paths, batch_size=self.batch_size, on_error=on_error, progress=self.progress)

    def add(self, tx: Transaction, vectors: np.ndarray, records: list[Record]) -> None:
        tx.add(vectors, records)

    def finish(self, tx: Transaction) -> None:
        pass


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
    embedding: Embedding | None = None,
) -> BuildReport:
    """Embed every image under `folder` into the index at `index`, or sync an existing index.

    `kind` is 'auto' (exact below 50,000 images, HNSW above), 'flat', 'hnsw' or 'ivfpq'; on an
    existing index it converts the index at commit (None keeps what the index has).

    Sync mirrors `folder`: unchanged files (same path, size, mtime) are kept, changed ones
    re-embedded, files whose content hash matches a vanished entry are re-pathed without embedding,
    vanished files are removed, and every image under the folder is indexed (an `index remove` of a
    file that is still there lasts until the next sync). Entries outside the folder (from `index add`)
    are kept and counted in `outside`. The index is written as one atomic commit at the end; an interruption leaves the
    previous index as it was. With strict=True any unreadable file aborts before writing.

    `embedding`: where the files are embedded (default: here, with the encoder `model` on `device`); one
    given (a cluster's) builds new indexes only, its own encoder already loaded.
    """
    from simsearch.embed import Embedder

    start = time.monotonic()
    # one spelling of the gallery: through a link or a relative path, the same folder gives the same entries
    root, index_path = Path(os.path.realpath(folder)), Path(index)
    scan = scan_folder(root)
    report = BuildReport(index=str(index_path), skipped=list(scan.skipped))
    existing = IndexStore.exists(index_path) and not overwrite
    if existing and embedding is not None:
        raise DataError(
            f"{index_path}: an index is already there; a distributed build makes a new one (give --overwrite), "
            "and a sync (`index build` without --cluster) embeds only what changed"
        )
    if existing:
        with IndexStore.open(index_path) as store:
            seen = store.manifest
            embedding = LocalEmbedding(model_for_index(seen, index_path, model, device), batch_size, progress)
        tx = Transaction.begin(index_path, expect=seen)  # refused if replaced since (another encoder)
        if kind is not None:
            tx.request_kind(kind)
    else:
        embedding = embedding or LocalEmbedding(Embedder.load(model, device), batch_size, progress)
        embedding.check(len(scan.files))
        tx = Transaction.create(
            index_path,
            embedding.loaded.config.embedding_dim,
            encoder_record(embedding.loaded),
            kind=kind or "auto",
            replace_existing=overwrite,
        )
        report.created = True
        report.warnings += encoder_fit_warnings(embedding.loaded, [f.path for f in scan.files])
    with tx:
        # entries keyed by the one spelling of their path (an index written before paths were resolved may
        # hold another spelling of the same file: it is re-pathed below, not taken for a new file)
        by_path = _by_real_path(tx.catalog.all())
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
            if st.st_size == rec.size and st.st_mtime == rec.mtime and rec.label == f.label and rec.path == path:
                report.unchanged += 1
            elif st.st_size == rec.size and st.st_mtime == rec.mtime:
                tx.catalog.repath(rec.id, path, f.label, rec.mtime)  # folder renamed: same file, new label
                report.moved += 1
            else:
                changed_ids.append(rec.id)
                changed_paths.add(path)
                to_embed.append((path, f.label))
        # vanished entries by content; several may share bytes, and each is moved or removed on its own
        vanished: dict[str, list[Record]] = {}
        inside = str(root).rstrip(os.sep) + os.sep
        # the folder this index was last synced from, when the gallery moved (mv g gm; index build gm): its
        # entries whose files are gone are this sync's to re-path (same bytes) or drop, not "outside" for ever
        before = tx.base.gallery
        moved_from = before.rstrip(os.sep) + os.sep if before and before != str(root) else None
        for path, rec in by_path.items():
            if path in wanted:
                continue
            gone_from_old = moved_from is not None and rec.path.startswith(moved_from) and not os.path.lexists(rec.path)
            if not path.startswith(inside) and not gone_from_old:
                report.outside += 1  # brought by `index add` from elsewhere: not this folder's to drop
                continue
            vanished.setdefault(rec.sha256, []).append(rec)
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
                    same = vanished.get(digest)
                    old = same.pop() if same else None
                    if old is not None:
                        tx.catalog.repath(old.id, path, label, os.stat(path).st_mtime)
                        report.moved += 1
                        continue
                still_new.append((path, label))
            to_embed = still_new
        removed_ids = [rec.id for recs in vanished.values() for rec in recs]
        report.removed = len(removed_ids)
        if moved_from is not None:
            left = sum(1 for recs in vanished.values() for rec in recs if rec.path.startswith(moved_from))
            if left:
                report.warnings.append(
                    f"{left} entries of the previous gallery {before} whose files are gone matched no file here "
                    "by content and were removed"
                )
        tx.remove(removed_ids + changed_ids)

        _embed_into(tx, embedding, to_embed, report, strict, changed_paths)
        if report.created and not len(tx.vectors) and not report.skipped:
            raise DataError(f"{root}: no image files found (looked for .jpg, .png, .gif, .bmp, .tif, .webp ...)")
        unchanged = not (report.created or report.added or report.updated or report.moved or report.removed)
        measured = tx.base.gallery_calibration is not None  # indexes made before self-calibration get it now
        gallery = str(root)
        same_kind = tx.base.requested_kind == (kind or tx.base.requested_kind)
        if unchanged and measured and same_kind and tx.base.gallery == gallery:
            report.total = tx.base.count  # nothing to write: the current generation stays
        else:
            probe_with = getattr(embedding, "embedder", None)  # a cluster's encoder is not here: none
            report.total = commit_measured(tx, probe_with, progress, gallery=gallery).count
    report.elapsed_s = time.monotonic() - start
    return report


def _by_real_path(records: list[Record]) -> dict[str, Record]:
    """Records by gallery_path of their path (each folder resolved once)."""
    real: dict[str, str] = {}
    out = {}
    for r in records:
        folder, name = os.path.split(r.path)
        if folder not in real:
            real[folder] = os.path.realpath(folder)
        out[os.path.join(real[folder], name)] = r
    return out


def _embed_into(
    tx: Transaction,
    embedding: Embedding,
    items: list[tuple[str, str | None]],
    report: BuildReport,
    strict: bool,
    changed_paths: set[str],
) -> None:
    """Embed (path, label) items into the transaction, counting added/updated and skips in `report`."""

    def on_error(pos: int, err: ImageError) -> None:
        report.skipped.append(Skipped(err.path, err.reason))

    paths = [p for p, _ in items]
    for batch in embedding.stream(paths, on_error):
        if strict and report.skipped:
            break
        ids = tx.new_ids(len(batch.positions))
        records = [
            Record(int(i), items[pos][0], items[pos][1], fact.size, fact.mtime, fact.sha256)
            for i, pos, fact in zip(ids, batch.positions, batch.facts, strict=True)
        ]
        embedding.add(tx, batch.vectors, records)
        updated = sum(1 for r in records if r.path in changed_paths)
        report.updated += updated
        report.added += len(records) - updated
    if strict and report.skipped:
        raise StrictModeError(report.skipped)
    embedding.finish(tx)


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
    start = time.monotonic()
    index_path = Path(index)
    with IndexStore.open(index_path) as store:
        seen = store.manifest
        embedder = model_for_index(seen, index_path, None, device)
    scan = collect_images(files)
    report = BuildReport(index=str(index_path), skipped=list(scan.skipped))
    with Transaction.begin(index_path, expect=seen) as tx:
        by_path = _by_real_path(tx.catalog.all())
        items: list[tuple[str, str | None]] = []
        changed: set[str] = set()
        named: set[str] = set()
        for f in scan.files:
            path = gallery_path(f.path)
            if path in named:
                continue  # the same file named twice (a.png ./a.png, or through a link to its folder)
            named.add(path)
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
        _embed_into(tx, LocalEmbedding(embedder, batch_size, progress), items, report, strict, changed)
        report.total = commit_measured(tx, embedder, progress).count
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
            if not hits and t.strip():  # "" or blanks name no file: never "everything under the current folder"
                path = gallery_path(t)
                folder = os.path.realpath(t).rstrip(os.sep) + os.sep
                hits = {r.id for r in records if r.path == path or r.path.startswith(folder)}
            if not hits:
                unmatched.append(t)
            doomed |= hits
        if doomed:
            tx.remove(sorted(doomed))
            before = tx.base.gallery_calibration
            embedder = None
            if isinstance(before, dict) and "edited" in before:  # it probed itself with edited copies: again
                try:
                    embedder = model_for_index(tx.base, Path(index), None, "auto")
                except SimSearchError:
                    pass  # the encoder cannot load here: the gallery goes without them (as a cluster build does)
            commit_measured(tx, embedder)
    return len(doomed), unmatched


def open_index(index: str | os.PathLike[str]) -> IndexStore:
    """Open an index directory for reading (errors are the index layer's, made user-facing by the CLI)."""
    return IndexStore.open(index)


def check_index(index: str | os.PathLike[str]) -> Any:
    """Whether catalog, vectors and manifest agree: a report with `ok`, `count` and `problems`."""
    with IndexStore.open(index) as store:
        return store.check()


def index_info(index: str | os.PathLike[str]) -> dict[str, Any]:
    """What `simsearch index info` shows: counts, classes and their sizes, encoder, kind, size on disk,
    and the identification threshold in force (with its source and the FPIR/FNIR it stands for) and
    each calibration the index holds. Reads only: the encoder is not loaded (its threshold is read
    from its model.json when the index has no curve of its own)."""
    from simsearch.engine.decision import resolve_threshold
    from simsearch.model_files import recorded_meta

    with IndexStore.open(index) as store:
        m = store.manifest
        labels = store.catalog.labels()
        size = store.size_on_disk()
    try:
        named = sum(1 for k in labels if k is not None)
        decision = resolve_threshold(m, recorded_meta(m.encoder.get("source")), classes=named)
        in_force: dict[str, Any] = decision.to_dict()
    except SimSearchError as err:
        in_force = {"threshold": None, "threshold_source": None, "error": str(err)}
    classes = {k: v for k, v in sorted(labels.items(), key=lambda kv: (-kv[1], str(kv[0]))) if k is not None}
    return {
        "index": str(index),
        "gallery": m.gallery,
        "count": m.count,
        "classes": len(classes),
        "class_sizes": classes,
        "unlabelled": labels.get(None, 0),
        "dim": m.dim,
        "metric": m.metric.value,
        "kind": m.kind.value,
        "encoder": m.encoder.get("source"),
        "fingerprint": m.encoder.get("fingerprint"),
        **in_force,
        "calibrations": {
            name: _calibration_summary(rec)
            for name, rec in (("calibrated", m.calibration), ("gallery", m.gallery_calibration))
            if isinstance(rec, dict)
        },
        "size_bytes": size,
        "generation": m.generation,
        "updated": m.updated,
    }


def _calibration_summary(rec: dict[str, Any]) -> dict[str, Any]:
    """A stored calibration record without its score lists."""
    keys = ("measured_on", "images", "classes", "target", "pair_threshold", "stale", "why", "at", "data", "far")
    out = {k: rec[k] for k in keys if k in rec}
    edited = rec.get("edited")
    if isinstance(edited, dict) and isinstance(edited.get("scores"), list):  # its own edited copies: how many
        out["edited_copies"] = {
            "copies": len(edited["scores"]),
            "of_pictures": edited.get("pictures"),
            "edits": edited.get("edits"),
        }
    return out
