"""Calibration: genuine and impostor scores measured on labelled images, and the threshold saved into an index."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from index.store import Transaction
from simsearch.engine.search import Searcher
from simsearch.errors import DataError, ImageError
from simsearch.evaluate.metrics import equal_error_rate, roc_auc, roc_curve, threshold_at_far
from simsearch.images import Skipped, scan_folder
from simsearch.pictures import roc_picture

__all__ = ["Calibration", "calibrate"]

# Beyond this many images, calibration samples pairs instead of scoring all of them.
_MAX_ALL_PAIRS = 3000
_SAMPLED_PAIRS = 2_000_000


@dataclass(frozen=True)
class Calibration:
    """Genuine/impostor score statistics on labelled images and the threshold chosen from them."""

    images: int
    classes: int
    genuine_pairs: int
    impostor_pairs: int
    auc: float
    eer: float
    eer_threshold: float
    far: float
    threshold: float
    tar_at_threshold: float
    roc_png: str | None
    skipped: list[Skipped]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["skipped"] = [{"path": s.path, "reason": s.reason} for s in self.skipped]
        return d


def _pair_scores(emb: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine scores: every pair for small sets, a large random sample otherwise."""
    n = len(emb)
    if n <= _MAX_ALL_PAIRS:
        i, j = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(seed)
        i, j = rng.integers(0, n, _SAMPLED_PAIRS), rng.integers(0, n, _SAMPLED_PAIRS)
        keep = i != j
        i, j = i[keep], j[keep]
        # genuine pairs are rare in a random sample: add every same-class pair
        parts_i, parts_j = [i], [j]
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            a, b = np.triu_indices(len(members), k=1)
            parts_i.append(members[a])
            parts_j.append(members[b])
        i, j = np.concatenate(parts_i), np.concatenate(parts_j)
    scores = np.einsum("ij,ij->i", emb[i], emb[j])
    same = labels[i] == labels[j]
    return scores[same], scores[~same]


def calibrate(
    labelled: str | os.PathLike[str],
    index: str | os.PathLike[str],
    far: float = 0.01,
    roc_png: str | os.PathLike[str] | None = None,
    device: str = "auto",
    seed: int = 0,
    save: bool = True,
    progress: bool = True,
) -> Calibration:
    """Measure genuine and impostor scores on a folder-per-class set with the index's encoder,
    choose the threshold whose false-accept rate is `far`, and save it into the index.

    Use labelled images that are not in the gallery (ideally also of other classes), so the
    threshold reflects what identify will meet.
    """
    if not 0.0 < far < 1.0:
        raise DataError("--far must be between 0 and 1 (for example 0.01)")
    scan = scan_folder(labelled)
    files = [f for f in scan.files if f.label is not None]
    if len({f.label for f in files}) < 2:
        raise DataError(f"{labelled}: calibration needs images in at least two class subfolders")
    with Searcher(index, device=device) as searcher:
        skipped = list(scan.skipped)
        chunks, keep = [], []

        def on_error(pos: int, err: ImageError) -> None:
            skipped.append(Skipped(err.path, err.reason))

        for batch in searcher.embedder.stream([f.path for f in files], on_error=on_error, progress=progress):
            chunks.append(batch.vectors)
            keep.extend(batch.positions)
        fingerprint = searcher.manifest.encoder.get("fingerprint")
    emb = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)
    names = sorted({files[p].label or "" for p in keep})
    labels = np.array([names.index(files[p].label or "") for p in keep])
    genuine, impostor = _pair_scores(emb, labels, seed)
    if not len(genuine) or not len(impostor):
        raise DataError(f"{labelled}: need a class with two readable images and two classes")
    eer, eer_thr = equal_error_rate(genuine, impostor)
    thr = threshold_at_far(impostor, far)
    tar = float(np.mean(genuine >= thr))
    auc = roc_auc(genuine, impostor)
    png = None
    if roc_png is not None:
        f_rates, t_rates, _ = roc_curve(genuine, impostor)
        marks = {f"EER {eer:.3f}": (eer, 1 - eer), f"FAR {far:g}: t={thr:.3f}": (float(np.mean(impostor >= thr)), tar)}
        png = str(roc_picture(f_rates, t_rates, roc_png, f"ROC on {Path(labelled).name}: AUC {auc:.4f}", marks))
    result = Calibration(
        images=len(emb),
        classes=len(names),
        genuine_pairs=len(genuine),
        impostor_pairs=len(impostor),
        auc=auc,
        eer=eer,
        eer_threshold=eer_thr,
        far=far,
        threshold=thr,
        tar_at_threshold=tar,
        roc_png=png,
        skipped=skipped,
    )
    if save:
        with Transaction.begin(index) as tx:
            if tx.base.encoder.get("fingerprint") != fingerprint:
                raise DataError(f"{index} changed encoder while calibrating; run calibrate again")
            summary = {k: v for k, v in result.to_dict().items() if k not in ("skipped", "roc_png")}
            tx.commit(
                threshold=thr,
                calibration=dict(
                    summary, data=str(labelled), at=datetime.now(timezone.utc).isoformat(timespec="seconds")
                ),
            )
    return result
