"""Accuracy measures over embeddings: N-way K-shot episodes, verification ROC/EER, retrieval recall@k."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from simsearch.errors import ConfigError

__all__ = [
    "FewShotResult",
    "VerificationResult",
    "best_accuracy_threshold",
    "equal_error_rate",
    "few_shot_accuracy",
    "pair_scores",
    "recommended_threshold",
    "roc_auc",
    "roc_curve",
    "sample_pairs",
    "threshold_at_far",
    "verification",
]


@dataclass(frozen=True)
class FewShotResult:
    way: int
    shot: int
    episodes: int
    accuracy: float
    ci95: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class VerificationResult:
    pairs: int
    auc: float
    eer: float
    eer_threshold: float
    accuracy: float  # at `threshold`
    threshold: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def few_shot_accuracy(
    emb: np.ndarray, labels: np.ndarray, way: int, shot: int, episodes: int, seed: int = 0, queries: int = 1
) -> FewShotResult:
    """Mean accuracy of random `way`-way `shot`-shot episodes.

    emb: (N, D) float32 unit rows; labels: (N,) int. Each episode draws `way` classes with at
    least shot+queries images, `shot` support images and `queries` query images per class; a
    query is assigned to the class whose normalized mean support embedding is most similar.
    ci95 is 1.96 standard errors of the per-episode accuracy.
    """
    if way < 2 or shot < 1 or episodes < 1 or queries < 1:
        raise ConfigError(
            "need {way} >= 2, {shot} >= 1, queries >= 1 and {episodes} >= 1",
            way="way",
            shot="shot",
            episodes="episodes",
        )
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    eligible = classes[counts >= shot + queries]
    if len(eligible) < way:
        raise ValueError(
            f"{way}-way {shot}-shot needs {way} classes with at least {shot + queries} images; "
            f"this set has {len(eligible)}"
        )
    by_class = {c: np.flatnonzero(labels == c) for c in eligible}
    accs = np.empty(episodes)
    for e in range(episodes):
        chosen = rng.choice(eligible, size=way, replace=False)
        picks = np.stack([rng.choice(by_class[c], size=shot + queries, replace=False) for c in chosen])
        protos = emb[picks[:, :shot]].mean(axis=1)
        protos /= np.linalg.norm(protos, axis=1, keepdims=True) + 1e-12
        q = emb[picks[:, shot:].reshape(-1)]
        truth = np.repeat(np.arange(way), queries)
        accs[e] = np.mean((q @ protos.T).argmax(axis=1) == truth)
    ci = 1.96 * accs.std(ddof=1) / np.sqrt(episodes) if episodes > 1 else 0.0
    return FewShotResult(way=way, shot=shot, episodes=episodes, accuracy=float(accs.mean()), ci95=float(ci))


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-accept rate, true-accept rate, threshold) at every distinct score, threshold descending.

    A pair is accepted when its score >= threshold.
    """
    scores = np.concatenate([genuine, impostor])
    is_gen = np.concatenate([np.ones(len(genuine)), np.zeros(len(impostor))])
    order = np.argsort(-scores, kind="stable")
    scores, is_gen = scores[order], is_gen[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tar = np.cumsum(is_gen)[last] / max(len(genuine), 1)
    far = np.cumsum(1 - is_gen)[last] / max(len(impostor), 1)
    return np.r_[0.0, far], np.r_[0.0, tar], np.r_[np.inf, scores[last]]


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Area under the ROC curve: the chance a genuine pair outscores an impostor pair."""
    far, tar, _ = roc_curve(genuine, impostor)
    return float(np.trapezoid(tar, far))


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(EER, threshold) where the false-accept and false-reject rates cross."""
    far, tar, thr = roc_curve(genuine, impostor)
    frr = 1 - tar
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2), float(thr[i])


def best_accuracy_threshold(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """The threshold (accept score >= threshold) that classifies the most pairs correctly."""
    far, tar, thr = roc_curve(genuine, impostor)
    correct = tar * len(genuine) + (1 - far) * len(impostor)
    i = int(np.argmax(correct))
    return float(thr[i]) if np.isfinite(thr[i]) else float(np.nextafter(np.max(genuine), np.inf))


def pair_scores(emb: np.ndarray, labels: np.ndarray, n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine scores of random same-class and different-class pairs."""
    gen, imp = sample_pairs(labels, n_pairs, seed)
    return (
        np.einsum("ij,ij->i", emb[gen[:, 0]], emb[gen[:, 1]]),
        np.einsum("ij,ij->i", emb[imp[:, 0]], emb[imp[:, 1]]),
    )


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The lowest threshold whose false-accept rate on `impostor` scores is at most `far`."""
    if not 0.0 <= far <= 1.0:
        raise ValueError("far must be in [0, 1]")
    s = np.sort(impostor)[::-1]
    allowed = int(np.floor(far * len(s)))
    if allowed >= len(s):
        return float(s[-1])
    # accept scores strictly above the (allowed+1)-th highest impostor score
    return float(np.nextafter(s[allowed], np.inf))


def sample_pairs(labels: np.ndarray, n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(genuine (G, 2), impostor (I, 2)) index pairs, about n_pairs of each, drawn at random."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    multi = classes[counts >= 2]
    if len(multi) == 0 or len(classes) < 2:
        raise ValueError("verification needs a class with two images and at least two classes")
    by_class = {c: np.flatnonzero(labels == c) for c in multi}
    gen = np.array([rng.choice(by_class[c], size=2, replace=False) for c in rng.choice(multi, size=n_pairs)])
    a = rng.integers(0, len(labels), size=4 * n_pairs)
    b = rng.integers(0, len(labels), size=4 * n_pairs)
    keep = labels[a] != labels[b]
    imp = np.stack([a[keep], b[keep]], axis=1)[:n_pairs]
    return gen, imp


def verification(
    emb: np.ndarray, labels: np.ndarray, n_pairs: int = 3000, seed: int = 0, threshold: float | None = None
) -> VerificationResult:
    """Same/different verification over random pairs: ROC AUC, EER, and accuracy at `threshold`
    (the EER threshold when none is given)."""
    g, i = pair_scores(emb, labels, n_pairs, seed)
    eer, eer_thr = equal_error_rate(g, i)
    thr = eer_thr if threshold is None else threshold
    acc = (np.sum(g >= thr) + np.sum(i < thr)) / (len(g) + len(i))
    return VerificationResult(
        pairs=len(g) + len(i),
        auc=roc_auc(g, i),
        eer=eer,
        eer_threshold=eer_thr,
        accuracy=float(acc),
        threshold=float(thr),
    )


def recommended_threshold(
    emb: np.ndarray, labels: np.ndarray, far: float = 0.01, n_pairs: int = 5000, seed: int = 0
) -> float:
    """The cosine threshold that accepts a fraction `far` of random different-class pairs of `emb`."""
    _, imp = sample_pairs(labels, n_pairs, seed)
    return threshold_at_far(np.einsum("ij,ij->i", emb[imp[:, 0]], emb[imp[:, 1]]), far)
