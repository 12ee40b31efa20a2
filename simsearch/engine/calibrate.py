"""Calibration of the identification decision against the index's own gallery, at its real size: FPIR (probes
of absent classes accepted) and FNIR (known probes not given their class) measured on labelled probes by
`calibrate`, and measured by the gallery on itself at every build, sync, add and remove."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from index.catalog import Catalog
from index.store import Transaction
from index.vector_index import VectorIndex
from simsearch.engine.decision import DEFAULT_FPIR, OperatingPoint, Threshold, resolve_threshold
from simsearch.engine.search import Searcher
from simsearch.errors import DataError, ImageError
from simsearch.images import Skipped, decode_image, scan_folder
from simsearch.measures.metrics import threshold_at_far
from simsearch.measures.openset import (
    MIN_UNKNOWN,
    OpenSetCurve,
    gallery_self_scores,
    open_set_rates,
    probe_scores,
)
from simsearch.measures.prior import OpenSetPrior, probes_itself_with_copies
from simsearch.pictures import roc_picture

if TYPE_CHECKING:
    from simsearch.embed import Embedder

__all__ = ["Calibration", "calibrate", "edited_self_probes", "gallery_calibration", "pair_threshold"]

# The gallery measures itself with at most this many of its images as probes, and at most this many pairs.
_SELF_PROBES = 2000
_PAIRS = 200_000
_PAIR_FAR = 0.01
# A gallery of a copies encoder embeds at most this many edited copies of its own pictures to probe itself with.
EDITED_PROBES = 1000
_COPY_BATCH = 256  # edited copies embedded at a time (a 12-megapixel gallery's copies are kept at 4x input side)
# The rates `calibrate` reports a row for.
_REPORT_FPIRS = (0.001, 0.01, 0.05, 0.1, 0.2)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pair_threshold(
    vectors: np.ndarray, labels: np.ndarray | None, far: float = _PAIR_FAR, seed: int = 0
) -> float | None:
    """The threshold accepting a share `far` of random pairs of different classes (of any two images when
    `labels` is None); None with too few pairs to say (fewer than 10 beyond it)."""
    n = len(vectors)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    if n * (n - 1) // 2 <= _PAIRS:
        i, j = np.triu_indices(n, k=1)
    else:
        i, j = rng.integers(0, n, _PAIRS), rng.integers(0, n, _PAIRS)
        keep = i != j
        i, j = i[keep], j[keep]
    if labels is not None:
        keep = labels[i] != labels[j]
        i, j = i[keep], j[keep]
    if len(i) * far < 10:
        return None
    return threshold_at_far(np.einsum("ij,ij->i", vectors[i], vectors[j]), far)


@dataclass(frozen=True)
class _LabelledGallery:
    """The gallery's rows as identify sees them: (N, D) vectors of the labelled images, their classes as
    ints into `classes` (sorted names), their paths; `every` holds the vectors of all images, labelled or not."""

    vectors: np.ndarray
    labels: np.ndarray
    classes: list[str]
    paths: list[str]
    every: np.ndarray


def _labelled_gallery(vectors: VectorIndex, catalog: Catalog) -> _LabelledGallery:
    ids, vecs = vectors.vectors()
    records = catalog.get(ids.tolist())
    rows = [(p, records[int(i)]) for p, i in enumerate(ids) if int(i) in records and records[int(i)].label is not None]
    classes = sorted({r.label for _, r in rows if r.label is not None})
    index_of = {c: k for k, c in enumerate(classes)}
    return _LabelledGallery(
        vectors=vecs[[p for p, _ in rows]],
        labels=np.array([index_of[r.label] for _, r in rows if r.label is not None], dtype=np.int64),
        classes=classes,
        paths=[r.path for _, r in rows],
        every=vecs,
    )


def content_key(catalog: Catalog) -> str:
    """What a calibration was measured on, as a digest of the gallery's (id, label) rows: a replaced picture
    (a new id) or one moved to another class changes it even where the counts stay the same."""
    h = hashlib.sha256()
    for rec in catalog.all():
        h.update(f"{rec.id}\t{rec.label}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def edited_self_probes(
    vectors: np.ndarray,
    labels: np.ndarray,
    paths: list[str],
    embedder: Embedder,
    budget: int = EDITED_PROBES,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any] | None:
    """A copies encoder's gallery probing itself the way it is queried: edited copies of its own pictures
    (our 11 edit types in turn: edits.self_probe_copy), k of each of up to `budget` labelled pictures,
    k = budget / pictures (at most one of each edit type); each copy's best score against the
    gallery's other classes is an unknown best-score at (nearly) the gallery's size. Pictures are read again
    from their files (edited at up to 4x the encoder's input side); one that cannot be read is passed over.
    None when fewer than 5 copies could be scored (or the gallery has one class)."""
    from tqdm import tqdm

    from simsearch.edits import EDITS, self_probe_copies_each, self_probe_copy

    n = len(labels)
    if n < 2 or len(np.unique(labels)) < 2:
        return None
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(n, size=budget, replace=False)) if n > budget else np.arange(n)
    k = self_probe_copies_each(len(picks), budget)
    side = embedder.preprocess.size
    copies: list[Any] = []  # edited pictures not yet embedded: at most _COPY_BATCH + k held at once
    embedded: list[np.ndarray] = []
    owner: list[int] = []
    for j in tqdm(picks.tolist(), desc="edited copies", unit="img", disable=not progress):
        try:
            img = decode_image(paths[j], channels=3, min_side=side)
        except (ImageError, OSError):
            continue
        img.thumbnail((4 * side, 4 * side))
        copies.extend(self_probe_copy(img, j, e, seed) for e in range(k))
        owner.extend([j] * k)
        if len(copies) >= _COPY_BATCH:
            embedded.append(embedder.embed_images(copies))
            copies = []
    if copies:
        embedded.append(embedder.embed_images(copies))
    if len(owner) < 5:
        return None
    scored = probe_scores(np.concatenate(embedded), labels[np.asarray(owner)], vectors, labels)
    return {
        "scores": [round(float(x), 6) for x in np.sort(scored.unknown)],
        "copies_each": k,
        "pictures": len(set(owner)),
        "edits": f"our {len(EDITS)} edit types (simsearch.edits.EDITS) in turn",
    }


def gallery_calibration(
    vectors: VectorIndex, catalog: Catalog, embedder: Embedder | None = None, progress: bool = False
) -> dict[str, Any]:
    """The gallery measured on itself: each labelled image (up to 2,000, seeded) probes the rest with
    itself left out; against the other classes it is an unknown probe at the gallery's size, and where its
    class has other images also a known one. With fewer than 5 labelled images in 2 classes the record
    has no curve, and says why; its pair threshold then comes from pairs of any two images.

    With `embedder` a copies encoder (its open-set prior queried by edited copies) and too few unknown
    probes for the default FPIR, the gallery also probes itself with edited copies of its pictures
    (`edited`: edited_self_probes), read where they hold the exceedances a target needs."""
    g = _labelled_gallery(vectors, catalog)
    if len(g.labels) < MIN_UNKNOWN or len(g.classes) < 2:
        return {
            "source": "gallery",
            "measured_on": f"the gallery itself ({len(g.every):,} images, {len(g.classes):,} classes)",
            "images": len(g.labels),
            "classes": len(g.classes),
            "curve": None,
            "why": "identify needs at least 5 labelled images in 2 classes to measure the gallery on itself",
            "pair_threshold": pair_threshold(g.every, None),
            "at": _now(),
        }
    scores = gallery_self_scores(g.vectors, g.labels, max_probes=_SELF_PROBES)
    curve = OpenSetCurve.fit(scores, len(g.classes))
    record = {
        "source": "gallery",
        "measured_on": f"the gallery itself ({len(g.labels):,} labelled images, {len(g.classes):,} classes)",
        "images": len(g.labels),
        "classes": len(g.classes),
        "curve": curve.to_dict(),
        "pair_threshold": pair_threshold(g.vectors, g.labels),
        "at": _now(),
    }
    if embedder is not None and probes_itself_with_copies(
        OpenSetPrior.from_meta(embedder.loaded.meta), curve.n_unknown, DEFAULT_FPIR
    ):
        edited = edited_self_probes(g.vectors, g.labels, g.paths, embedder, progress=progress)
        if edited is not None:
            record["edited"] = edited
    return record


@dataclass(frozen=True)
class Calibration:
    """FPIR and FNIR of identify against the index's gallery, measured on labelled probes, and the
    threshold chosen for the target. `rows`: FPIR, threshold, FNIR at a few FPIRs."""

    probes: int
    known_probes: int
    unknown_probes: int
    derived_unknown: int
    gallery_images: int
    gallery_classes: int
    nearest_class_accuracy: float | None
    target: dict[str, float]
    decision: Threshold
    observed_fpir: float | None
    observed_fnir: float | None
    rows: list[dict[str, float | None]]
    roc_png: str | None
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def threshold(self) -> float:
        return self.decision.value

    def to_dict(self) -> dict[str, Any]:
        return {
            "probes": self.probes,
            "known_probes": self.known_probes,
            "unknown_probes": self.unknown_probes,
            "derived_unknown": self.derived_unknown,
            "gallery_images": self.gallery_images,
            "gallery_classes": self.gallery_classes,
            "nearest_class_accuracy": self.nearest_class_accuracy,
            "target": self.target,
            **self.decision.to_dict(),
            "observed_fpir": self.observed_fpir,
            "observed_fnir": self.observed_fnir,
            "rows": self.rows,
            "roc_png": self.roc_png,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }


def _embed_labelled(
    searcher: Searcher, labelled: str | os.PathLike[str], progress: bool
) -> tuple[np.ndarray, list[str], list[str], list[Skipped]]:
    """(embeddings, labels, absolute paths, skipped) of the class-subfolder images under `labelled`."""
    scan = scan_folder(labelled)
    files = [f for f in scan.files if f.label is not None]
    if not files:
        raise DataError(f"{labelled}: calibration needs labelled images in class subfolders")
    skipped = list(scan.skipped)
    chunks, keep = [], []

    def on_error(pos: int, err: ImageError) -> None:
        skipped.append(Skipped(err.path, err.reason))

    for batch in searcher.embedder.stream([f.path for f in files], on_error=on_error, progress=progress):
        chunks.append(batch.vectors)
        keep.extend(batch.positions)
    emb = np.concatenate(chunks) if chunks else np.zeros((0, searcher.manifest.dim), np.float32)
    return emb, [files[p].label or "" for p in keep], [os.path.abspath(files[p].path) for p in keep], skipped


def calibrate(
    labelled: str | os.PathLike[str],
    index: str | os.PathLike[str],
    fpir: float | None = None,
    fnir: float | None = None,
    roc_png: str | os.PathLike[str] | None = None,
    device: str = "auto",
    save: bool = True,
    progress: bool = True,
    far: float | None = None,
) -> Calibration:
    """Measure FPIR and FNIR of identify on the index's gallery with the labelled probes under `labelled`
    (a folder-per-class set), choose the threshold for the target (FPIR 1% unless `fpir` or `fnir` says
    otherwise) and save the curve into the index; identify then uses it by default.

    Probes whose class is in the gallery are known probes (a probe that is itself a gallery file is
    matched against the rest); each is also an unknown probe with its own class left out of the gallery.
    Probes of classes the gallery lacks are unknown probes as they are. `far` is the old name of `fpir`.
    """
    if far is not None and fpir is None:
        fpir = far
    point = OperatingPoint(fpir=fpir, fnir=fnir)
    if fpir is None and fnir is None:
        point = OperatingPoint(fpir=0.01)
    if save and not os.access(index, os.W_OK):  # before the work, not after it
        raise DataError(f"{index}: cannot write to the index (read-only), where calibrate saves what it measures")
    with Searcher(index, device=device) as searcher:
        key = content_key(searcher.store.catalog)
        emb, labels, paths, skipped = _embed_labelled(searcher, labelled, progress)
        fingerprint = searcher.manifest.encoder.get("fingerprint")
        g = _labelled_gallery(searcher.store.vectors, searcher.store.catalog)
        meta = searcher.model.meta
        base = searcher.manifest
    classes = g.classes
    if len(classes) < 2:
        raise DataError(f"{index}: the gallery needs at least two classes for identify to be calibrated")
    index_of = {c: k for k, c in enumerate(classes)}
    g_paths = g.paths
    row_of = {p: r for r, p in enumerate(g_paths)}
    # labels the gallery lacks get their own numbers past the gallery's
    extra = {c: len(classes) + k for k, c in enumerate(sorted(set(labels) - set(classes)))}
    p_labels = np.array([index_of.get(c, extra.get(c, -1)) for c in labels], dtype=np.int64)
    exclude = np.array([row_of.get(p, -1) for p in paths], dtype=np.int64)
    scores = probe_scores(emb, p_labels, g.vectors, g.labels, exclude=exclude)
    true_unknown = int(np.sum(p_labels >= len(classes)))
    if len(scores.unknown) < MIN_UNKNOWN:
        raise DataError(
            f"{labelled}: only {len(scores.unknown)} probe(s) could serve as unknown; give at least {MIN_UNKNOWN} "
            "images of gallery classes (each is also scored with its class left out) or of other classes"
        )
    curve = OpenSetCurve.fit(scores, len(classes))
    measured_on = (
        f"{len(emb):,} labelled probes in {Path(labelled).name} ({len(scores.known):,} known, "
        f"{len(scores.unknown):,} unknown) against {len(g.labels):,} gallery images in {len(classes):,} classes"
    )
    target: dict[str, float] = {"fpir": point.fpir} if point.fpir is not None else {"fnir": float(point.fnir or 0)}
    record = {
        "source": "calibrate",
        "measured_on": measured_on,
        "data": str(labelled),
        "images": len(g.labels),
        "classes": len(classes),
        "curve": curve.to_dict(),
        "target": target,
        "pair_threshold": pair_threshold(emb, p_labels),
        "gallery_key": key,
        "at": _now(),
    }
    decision = resolve_threshold(replace(base, calibration=record, threshold=None), meta, point)
    observed = open_set_rates(scores, decision.value)
    rows: list[dict[str, float | None]] = []
    for rate in _REPORT_FPIRS:
        t = curve.threshold_at_fpir(rate)
        rows.append({"fpir": rate, "threshold": round(t, 6), "fnir": curve.fnir(t)})
    png = None
    if roc_png is not None:
        grid = np.linspace(-1, 1.0001, 400)
        x = np.array([curve.fpir(t) for t in grid])
        y = np.array([1 - (curve.fnir(t) or 0.0) for t in grid])
        order = np.argsort(x, kind="stable")
        marks = {
            f"FPIR {decision.fpir or 0:.3g}: t={decision.value:.3f}": (observed[0] or 0.0, 1 - (observed[1] or 0.0))
        }
        png = str(
            roc_picture(
                x[order], y[order], roc_png, f"open-set ROC on {Path(labelled).name}: 1-FNIR against FPIR", marks
            )
        )
    result = Calibration(
        probes=len(emb),
        known_probes=len(scores.known),
        unknown_probes=true_unknown,
        derived_unknown=len(scores.unknown) - true_unknown,
        gallery_images=len(g.labels),
        gallery_classes=len(classes),
        nearest_class_accuracy=curve.rank1,
        target=target,
        decision=decision,
        observed_fpir=observed[0],
        observed_fnir=observed[1],
        rows=rows,
        roc_png=png,
        skipped=skipped,
    )
    if save:
        with Transaction.begin(index) as tx:
            # only onto the generation it measured: a sync meanwhile makes the curve another gallery's
            if tx.base.encoder.get("fingerprint") != fingerprint or tx.base.generation != base.generation:
                raise DataError(f"{index} changed while calibrating; run calibrate again")
            tx.commit(threshold=decision.value, calibration=record)
    return result
