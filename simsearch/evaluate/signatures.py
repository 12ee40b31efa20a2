"""Writer-dependent signature verification with skilled forgeries.

A set laid out as `.../genuine/<writer>/*` and `.../forgery/<writer>/*` (SigComp2011's layout).
For each writer, `refs` genuine signatures (drawn with a seed) are the references; their mean
embedding is the writer's prototype; the writer's other genuine signatures must be accepted and
the writer's skilled forgeries rejected. Scores are cosines to the prototype, pooled over writers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from simsearch.datasets import LabelledSet, class_group
from simsearch.errors import ConfigError, DataError
from simsearch.measures.metrics import equal_error_rate, roc_auc

__all__ = ["SignatureResult", "has_forgeries", "signature_scores", "signature_verification", "writers"]

_FORGERY = ("forgery", "forgeries", "forged")


@dataclass(frozen=True)
class SignatureResult:
    refs: int
    writers: int
    genuine: int  # genuine test signatures scored (references excluded)
    forgeries: int
    auc: float
    eer: float
    eer_threshold: float
    threshold: float  # the threshold applied for accuracy (chosen elsewhere, e.g. on training writers)
    accuracy: float
    false_accept: float  # forgeries accepted at `threshold`
    false_reject: float  # genuine rejected at `threshold`

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def writers(data: LabelledSet) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{writer: (indexes of genuine images, indexes of forgeries)} for writers with genuine images."""
    out: dict[str, tuple[list[int], list[int]]] = {}
    for c, name in enumerate(data.classes):
        parts = [p.lower() for p in name.split("/")]
        if "genuine" not in parts and not any(f in parts for f in _FORGERY):
            continue
        entry = out.setdefault(class_group(name), ([], []))
        idx = np.flatnonzero(data.labels == c).tolist()
        (entry[1] if any(f in parts for f in _FORGERY) else entry[0]).extend(idx)
    found = {w: (np.array(sorted(g), np.int64), np.array(sorted(f), np.int64)) for w, (g, f) in out.items() if g}
    if not found:
        raise DataError("no signature layout found: expected classes like genuine/<writer> and forgery/<writer>")
    return found


def has_forgeries(data: LabelledSet) -> bool:
    """Whether `data` is laid out as genuine/<writer> and forgery/<writer>, with some writer having
    two or more genuine signatures and some forgeries (enough for one-reference verification)."""
    try:
        return any(len(g) > 1 and len(f) for g, f in writers(data).values())
    except DataError:
        return False


def signature_scores(emb: np.ndarray, data: LabelledSet, refs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(genuine scores, forgery scores): cosine of each test signature to its writer's prototype."""
    if refs < 1:
        raise ConfigError("{fields} must be at least 1", ["refs"])
    rng = np.random.default_rng(seed)
    gen, forg = [], []
    for _, (g, f) in sorted(writers(data).items()):
        if len(g) <= refs:
            continue
        order = rng.permutation(g)
        proto = emb[order[:refs]].mean(axis=0)
        proto /= max(float(np.linalg.norm(proto)), 1e-12)
        gen.append(emb[order[refs:]] @ proto)
        forg.append(emb[f] @ proto)
    if not gen or not sum(len(x) for x in forg):
        raise DataError(f"no writer has more than {refs} genuine signatures and some forgeries")
    return np.concatenate(gen).astype(np.float32), np.concatenate(forg).astype(np.float32)


def signature_verification(
    emb: np.ndarray, data: LabelledSet, refs: int, threshold: float | None = None, seed: int = 0
) -> SignatureResult:
    """EER and ROC AUC, and accuracy at `threshold` (this set's own EER threshold when None)."""
    g, f = signature_scores(emb, data, refs, seed)
    eer, eer_thr = equal_error_rate(g, f)
    thr = eer_thr if threshold is None else threshold
    fa = float(np.mean(f >= thr))
    fr = float(np.mean(g < thr))
    return SignatureResult(
        refs=refs,
        writers=len(writers(data)),
        genuine=len(g),
        forgeries=len(f),
        auc=roc_auc(g, f),
        eer=eer,
        eer_threshold=eer_thr,
        threshold=float(thr),
        accuracy=float((np.sum(g >= thr) + np.sum(f < thr)) / (len(g) + len(f))),
        false_accept=fa,
        false_reject=fr,
    )
