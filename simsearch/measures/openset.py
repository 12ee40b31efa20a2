"""Open-set 1:N identification, in the terms NIST's face recognition vendor tests use: FPIR (the share of
probes of classes absent from the gallery that are accepted as some class) and FNIR (the share of probes of
gallery classes not answered with their class), the best-of-gallery scores they are measured on, and the
curve a threshold for a target FPIR or FNIR is read from. Pure numpy.

identify accepts the best score over the whole gallery, so what a threshold means depends on the gallery:
the best of N impostor scores grows with N. Every threshold here is therefore fitted on best-of-gallery
scores, never on pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from simsearch.errors import ConfigError

__all__ = [
    "MIN_UNKNOWN",
    "OpenSetCurve",
    "ProbeScores",
    "gallery_self_scores",
    "open_set_rates",
    "predictive_target",
    "probe_scores",
    "thin",
]

# Below this many expected exceedances the empirical tail is too thin to read a threshold from, and the
# fitted Gumbel tail (the law of a maximum) is used instead.
_MIN_EXCEEDANCES = 10
# A curve needs at least this many unknown best-scores to say anything.
MIN_UNKNOWN = 5
# A stored curve keeps at most this many order statistics of each score list.
_STORED = 1000


@dataclass(frozen=True)
class ProbeScores:
    """Best-of-gallery scores of probes.

    known (K,): the best score of each probe whose class is in the gallery; correct (K,): whether the
    nearest class was its own; unknown (U,): the best score of each probe of a class the gallery lacks
    (true unknowns, and known probes scored with their own class left out of the gallery); unknown_classes:
    how many gallery classes each unknown best-score was taken over, on average.
    """

    known: np.ndarray
    correct: np.ndarray
    unknown: np.ndarray
    unknown_classes: float


def probe_scores(
    probes: np.ndarray,
    probe_labels: np.ndarray,
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    exclude: np.ndarray | None = None,
    leave_class_out: bool = True,
    chunk: int = 512,
) -> ProbeScores:
    """Score (P, D) unit probe rows against a (G, D) labelled gallery the way identify decides.

    Labels are ints; a probe label that no gallery row has makes an unknown probe. `exclude` (P,) names
    a gallery row each probe must not be matched with (its own copy, when gallery images probe the rest),
    or -1. With `leave_class_out`, each known probe also gives an unknown best-score: its best score
    over the other classes, as if its class were absent.
    """
    probes = np.asarray(probes, dtype=np.float32)
    gallery = np.asarray(gallery, dtype=np.float32)
    probe_labels = np.asarray(probe_labels)
    gallery_labels = np.asarray(gallery_labels)
    classes, counts = np.unique(gallery_labels, return_counts=True)
    count_of = dict(zip(classes.tolist(), counts.tolist(), strict=True))
    n_classes = len(classes)
    chunk = max(1, min(chunk, 50_000_000 // max(len(gallery), 1)))  # at most 200 MB of scores at once
    known, correct, unknown, taken_over = [], [], [], []
    for start in range(0, len(probes), chunk):
        s = probes[start : start + chunk] @ gallery.T
        lab = probe_labels[start : start + chunk]
        if exclude is not None:
            ex = np.asarray(exclude[start : start + chunk])
            rows = np.flatnonzero(ex >= 0)
            s[rows, ex[rows]] = -np.inf
        else:
            ex = np.full(len(lab), -1)
        best = s.argmax(axis=1)
        best_score = s[np.arange(len(s)), best]
        for r in range(len(s)):
            own = count_of.get(lab[r].item(), 0)
            if ex[r] >= 0 and gallery_labels[ex[r]] == lab[r]:
                own -= 1  # its own copy is left out
            if own > 0:
                if np.isfinite(best_score[r]):
                    known.append(best_score[r])
                    correct.append(gallery_labels[best[r]] == lab[r])
                if leave_class_out and n_classes > 1:
                    other = np.where(gallery_labels == lab[r], -np.inf, s[r]).max()
                    if np.isfinite(other):
                        unknown.append(other)
                        taken_over.append(n_classes - 1)
            elif np.isfinite(best_score[r]):
                unknown.append(best_score[r])
                taken_over.append(n_classes - (1 if lab[r].item() in count_of else 0))
    return ProbeScores(
        known=np.asarray(known, dtype=np.float64),
        correct=np.asarray(correct, dtype=bool),
        unknown=np.asarray(unknown, dtype=np.float64),
        unknown_classes=float(np.mean(taken_over)) if taken_over else 0.0,
    )


def gallery_self_scores(vectors: np.ndarray, labels: np.ndarray, max_probes: int = 2000, seed: int = 0) -> ProbeScores:
    """A gallery measured on itself: each (sampled) gallery image probes the rest with itself left out.

    Against the other classes it gives an impostor best-score at the gallery's size (less one class);
    where its class has other images it is also a known probe (a genuine score and whether the nearest
    class was right). vectors (G, D) unit rows, labels (G,) ints.
    """
    n = len(vectors)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(n, size=max_probes, replace=False)) if n > max_probes else np.arange(n)
    return probe_scores(vectors[picks], np.asarray(labels)[picks], vectors, labels, exclude=picks)


def open_set_rates(scores: ProbeScores, threshold: float) -> tuple[float | None, float | None]:
    """(FPIR, FNIR) observed at `threshold` (accept when the best score >= threshold); None without probes."""
    fpir = float(np.mean(scores.unknown >= threshold)) if len(scores.unknown) else None
    fnir = float(1 - np.mean(scores.correct & (scores.known >= threshold))) if len(scores.known) else None
    return fpir, fnir


def thin(values: np.ndarray) -> np.ndarray:
    """At most _STORED evenly spaced order statistics of `values` (sorted ascending), to store."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    if len(v) <= _STORED:
        return v
    return v[np.linspace(0, len(v) - 1, _STORED).round().astype(int)]


def _gev_fit(x: np.ndarray, shrink: float = 50.0) -> tuple[float, float, float]:
    """(location, scale, shape k) of a generalized extreme value law fitted to maxima `x` by L-moments
    (Hosking, Wallis and Wood 1985); k > 0 is a bounded upper tail, k = 0 the Gumbel law. The shape is
    pulled toward the Gumbel law for small samples (by n / (n + shrink)), where its estimate is noise."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = len(x)
    i = np.arange(n)
    b0 = x.mean()
    b1 = np.sum(i * x) / (n * (n - 1))
    b2 = np.sum(i * (i - 1) * x) / (n * (n - 1) * (n - 2))
    l1, l2, l3 = b0, 2 * b1 - b0, 6 * b2 - 6 * b1 + b0
    l2 = max(l2, 1e-6)
    c = 2 / (3 + l3 / l2) - math.log(2) / math.log(3)
    k = (7.8590 * c + 2.9554 * c * c) * n / (n + shrink)
    k = min(max(k, -0.5), 0.9)
    if abs(k) < 1e-4:
        k = math.copysign(1e-4, k)
    alpha = l2 * k / ((1 - 2**-k) * math.gamma(1 + k))
    loc = l1 - alpha * (1 - math.gamma(1 + k)) / k
    return float(loc), float(alpha), float(k)


def _gev_quantile(level: np.ndarray | float, loc: float, alpha: float, k: float) -> np.ndarray:
    # a level of 1 (an FPIR below float precision, --fpir 1e-300) is the tail's end: no warning, its limit
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return loc + alpha * (1 - (-np.log(level)) ** k) / k


def _gev_sf(t: float, loc: float, alpha: float, k: float) -> float:
    y = max(1 - k * (t - loc) / alpha, 0.0)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return float(-np.expm1(-(y ** (1 / k)))) if y > 0 else 0.0


def predictive_target(expected: Callable[[float], float], fpir: float, lowest: float, steps: int) -> float:
    """The rate to read a threshold at so that thresholds read that way (from samples as uncertain as the one
    at hand) accept `fpir` on average: `fpir` itself where expected(fpir), their mean rate, is at most it;
    else lowered, bisected in log between `lowest` and `fpir` for `steps` steps, to the highest rate found
    whose expected rate is at most `fpir`."""
    if expected(fpir) <= fpir:
        return fpir
    lo, hi = math.log(lowest), math.log(fpir)
    for _ in range(steps):
        mid = (lo + hi) / 2
        if expected(math.exp(mid)) > fpir:
            hi = mid
        else:
            lo = mid
    return math.exp(lo)


@dataclass(frozen=True)
class OpenSetCurve:
    """FPIR and FNIR as functions of the threshold, fitted on best-of-gallery scores.

    unknown: best scores of unknown probes (sorted); known/correct: best scores of known probes and
    whether their nearest class was right; classes: the gallery's class count the curve speaks for;
    unknown_classes: the class count the unknown best-scores were taken over (one fewer when a known
    probe's own class was left out). n_unknown / n_known: how many probes were measured (the stored
    lists may be thinned).

    A threshold for a target FPIR is read from the empirical tail where at least 10 unknown probes lie
    beyond it. Beyond that (a gallery of 20 classes has 20 best-scores: 1% is one fifth of a probe) it
    comes from a generalized extreme value law fitted to the best-scores (the law of a maximum), moved
    from `unknown_classes` to `classes`, and made predictive: the fit from a few scores is itself
    uncertain, so the target is lowered until the expected FPIR of thresholds fitted that way, on
    samples of the same size drawn from the fitted law, is the target (a parametric bootstrap).
    """

    unknown: np.ndarray
    known: np.ndarray
    correct: np.ndarray
    classes: int
    unknown_classes: float
    n_unknown: int
    n_known: int
    gev: tuple[float, float, float]  # (location, scale, shape) of the best impostor score

    @classmethod
    def fit(cls, scores: ProbeScores, classes: int) -> OpenSetCurve:
        if len(scores.unknown) < MIN_UNKNOWN:
            raise ValueError(
                f"an open-set curve needs at least {MIN_UNKNOWN} unknown probes; got {len(scores.unknown)}"
            )
        u = np.asarray(scores.unknown, dtype=np.float64)
        order = np.argsort(scores.known, kind="stable")
        return cls(
            unknown=thin(u),
            known=np.asarray(scores.known, dtype=np.float64)[order],
            correct=np.asarray(scores.correct, dtype=bool)[order],
            classes=int(classes),
            unknown_classes=float(scores.unknown_classes) or float(classes),
            n_unknown=len(u),
            n_known=len(scores.known),
            gev=_gev_fit(u),
        )

    # ------------------------------------------------------------------ FPIR
    @property
    def _size_power(self) -> float:
        """F_classes = F_measured ** power: the best of `classes` rather than `unknown_classes` class scores."""
        return max(self.classes / self.unknown_classes, 1.0) if self.unknown_classes > 0 else 1.0

    def fpir(self, threshold: float) -> float:
        """The share of unknown probes accepted at `threshold`."""
        above = int(len(self.unknown) - np.searchsorted(self.unknown, threshold, side="left"))
        share = above / len(self.unknown)
        if share * self.n_unknown >= _MIN_EXCEEDANCES:
            return share
        return float(-np.expm1(self._size_power * np.log1p(-_gev_sf(threshold, *self.gev))))

    def threshold_at_fpir(self, fpir: float) -> float:
        """The lowest threshold that accepts at most a share `fpir` of unknown probes."""
        if not 0.0 < fpir < 1.0:
            raise ConfigError("a target FPIR ({fields}) must be between 0 and 1 (for example 0.01)", ["fpir"])
        if fpir * self.n_unknown >= _MIN_EXCEEDANCES:
            desc = self.unknown[::-1]
            allowed = int(np.floor(fpir * len(desc)))
            return float(np.nextafter(desc[min(allowed, len(desc) - 1)], np.inf))
        return self._predictive_threshold(fpir)

    def _threshold_from(self, fpir: float, gev: tuple[float, float, float]) -> float:
        return float(_gev_quantile((1 - fpir) ** (1 / self._size_power), *gev))

    def _predictive_threshold(self, fpir: float, draws: int = 200) -> float:
        rng = np.random.default_rng(0)
        sims = _gev_quantile(rng.random((draws, self.n_unknown)), *self.gev)
        refits = [_gev_fit(row) for row in sims]

        def expected(target: float) -> float:
            power = self._size_power
            return float(
                np.mean(
                    [-np.expm1(power * np.log1p(-_gev_sf(self._threshold_from(target, g), *self.gev))) for g in refits]
                )
            )

        return self._threshold_from(predictive_target(expected, fpir, lowest=fpir / 100, steps=14), self.gev)

    # ------------------------------------------------------------------ FNIR
    def fnir(self, threshold: float) -> float | None:
        """The share of known probes not answered with their class at `threshold` (None: no known probes)."""
        if not len(self.known):
            return None
        accepted = len(self.known) - np.searchsorted(self.known, threshold, side="left")
        right = int(np.sum(self.correct[len(self.known) - accepted :]))
        return float(1 - right / len(self.known))

    def threshold_at_fnir(self, fnir: float) -> float:
        """The highest threshold whose FNIR is at most `fnir`. Raises ValueError when no known probes
        were measured, or when the nearest class alone is wrong more often than `fnir`."""
        if not 0.0 < fnir < 1.0:
            raise ConfigError("a target FNIR ({fields}) must be between 0 and 1 (for example 0.05)", ["fnir"])
        if not len(self.known):
            raise ValueError("no probe of a gallery class was measured, so a false-reject target cannot be fitted")
        right = np.sort(self.known[self.correct])[::-1]
        need = math.ceil((1 - fnir) * len(self.known) - 1e-9)
        if need > len(right):
            raise ValueError(
                f"the nearest class is wrong for {1 - len(right) / len(self.known):.1%} of known probes, "
                f"more than the FNIR target {fnir:g} allows at any threshold"
            )
        return float(right[need - 1]) if need > 0 else 1.0

    @property
    def rank1(self) -> float | None:
        """Closed-set accuracy: the share of known probes whose nearest class is right."""
        return float(np.mean(self.correct)) if len(self.correct) else None

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        keep = np.linspace(0, len(self.known) - 1, min(len(self.known), _STORED)).round().astype(int)
        return {
            "classes": self.classes,
            "unknown_classes": round(self.unknown_classes, 3),
            "n_unknown": self.n_unknown,
            "n_known": self.n_known,
            "gev": [round(x, 6) for x in self.gev],
            # scores stored exactly (as float32 values): a rounded score could move a threshold past a probe
            "unknown": [float(np.float32(x)) for x in self.unknown],
            "known": [float(np.float32(x)) for x in self.known[keep]] if len(self.known) else [],
            "correct": [int(x) for x in self.correct[keep]] if len(self.known) else [],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OpenSetCurve:
        """Read a stored curve. Raises ValueError (or TypeError, KeyError) on a malformed one."""
        unknown = np.sort(np.asarray(d["unknown"], dtype=np.float64))
        known = np.asarray(d["known"], dtype=np.float64)
        correct = np.asarray(d["correct"], dtype=bool)
        loc, alpha, k = (float(x) for x in d["gev"])
        if (
            len(unknown) < 1
            or len(known) != len(correct)
            or not alpha > 0
            or k == 0
            or not np.all(np.isfinite(unknown))
        ):
            raise ValueError("malformed open-set curve")
        order = np.argsort(known, kind="stable")
        return cls(
            unknown=unknown,
            known=known[order],
            correct=correct[order],
            classes=int(d["classes"]),
            unknown_classes=float(d["unknown_classes"]),
            n_unknown=int(d["n_unknown"]),
            n_known=int(d["n_known"]),
            gev=(loc, alpha, k),
        )
