"""Answering queries over an index: nearest gallery images, per-class open-set identification, thresholds."""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from index.catalog import Record
from index.errors import IndexStoreError
from index.store import IndexStore, Manifest
from simsearch.engine.compat import model_for_index
from simsearch.engine.decision import (
    DEFAULT_THRESHOLD,
    OperatingPoint,
    Threshold,
    resolve_pair_threshold,
    resolve_threshold,
)
from simsearch.errors import ConfigError, DataError, literal
from simsearch.images import collect_images
from simsearch.measures.structure import STRUCTURE_POOL, StructurePart

__all__ = ["DEFAULT_THRESHOLD", "Hit", "Identification", "QueryResult", "Searcher", "expand_queries"]

# How many neighbours identify looks at to score classes, and how many best matches a class's mean uses.
_IDENTIFY_POOL = 100
_CLASS_TOP = 3
T = TypeVar("T")


@dataclass(frozen=True)
class Hit:
    rank: int
    id: int
    score: float
    label: str | None
    path: str
    same_picture: bool = False  # put first by its DCT part: this picture, faded, pixelated (measures.structure)

    def to_dict(self) -> dict[str, Any]:
        d = {"rank": self.rank, "id": self.id, "score": round(self.score, 6), "label": self.label, "path": self.path}
        return {**d, "same_picture": True} if self.same_picture else d


@dataclass(frozen=True)
class QueryResult:
    """The hits of one query, best first: ranks offset+1 .. offset+len(results) of `total` candidates
    (the gallery, or the part of it the filters allow)."""

    query: str
    results: list[Hit]
    offset: int = 0
    total: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "results": [h.to_dict() for h in self.results],
            "offset": self.offset,
            "total": self.total,
        }


def _score(x: float) -> float | None:
    return round(x, 6) if np.isfinite(x) else None


@dataclass(frozen=True)
class Identification:
    """Per-class decision: the best class, its best score, the mean of its best few, and the margin
    over the runner-up class; known is score >= the threshold in force (`decision`: its value, source,
    operating point and the FPIR/FNIR it stands for). Scores are None when no labelled image is near."""

    query: str
    label: str | None
    known: bool
    score: float
    match: str | None
    mean_score: float
    margin: float
    runner_up: str | None
    decision: Threshold

    @property
    def threshold(self) -> float:
        return self.decision.value

    @property
    def runner_up_score(self) -> float | None:
        return self.score - self.margin if self.runner_up is not None else None

    @property
    def status(self) -> tuple[str, str | None]:
        """("identified" | "uncertain" | "unknown", why it is uncertain): see Threshold.status."""
        return self.decision.status(self.score, self.runner_up_score)

    def to_dict(self) -> dict[str, Any]:
        status, why = self.status
        return {
            "query": self.query,
            "label": self.label if self.known else None,
            "known": self.known,
            "status": status,
            "uncertain_because": why,
            "score": _score(self.score),
            "match": self.match,
            "best_class": self.label,
            "mean_score": _score(self.mean_score),
            "margin": _score(self.margin),
            "runner_up": self.runner_up,
            **self.decision.to_dict(),
        }


_DATED = re.compile(r"(19|20)\d\d([-_. ]?\d\d){0,2}|\d{4}[-_]\d\d[-_]\d\d")


class Searcher:
    """An index opened for answering queries, with the encoder that built it loaded once.

    `query` and `identify` take image paths, PIL images or decoded images as numpy arrays
    ((H, W) or (H, W, 3) uint8), one or a list; `*_vectors` take embeddings; `*_paths` go on past
    unreadable files and report them, as the command line does.
    """

    def __init__(self, index: str | os.PathLike[str], model: str | None = None, device: str = "auto") -> None:
        self.path = Path(index)
        self._model_arg = model
        self._seen = self._manifest_key()  # before opening: a commit in between is caught by the next refresh
        self.store = IndexStore.open(self.path)
        try:
            self.embedder = model_for_index(self.store.manifest, self.path, model, device)
        except BaseException:
            self.store.close()
            raise
        self.model = self.embedder.loaded
        self.device = self.embedder.device
        self._decisions: dict[OperatingPoint, Threshold] = {}

    def close(self) -> None:
        self.store.close()

    def _manifest_key(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path / "manifest.json")
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def refresh(self) -> bool:
        """Follow the index to its newest commit (a sync, add or remove by another process since this one
        opened it): the new generation is opened whole before it replaces the one in use, and an index that
        cannot be opened right now leaves the searcher answering from what it has. One stat() when nothing
        changed. Not safe to call while another thread queries this searcher (the service calls it under
        its lock). Returns whether it moved to another generation."""
        key = self._manifest_key()
        if key is None or key == self._seen:
            return False
        try:
            new = IndexStore.open(self.path)
        except IndexStoreError:
            return False
        if new.manifest.generation == self.store.manifest.generation and new.manifest.created == self.manifest.created:
            new.close()
            self._seen = key
            return False
        if new.manifest.encoder.get("fingerprint") != self.manifest.encoder.get("fingerprint"):
            try:  # rebuilt with another encoder: queries must be embedded by the new one
                embedder = model_for_index(new.manifest, self.path, self._model_arg, str(self.device))
            except Exception:
                new.close()
                return False
            self.embedder, self.model = embedder, embedder.loaded
        old, self.store = self.store, new
        self._decisions.clear()
        self._seen = key
        old.close()
        return True

    def __enter__(self) -> Searcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def manifest(self) -> Manifest:
        return self.store.manifest

    def classes(self) -> set[str]:
        """The gallery's class names (first-level subfolders)."""
        return {c for c in self.store.catalog.labels() if c is not None}

    def layout_warning(self) -> str | None:
        """One line when the gallery's first-level folders look like dates rather than classes (identify would
        answer "taken in 2019"), else None."""
        named = [c for c in self.classes()]
        dated = [c for c in named if _DATED.fullmatch(c)]
        if named and len(dated) >= max(2, 0.8 * len(named)):
            return (
                f"the gallery's classes look like dates ({', '.join(sorted(dated)[:3])}, ...): identify answers with "
                "a first-level folder's name, so put one folder per person, object or character there instead"
            )
        return None

    def class_sizes(self) -> dict[str | None, int]:
        """Images per class (None: images outside any class folder)."""
        return self.store.catalog.labels()

    @property
    def count(self) -> int:
        """Images in the index as opened (after the last refresh)."""
        return len(self.store.vectors)

    def record(self, image_id: int) -> Record | None:
        """The catalog's record of one gallery image (path, label, size, mtime, sha256), or None."""
        return self.store.catalog.get([int(image_id)]).get(int(image_id))

    def embed_paths(self, paths: Sequence[str]) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """(M, D) embeddings of the readable images, and (path, reason) for the rest, in order."""
        return self.embedder.embed_paths(paths)

    def embed(self, images: Any) -> tuple[np.ndarray, list[str]]:
        """(N, D) embeddings of query images and a name for each (the path, or "<image i>").
        Raises ImageError for an unreadable file."""
        from PIL import Image

        from simsearch.errors import ImageError

        items = list(images) if isinstance(images, (list, tuple)) else [images]
        names, rows = [], []
        for i, item in enumerate(items):
            if isinstance(item, (str, os.PathLike)):
                vecs, failed = self.embedder.embed_paths([item])
                if failed:
                    raise ImageError(*failed[0])
                names.append(str(item))
            else:
                pic = Image.fromarray(np.asarray(item)) if isinstance(item, np.ndarray) else item
                vecs = self.embedder.embed_images([pic])
                names.append(f"<image {i}>")
            rows.append(vecs)
        return (np.concatenate(rows) if rows else np.zeros((0, self.manifest.dim), np.float32)), names

    def query(self, images: Any, k: int = 5, **filters: Any) -> list[QueryResult]:
        """The `k` nearest gallery images to each query image, best first (`offset`, `labels`, `under`:
        see search_vectors)."""
        vecs, names = self.embed(images)
        return self.search_vectors(vecs, names, k, **filters)

    def query_text(self, texts: str | Sequence[str], k: int = 5, **filters: Any) -> list[QueryResult]:
        """The `k` gallery images nearest to each text ("a red dress"), best first, for an index built
        with a CLIP-family encoder (filters: see search_vectors). Raises ModelError for an image-only
        encoder, ValueError for an empty text."""
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items or any(not t.strip() for t in items):
            raise ConfigError("a text query ({fields}) needs some words", ["texts"])
        vecs = self.embedder.embed_text(items)
        return self.search_vectors(vecs, [f"text: {t}" for t in items], k, images=False, **filters)

    def identify(
        self, images: Any, threshold: float | None = None, point: OperatingPoint | None = None
    ) -> list[Identification]:
        """Which gallery class each query image shows, or unknown below the threshold (`threshold`, or
        the one `point` asks for: a target FPIR, FNIR or closed-set; default: see decision())."""
        vecs, names = self.embed(images)
        return self.identify_vectors(vecs, names, threshold, point)

    def query_paths(
        self, paths: Sequence[str], k: int = 5, every_face: bool = False, **filters: Any
    ) -> tuple[list[QueryResult], list[tuple[str, str]]]:
        """query() over files, going on past unreadable ones: (answers, (path, reason) for the others).
        With `every_face` (an encoder that frames faces) each face of a photo is a query of its own."""
        return self._over_paths(paths, lambda v, n: self.search_vectors(v, n, k, **filters), every_face)

    def identify_paths(
        self,
        paths: Sequence[str],
        threshold: float | None = None,
        point: OperatingPoint | None = None,
        every_face: bool = False,
    ) -> tuple[list[Identification], list[tuple[str, str]]]:
        """identify() over files, going on past unreadable ones: (answers, (path, reason) for the others).
        With `every_face` (an encoder that frames faces) each face of a photo is identified."""
        return self._over_paths(paths, lambda v, n: self.identify_vectors(v, n, threshold, point), every_face)

    def _over_paths(
        self, paths: Sequence[str], answer: Callable[[np.ndarray, list[str]], list[T]], every_face: bool = False
    ) -> tuple[list[T], list[tuple[str, str]]]:
        if every_face:
            vecs, names, failed = self.embedder.embed_faces(paths)
            return answer(vecs, names), failed
        vecs, failed = self.embedder.embed_paths(paths)
        bad = {p for p, _ in failed}
        return answer(vecs, [str(p) for p in paths if str(p) not in bad]), failed

    def search_vectors(
        self,
        queries: np.ndarray,
        names: list[str],
        k: int,
        offset: int = 0,
        labels: Sequence[str] | None = None,
        under: str | os.PathLike[str] | None = None,
        images: bool = True,
    ) -> list[QueryResult]:
        """Nearest gallery images to (N, D) unit query rows, one QueryResult per name: ranks offset+1 ..
        offset+k, among the images of `labels` (class names) under the folder `under` when given. For an
        encoder with a DCT part and image queries (`images`), the same picture faded or pixelated comes
        first among the cosine's best 100 (measures.structure; its hits say same_picture)."""
        if offset < 0:
            raise ConfigError("{fields} must be 0 or more", ["offset"])
        allow = self.allowed(labels, under)
        total = len(self.store.vectors) if allow is None else len(allow)
        part = StructurePart.of(self.model.config) if images else None
        wanted = offset + k if part is None else max(offset + k, STRUCTURE_POOL)
        scores, ids = self.store.vectors.search(queries, wanted, allow=allow)
        same = np.zeros(ids.shape, dtype=bool)
        if part is not None:
            self._same_picture_first(part, queries, scores, ids, same)
        scores, ids, same = (a[:, offset : offset + k] for a in (scores, ids, same))
        records = self.store.catalog.get(ids.ravel().tolist())
        out = []
        for name, row_s, row_i, row_m in zip(names, scores, ids, same, strict=True):
            hits = [
                Hit(
                    rank=offset + r + 1,
                    id=int(i),
                    score=float(s),
                    label=records[int(i)].label,
                    path=records[int(i)].path,
                    same_picture=bool(m),
                )
                for r, (s, i, m) in enumerate(zip(row_s, row_i, row_m, strict=True))
                if i >= 0 and int(i) in records
            ]
            out.append(QueryResult(name, hits, offset, total))
        return out

    def _same_picture_first(
        self, part: StructurePart, queries: np.ndarray, scores: np.ndarray, ids: np.ndarray, same: np.ndarray
    ) -> None:
        """Search's second stage, in place: in each row's first STRUCTURE_POOL hits, those whose stored DCT part
        matches the query's come first (measures.structure), marked in `same`. 64 queries' pools at a time."""
        for lo in range(0, len(ids), 64):
            rows = slice(lo, lo + 64)
            pool = ids[rows, :STRUCTURE_POOL]
            stored = np.zeros((*pool.shape, part.dim), np.float32)
            stored[pool >= 0] = self.store.vectors.vectors_of(pool[pool >= 0])[:, -part.dim :]
            sure = part.sure(queries[rows], stored) & (pool >= 0)
            order, width = part.order(sure), pool.shape[1]
            for arr, first in ((scores, scores[rows, :width]), (ids, pool), (same, sure)):
                arr[rows, :width] = np.take_along_axis(first, order, axis=1)

    def allowed(
        self, labels: Sequence[str] | None = None, under: str | os.PathLike[str] | None = None
    ) -> np.ndarray | None:
        """Ids of the images of `labels` under the folder `under` (None: no filter). Raises ValueError for
        a class the gallery does not have."""
        if labels is None and under is None:
            return None
        classes = self.classes()
        missing = sorted(set(labels or ()) - classes)
        if missing:
            known = ", ".join(sorted(classes)[:10]) + (" ..." if len(classes) > 10 else "")
            raise ConfigError(
                f"{{fields}}: no class {literal(', '.join(map(repr, missing)))} in this gallery "
                f"(classes: {literal(known or 'none')})",
                ["labels"],
            )
        prefix = None
        if under is not None:
            prefix = os.path.abspath(os.fspath(under)).rstrip(os.sep) + os.sep
        return np.asarray(
            self.store.catalog.ids_where(list(labels) if labels is not None else None, prefix), dtype=np.int64
        )

    @property
    def gallery_root(self) -> str | None:
        """The folder the gallery was built from (recorded at build/sync; for an older index, the folder
        all its images share), or None for an empty index."""
        if self.manifest.gallery is not None:
            return self.manifest.gallery
        if not hasattr(self, "_common_root"):
            paths = self.store.catalog.paths()
            common = os.path.commonpath(paths) if paths else None
            self._common_root = os.path.dirname(common) if common is not None and len(paths) == 1 else common
        return self._common_root

    def relative(self, path: str) -> str:
        """A gallery path as the service shows it: relative to the gallery folder, or only the file name
        for an image brought in from elsewhere (no server path is given away)."""
        root = self.gallery_root
        if root is not None and path.startswith(root.rstrip(os.sep) + os.sep):
            return os.path.relpath(path, root)
        return os.path.basename(path)

    def decision(self, threshold: float | None = None, point: OperatingPoint | None = None) -> Threshold:
        """The threshold identify uses: explicit > calibrated on labelled probes > the gallery's own
        (measured at its last build/sync) > the encoder's > 0.5, for the operating point asked (default:
        the calibrated target, else FPIR 1%). Raises DataError when a target cannot be fitted here."""
        if threshold is not None:
            point = OperatingPoint(threshold=threshold)
        key = point or OperatingPoint()
        cached = self._decisions.get(key)
        if cached is None:
            cached = self._decisions[key] = resolve_threshold(
                self.manifest, self.model.meta, key, classes=len(self.classes())
            )
        return cached

    def threshold(self, override: float | None = None) -> float:
        """The value of decision(): the score at or above which identify accepts the nearest class."""
        return self.decision(override).value

    def pair_threshold(self, override: float | None = None) -> tuple[float, str]:
        """(threshold, source) for 1:1 verification on this index: see decision.resolve_pair_threshold."""
        return resolve_pair_threshold(self.manifest, self.model.meta, override)

    def identify_vectors(
        self,
        queries: np.ndarray,
        names: list[str],
        threshold: float | None = None,
        point: OperatingPoint | None = None,
    ) -> list[Identification]:
        """Per-class decisions for (N, D) unit query rows, one Identification per name."""
        labels = self.store.catalog.labels()
        if not any(lbl is not None for lbl in labels):
            raise DataError(
                f"{self.path}: the gallery's images are not in class folders, and identify names a picture's class: "
                "put one folder per class (a person, a character, a product) directly under the gallery folder, "
                "its pictures inside (one is enough), then sync; to find similar images, use `simsearch query`"
            )
        thr = self.decision(threshold, point)
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
                    known=thr.accepts(best[0][0]),
                    score=best[0][0],
                    match=best[0][1],
                    mean_score=mean,
                    margin=best[0][0] - second,
                    runner_up=ranked[1][0] if len(ranked) > 1 else None,
                    decision=thr,
                )
            )
        return out


def expand_queries(paths: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Query arguments (files or folders) -> (image paths, (path, reason) for unusable folders)."""
    scan = collect_images(list(paths))
    return [str(f.path) for f in scan.files], [(s.path, s.reason) for s in scan.skipped]
