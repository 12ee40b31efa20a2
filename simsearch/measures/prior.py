"""An encoder's open-set prior: how its scores behave in galleries of classes it never trained on, so that
a gallery too small to measure itself (one image a class, a handful of classes) still gets a threshold
for its size from a measurement rather than from an extrapolated tail. Pure numpy; stored in the
encoder's model.json as `open_set_prior`.

impostor[N]: best-of-gallery scores of probes of absent classes against galleries of N classes (one image
each), thinned to at most 1,000 order statistics of the n_impostor[N] measured. genuine[shot]: the best
score of a known probe against its own class with `shot` images, and whether its class was the nearest.
A threshold for a target FPIR at N classes is read from the measured sizes around N (linear in log N),
only where at least 10 measured probes lie beyond it; never from a size that was not measured.

query_impostor[N] (optional): the same galleries probed with the absent pictures as queries come to the
encoder, where that differs from what a gallery can probe itself with: for a copies encoder, edited copies
(`queries` says which edits). A gallery measures itself with its own unedited pictures (`impostor`'s kind);
the target's threshold is read from the queries' scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simsearch.measures.metrics import threshold_at_far
from simsearch.measures.openset import thin

__all__ = [
    "DEFAULT_FPIR",
    "MIN_EXCEEDANCES",
    "Combined",
    "OpenSetPrior",
    "PriorThreshold",
    "combine",
    "edited_threshold",
    "gallery_weight",
    "probes_itself_with_copies",
]

MIN_EXCEEDANCES = 10
DEFAULT_FPIR = 0.01  # identify's target where none is asked (engine.decision): what a gallery measures itself for
_STORED = 1000  # genuine scores kept a shot (impostor scores are thinned as a curve's are: openset.thin)


@dataclass(frozen=True)
class PriorThreshold:
    """A threshold read from the prior: its value, the FPIR it stands for (measured at the size it was read
    at), and what it rests on."""

    value: float
    fpir: float
    classes_measured: tuple[int, ...]  # the measured sizes it was read from
    note: str


@dataclass(frozen=True)
class OpenSetPrior:
    measured_on: str
    impostor: dict[int, np.ndarray]
    n_impostor: dict[int, int]
    genuine: dict[int, np.ndarray]
    genuine_correct: dict[int, np.ndarray]
    query_impostor: dict[int, np.ndarray] = field(default_factory=dict)  # the same probes, so n_impostor counts them
    queries: str = ""  # what the query probes were (empty: the same pictures as `impostor`)

    @property
    def described(self) -> str:
        """What it was measured on, and what queried it where that was not the same pictures."""
        return self.measured_on + (f", queried by {self.queries}" if self.query_impostor and self.queries else "")

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(sorted(self.impostor))

    def _at_size(self, size: int, fpir: float) -> tuple[float, float] | None:
        """(threshold, FPIR it gives) at one measured size, or None when too few probes were measured; read from
        the queries' scores where the prior has them."""
        u, n = self.query_impostor.get(size, self.impostor[size]), self.n_impostor[size]
        if fpir * n < MIN_EXCEEDANCES:
            return None
        desc = u[::-1]
        allowed = int(np.floor(fpir * len(desc)))
        t = float(np.nextafter(desc[min(allowed, len(desc) - 1)], np.inf))
        return t, float(np.mean(u >= t))

    def threshold_at_fpir(
        self, classes: int, fpir: float, above_level: float | None = None, level_of_queries: bool = False
    ) -> PriorThreshold | None:
        """The threshold for `fpir` in a gallery of `classes` classes, from the measured sizes around it
        (linear in log size; below the smallest: the smallest, which is stricter; above the largest: the
        largest, said so). With `above_level`, that threshold's distance to the top score (1 - t) as a share of
        the `above_level` quantile's (1 - q) of the best impostor scores at the same sizes, of the unedited
        pictures a gallery probes itself with (for a gallery that measured that quantile itself: combine), or
        with `level_of_queries` of the queries' scores (a gallery that probed itself with edited copies).
        None when no size was measured with enough probes for that FPIR."""
        usable = [s for s in self.sizes if self._at_size(s, fpir) is not None]
        if not usable:
            return None

        def read(size: int) -> tuple[float, float]:
            t, f = self._at_size(size, fpir)  # type: ignore[misc]
            if above_level is not None:
                base = self.query_impostor.get(size, self.impostor[size]) if level_of_queries else self.impostor[size]
                q = float(np.quantile(base, above_level))
                t = (1.0 - t) / max(1.0 - q, 1e-6)
            return t, f

        below = [s for s in usable if s <= classes]
        above = [s for s in usable if s >= classes]
        if below and above:
            s0, s1 = below[-1], above[0]
            (t0, f0), (t1, f1) = read(s0), read(s1)
            w = 0.0 if s1 == s0 else (math.log(classes) - math.log(s0)) / (math.log(s1) - math.log(s0))
            note = f"the encoder's prior at {s0}" + ("" if s1 == s0 else f" and {s1}") + " classes"
            return PriorThreshold(t0 + w * (t1 - t0), f0 + w * (f1 - f0), (s0, s1), note)
        if above:  # smaller than anything measured: the smallest measured size is stricter
            t, f = read(above[0])
            return PriorThreshold(t, f, (above[0],), f"the encoder's prior at {above[0]} classes (stricter here)")
        t, f = read(below[-1])
        note = f"the encoder's prior at {below[-1]} classes, its largest measured: more unknowns pass in {classes}"
        return PriorThreshold(t, f, (below[-1],), note)

    def to_dict(self) -> dict[str, Any]:
        return {
            "measured_on": self.measured_on,
            "impostor": {str(s): [round(float(x), 6) for x in v] for s, v in self.impostor.items()},
            "n_impostor": {str(s): int(n) for s, n in self.n_impostor.items()},
            "genuine": {str(k): [round(float(x), 6) for x in v] for k, v in self.genuine.items()},
            "genuine_correct": {str(k): [bool(x) for x in v] for k, v in self.genuine_correct.items()},
            **(
                {
                    "queries": self.queries,
                    "query_impostor": {str(s): [round(float(x), 6) for x in v] for s, v in self.query_impostor.items()},
                }
                if self.query_impostor
                else {}
            ),
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> OpenSetPrior | None:
        """The prior an encoder's model.json records (None: none, or a malformed one)."""
        rec = meta.get("open_set_prior")
        if not isinstance(rec, dict):
            return None
        try:
            return cls.from_dict(rec)
        except (KeyError, TypeError, ValueError):
            return None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OpenSetPrior:
        """Read back; raises ValueError (or KeyError, TypeError) on a malformed record."""
        imp, n = _scores(d["impostor"], d["n_impostor"])
        if not imp:
            raise ValueError("an open-set prior needs finite impostor scores for each measured size")
        queried = d.get("query_impostor", {})
        if queried and {int(s) for s in queried} != set(imp):
            raise ValueError("an open-set prior's query scores are not of its measured sizes")
        q_imp, _ = _scores(queried, d["n_impostor"] if queried else {})  # the same probes as the impostor scores
        gen = {int(k): np.asarray(v, dtype=np.float64) for k, v in d.get("genuine", {}).items()}
        ok = {int(k): np.asarray(v, dtype=bool) for k, v in d.get("genuine_correct", {}).items()}
        measured_on, queries = str(d.get("measured_on", "unrecorded classes")), str(d.get("queries", ""))
        return cls(measured_on, imp, n, gen, ok, q_imp, queries if q_imp else "")

    @classmethod
    def measure(
        cls,
        emb: np.ndarray,
        labels: np.ndarray,
        measured_on: str,
        sizes: tuple[int, ...] = (2, 5, 10, 20, 50, 100, 200, 500, 1000),
        probes: int = 3000,
        shots: tuple[int, ...] = (1, 5),
        seed: int = 0,
        queries: np.ndarray | None = None,
        queries_are: str = "",
        others_at_least: int = 5,
    ) -> OpenSetPrior:
        """Measure on (N, D) unit rows of classes the encoder never trained on: for each size (up to the
        class count less 5), random one-image-a-class galleries probed with one image of each of other
        classes, until `probes` unknown best-scores; genuine scores from galleries of `shot` images.
        `queries`: (N, D) rows of the same pictures as queries come (e.g. one edited copy of each, described by
        `queries_are`): the same galleries probed with those too (query_impostor)."""
        rng = np.random.default_rng(seed)
        labels = np.asarray(labels)
        names = np.unique(labels)
        by_class = [np.flatnonzero(labels == c) for c in names]
        imp: dict[int, np.ndarray] = {}
        n_imp: dict[int, int] = {}
        q_imp: dict[int, np.ndarray] = {}
        for size in [s for s in sizes if s <= len(names) - others_at_least]:
            got: list[np.ndarray] = []
            got_q: list[np.ndarray] = []
            total = 0
            while total < probes:
                chosen = rng.permutation(len(names))
                gal = np.array([rng.choice(by_class[c]) for c in chosen[:size]])
                others = chosen[size : size + max(others_at_least, min(size, 200))]
                prb = np.array([rng.choice(by_class[c]) for c in others])
                best = (emb[prb] @ emb[gal].T).max(axis=1)
                got.append(best)
                if queries is not None:
                    got_q.append((queries[prb] @ emb[gal].T).max(axis=1))
                total += len(best)
            scores = np.concatenate(got)
            imp[size], n_imp[size] = thin(scores), len(scores)
            if queries is not None:
                q_imp[size] = thin(np.concatenate(got_q))
        gen: dict[int, np.ndarray] = {}
        ok: dict[int, np.ndarray] = {}
        for shot in shots:
            eligible = [c for c in range(len(names)) if len(by_class[c]) > shot]
            if len(eligible) < 20:
                continue
            best, right = [], []
            for _ in range(max(1, probes // 20)):
                chosen = rng.choice(eligible, size=20, replace=False)
                rows = [rng.permutation(by_class[c]) for c in chosen]
                gal = np.concatenate([r[:shot] for r in rows])
                gal_lab = np.repeat(np.arange(20), shot)
                prb = np.array([r[shot] for r in rows])
                s = emb[prb] @ emb[gal].T
                own = np.where(gal_lab[None, :] == np.arange(20)[:, None], s, -np.inf).max(axis=1)
                best.append(own)
                right.append(gal_lab[s.argmax(axis=1)] == np.arange(20))
            scores, hits = np.concatenate(best), np.concatenate(right)
            order = np.argsort(scores)[:: max(1, len(scores) // _STORED)]
            gen[shot], ok[shot] = scores[order], hits[order]
        return cls(measured_on, imp, n_imp, gen, ok, q_imp, queries_are if q_imp else "")


def _scores(values: dict[str, Any], counts: dict[str, Any]) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    """Sorted scores and the count measured, by gallery size, from a model.json record; ValueError when they
    do not agree."""
    imp = {int(s): np.sort(np.asarray(v, dtype=np.float64)) for s, v in values.items()}
    n = {int(s): int(v) for s, v in counts.items()}
    if set(imp) != set(n) or any(len(v) == 0 or not np.all(np.isfinite(v)) for v in imp.values()):
        raise ValueError("an open-set prior needs finite scores and a count for each measured size")
    if any(s < 1 or n[s] < len(imp[s]) for s in imp):
        raise ValueError("an open-set prior's sizes and counts do not agree")
    return imp, n


@dataclass(frozen=True)
class Combined:
    """A gallery's own measurement for a target FPIR joined with the encoder's prior at the gallery's size.
    level: the highest quantile of its unknown best-scores the gallery measured with 10 probes beyond it;
    weight: the share of the evidence the target needs (10 unknown probes beyond the threshold) that the
    gallery holds (1: the gallery alone decides, and `prior` is None)."""

    value: float
    weight: float
    level: float
    prior: PriorThreshold | None


def gallery_weight(fpir: float, n_unknown: int) -> float:
    """How much a gallery's own measurement can say about a target FPIR: the expected number of its
    unknown probes beyond the threshold, over the 10 an empirical tail needs (capped at 1)."""
    return min(1.0, fpir * n_unknown / MIN_EXCEEDANCES)


def combine(
    own: float, unknown: np.ndarray, n_unknown: int, classes: int, fpir: float, prior: OpenSetPrior | None
) -> Combined:
    """The threshold for `fpir` from a gallery's own measurement and the encoder's prior, never read from a
    fitted tail past what either measured. Where the gallery holds the 10 exceedances the target needs,
    its own value (`own`) stands. Otherwise the gallery says where its impostor scores lie up to the highest
    quantile it measured (`level`: 1 - 10/n, at least the median) and the prior, measured at this size on
    classes the encoder never trained on, says how much closer to the top score (1) the target's threshold
    sits than that quantile: threshold = 1 - (1 - the gallery's quantile) x (1 - the prior's threshold) /
    (1 - the prior's same quantile). A share of the distance to 1, not a difference of scores: a gallery
    whose impostors sit higher than the prior's (more alike pictures) keeps its threshold below 1, and one
    whose impostors sit apart is not held to the prior's spread."""
    w = gallery_weight(fpir, n_unknown)
    if prior is None or w >= 1 or len(unknown) == 0:
        return Combined(own, 1.0, 1.0, None)
    level = max(0.5, 1 - MIN_EXCEEDANCES / max(n_unknown, 1))
    offset = prior.threshold_at_fpir(classes, fpir, above_level=level)
    if offset is None:
        return Combined(own, 1.0, 1.0, None)
    # never below the quantile the gallery measured itself: its own unknown probes pass that at 1 - level, a rate
    # above the target's. Only a prior whose queries score below its unedited probes (photos' edited copies) can
    # say "below" (a share over 1), and read at a size it never measured (a gallery of 500 from the prior's 200)
    # it said so too far: 3.9x the stated 1% on 500 LFW photos.
    value = 1.0 - (1.0 - float(np.quantile(unknown, level))) * min(1.0, offset.value)
    return Combined(value, w, level, offset)


def edited_threshold(edited: np.ndarray, fpir: float) -> float | None:
    """The threshold for `fpir` read from a gallery's edited copies of its own pictures (the unknown
    best-scores of engine.calibrate.edited_self_probes, sorted ascending) where they hold the 10 exceedances the
    target needs; None where they do not (the gallery's unedited scores and the prior decide, as combine says).
    Copies of one picture are alike, so they are read no further than that: a quantile below 10 exceedances
    read from a few dozen pictures' copies swings with which pictures they are (bench/copies_self_probes.py)."""
    if len(edited) == 0 or fpir * len(edited) < MIN_EXCEEDANCES:
        return None
    return threshold_at_far(edited, fpir)


def probes_itself_with_copies(prior: OpenSetPrior | None, n_unknown: int, fpir: float) -> bool:
    """Whether a gallery should probe itself with edited copies of its pictures: its encoder is queried by
    edited copies (its prior measured so) and the gallery's own unknown probes hold too few exceedances
    for `fpir` (the default target)."""
    return prior is not None and bool(prior.query_impostor) and fpir * n_unknown < MIN_EXCEEDANCES
