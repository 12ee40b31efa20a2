"""The identification decision's threshold: the operating point a user asks for (a target FPIR, a target
FNIR, a threshold, or closed-set) and the threshold in force, with where it came from.

Order of sources: an explicit threshold; else a curve fitted by `calibrate` on labelled probes against this
gallery; else the gallery's own curve, measured on itself at its last build or sync; else the encoder's
open-set prior at the gallery's size; else the encoder's pair-level threshold from its validation classes;
else 0.5. A curve turns a target FPIR or FNIR into a threshold for this gallery at its size. Where a curve
measured too few unknown probes to read the target FPIR (a gallery of one image a class, or of a few
classes), its value is joined with the encoder's prior (measured at that size on classes its training never
saw), weighted by what the gallery can say (source "gallery+prior"); a copies encoder's gallery reads it from
edited copies of its own pictures where they say enough (source "gallery-copies"). A threshold no score can reach (at or
above 1) carries a warning that names what can be asked instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from index.store import Manifest
from simsearch.errors import ConfigError, DataError, literal
from simsearch.measures.openset import OpenSetCurve
from simsearch.measures.prior import DEFAULT_FPIR, OpenSetPrior, combine, edited_threshold

__all__ = [
    "DEFAULT_FPIR",
    "DEFAULT_THRESHOLD",
    "OperatingPoint",
    "Threshold",
    "resolve_pair_threshold",
    "resolve_threshold",
    "stored_curves",
]

DEFAULT_THRESHOLD = 0.5
# Where no curve says how rare a score is among impostors: an acceptance within this much of the
# threshold is called uncertain.
UNCERTAIN_BAND = 0.05
# No cosine score is above this: a threshold at or above it accepts nothing.
MAX_SCORE = 1.0


@dataclass(frozen=True)
class OperatingPoint:
    """What the user asks identify for: at most one of a threshold, a target FPIR (the share of probes of
    absent classes accepted), a target FNIR (the share of known probes not given their class), or
    closed-set (always the nearest class). None of them: the calibrated target, else FPIR 1%."""

    threshold: float | None = None
    fpir: float | None = None
    fnir: float | None = None
    closed_set: bool = False

    def __post_init__(self) -> None:
        given = [self.threshold is not None, self.fpir is not None, self.fnir is not None, self.closed_set]
        if sum(given) > 1:
            raise ConfigError("give at most one of {fields}", ["threshold", "fpir", "fnir", "closed_set"])
        if self.threshold is not None and not math.isfinite(self.threshold):
            raise ConfigError(
                "{fields} " + f"{self.threshold} is not a number (a cosine score, in [-1, 1])", ["threshold"]
            )
        for name, rate in (("fpir", self.fpir), ("fnir", self.fnir)):
            if rate is not None and not (math.isfinite(rate) and 0.0 < rate < 1.0):
                raise ConfigError(
                    "{fields} must be a rate between 0 and 1 (for example 0.01), " + f"not {rate}", [name]
                )


@dataclass(frozen=True)
class Threshold:
    """The threshold in force: accept the nearest class when its best score >= value.

    source: explicit | calibrated | gallery | encoder | default | closed-set. operating_point: what it
    was chosen for ("FPIR 0.01", "FNIR 0.05", "pair FAR 0.01", ...). fpir / fnir: the rates expected at
    it on this gallery (the target, or read off the curve; None where nothing was measured).
    calibrated_on: what the curve or threshold was measured on.
    confident: the score from which an acceptance is called sure rather than uncertain. With a curve, the
    threshold for a tenth of the FPIR in force (an answer that a ten times stricter setting would turn to
    unknown is one an impostor reaches now and then), capped at the median score of the gallery's correct
    matches; without a curve, the threshold plus UNCERTAIN_BAND.
    """

    value: float
    source: str
    operating_point: str
    fpir: float | None
    fnir: float | None
    calibrated_on: str
    confident: float = math.nan
    warning: str | None = None  # the target cannot be reached on this gallery (said once, with what can)

    def accepts(self, score: float) -> bool:
        return score >= self.value

    def status(self, score: float, runner_up_score: float | None) -> tuple[str, str | None]:
        """("identified" | "uncertain" | "unknown", why uncertain). Uncertain: accepted, but the score is
        below `confident`, or the runner-up class scores high enough to be accepted too (for closed-set,
        as high as `confident`)."""
        if not self.accepts(score):
            return "unknown", None
        floor = self.value if math.isfinite(self.value) else self.confident
        if runner_up_score is not None and math.isfinite(floor) and runner_up_score >= floor:
            return "uncertain", "another class matches almost as well"
        if math.isfinite(self.confident) and score < self.confident:
            return "uncertain", "the score is close to the threshold"
        return "identified", None

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": round(self.value, 6) if math.isfinite(self.value) else None,
            "threshold_source": self.source,
            "operating_point": self.operating_point,
            "fpir": None if self.fpir is None else round(self.fpir, 6),
            "fnir": None if self.fnir is None else round(self.fnir, 6),
            "calibrated_on": self.calibrated_on,
            "confident_from": round(self.confident, 6) if math.isfinite(self.confident) else None,
            **({"warning": self.warning} if self.warning else {}),
        }

    def describe(self) -> str:
        """One line: the threshold, its source and what it means."""
        if self.source == "closed-set":
            return "closed-set: always the nearest class"
        rates = []
        if self.fpir is not None:
            rates.append(f"FPIR {self.fpir:.3g}")
        if self.fnir is not None:
            rates.append(f"FNIR {self.fnir:.3g}")
        means = f" ({', '.join(rates)} expected here)" if rates else ""
        return f"{self.value:.4f} [{self.source}: {self.operating_point}; {self.calibrated_on}]{means}"


def stored_curves(manifest: Manifest) -> list[tuple[str, dict[str, Any], OpenSetCurve]]:
    """The index's usable curves, best first: ("calibrated", record, curve), ("gallery", record, curve).
    A malformed record is passed over (index check reports it)."""
    out = []
    for source, rec in (("calibrated", manifest.calibration), ("gallery", manifest.gallery_calibration)):
        if isinstance(rec, dict) and isinstance(rec.get("curve"), dict) and not rec.get("stale"):
            try:
                out.append((source, rec, OpenSetCurve.from_dict(rec["curve"])))
            except (KeyError, TypeError, ValueError):
                continue
    return out


def _on(rec: dict[str, Any]) -> str:
    return str(rec.get("measured_on", "unrecorded data"))


def resolve_threshold(
    manifest: Manifest,
    encoder_meta: dict[str, Any],
    point: OperatingPoint | None = None,
    classes: int | None = None,
) -> Threshold:
    """The threshold identify uses on this index for `point` (see the module's order of sources), with
    the score from which an acceptance is sure (Threshold.confident). `classes`: the gallery's class
    count, for the encoder's prior when no curve says it.
    Raises DataError when a target FPIR or FNIR is asked for and nothing can give it."""
    curves = stored_curves(manifest)
    thr = _resolve(manifest, encoder_meta, point or OperatingPoint(), curves, classes)
    thr = replace(thr, confident=_confident(thr, curves))
    if thr.warning is None and thr.source != "explicit" and thr.value >= MAX_SCORE:
        thr = replace(thr, warning=_unreachable(thr, curves))
    return thr


def _unreachable(thr: Threshold, curves: list[tuple[str, dict[str, Any], OpenSetCurve]]) -> str:
    """One line: the target asks for a threshold no score reaches, and what can be asked instead."""
    reach = ""
    if curves:
        curve = curves[0][2]
        lowest = 1 / max(curve.n_unknown, 1)
        top = float(curve.unknown[-1]) if len(curve.unknown) else math.nan
        reach = (
            f"; this gallery measures FPIR down to {lowest:.2g} (threshold {top:.3f}): ask --fpir {lowest:.2g} or "
            "give --threshold, or enrol more images a class"
        )
    return (
        f"the threshold for {thr.operating_point} is {thr.value:.3f}, above any cosine score (1.0): every answer "
        f"will be unknown{reach}"
    )


def _from_curve(
    source: str,
    rec: dict[str, Any],
    curve: OpenSetCurve,
    fpir: float,
    prior: OpenSetPrior | None,
) -> Threshold:
    """The threshold for a target FPIR from a stored curve, joined with the encoder's prior where the
    gallery measured too few unknown probes to read that FPIR (measures.prior.combine). A copies encoder's
    gallery that probed itself with edited copies of its pictures reads the target from those instead where
    they hold the 10 exceedances it needs (source "<source>-copies"; measures.prior.edited_threshold)."""
    edited = _edited_scores(rec) if prior is not None and prior.query_impostor else None
    t_edited = edited_threshold(edited, fpir) if edited is not None else None
    if edited is not None and t_edited is not None:
        t, e = t_edited, rec["edited"]
        on = (
            f"{len(edited):,} edited copies of {e.get('pictures', '?')} of the gallery's own pictures "
            f"({e.get('edits', 'edited')}), each against the other classes"
        )
        return Threshold(t, f"{source}-copies", f"FPIR {fpir:g}", fpir, curve.fnir(t), on)
    own = curve.threshold_at_fpir(fpir)
    got = combine(own, curve.unknown, curve.n_unknown, curve.classes, fpir, prior)
    if got.prior is None:
        return Threshold(own, source, f"FPIR {fpir:g}", fpir, curve.fnir(own), _on(rec))
    assert prior is not None
    t = got.value
    on = (
        f"{_on(rec)} up to its {100 * got.level:.0f}th percentile of unknown scores; above it "
        f"{got.prior.note}: {prior.described}"
    )
    return Threshold(t, f"{source}+prior", f"FPIR {fpir:g}", fpir, curve.fnir(t), on)


def _edited_scores(rec: dict[str, Any]) -> np.ndarray | None:
    """The sorted best-scores of a gallery's edited copies of its own pictures (engine.calibrate.
    edited_self_probes), or None when the record has none (or a malformed one)."""
    e = rec.get("edited")
    if not isinstance(e, dict) or not isinstance(e.get("scores"), list):
        return None
    try:
        v = np.sort(np.asarray(e["scores"], dtype=np.float64))
    except (TypeError, ValueError):
        return None
    return v if v.ndim == 1 and len(v) and np.all(np.isfinite(v)) else None


def _confident(thr: Threshold, curves: list[tuple[str, dict[str, Any], OpenSetCurve]]) -> float:
    """The sure point: the threshold for a tenth of the FPIR, but never above the median score of the
    gallery's correct matches (a small gallery's fitted tail can put a tenth of the FPIR beyond any real
    score, and then every answer would be uncertain), nor above halfway to a perfect score without them."""
    if curves and thr.fpir is not None and thr.fpir > 0:
        curve = curves[0][2]
        try:
            strict = curve.threshold_at_fpir(max(thr.fpir / 10, 1e-9))
        except ValueError:
            strict = math.nan
        if math.isfinite(strict):
            right = curve.known[curve.correct]
            base = thr.value if math.isfinite(thr.value) else float(np.min(curve.unknown))
            ceiling = float(np.median(right)) if len(right) else (base + 1.0) / 2
            return max(min(strict, ceiling), thr.value)
    return thr.value + UNCERTAIN_BAND if math.isfinite(thr.value) else math.nan


def _resolve(
    manifest: Manifest,
    encoder_meta: dict[str, Any],
    point: OperatingPoint,
    curves: list[tuple[str, dict[str, Any], OpenSetCurve]],
    classes: int | None = None,
) -> Threshold:
    if point.closed_set:
        fnir = next((c.fnir(-math.inf) for _, _, c in curves if c.n_known), None)
        return Threshold(-math.inf, "closed-set", "closed-set", 1.0, fnir, "nothing: every answer is a class")
    if point.threshold is not None:
        if curves:
            source, rec, curve = curves[0]
            t = point.threshold
            return Threshold(t, "explicit", f"threshold {t:g}", curve.fpir(t), curve.fnir(t), f"rates from {_on(rec)}")
        return Threshold(point.threshold, "explicit", f"threshold {point.threshold:g}", None, None, "given")
    fpir, fnir = point.fpir, point.fnir
    calibrated = manifest.calibration if isinstance(manifest.calibration, dict) else {}
    if fpir is None and fnir is None:
        target = calibrated.get("target") if "curve" in calibrated else None
        if isinstance(target, dict) and target.get("fnir") is not None:
            fnir = float(target["fnir"])
        elif isinstance(target, dict) and target.get("fpir") is not None:
            fpir = float(target["fpir"])
        elif manifest.threshold is not None and "curve" not in calibrated:
            far = calibrated.get("far")
            if not isinstance(manifest.threshold, (int, float)) or not math.isfinite(manifest.threshold):
                raise DataError(
                    f"the index's stored threshold {manifest.threshold!r} is not a number; run calibrate again"
                )
            return Threshold(
                float(manifest.threshold),
                "calibrated",
                f"pair FAR {far:g}" if isinstance(far, (int, float)) else "pair FAR",
                None,
                None,
                f"pairs of {calibrated.get('data', 'labelled images')} (before open-set calibration)",
            )
        else:
            fpir = DEFAULT_FPIR
    reasons = []
    prior = OpenSetPrior.from_meta(encoder_meta)
    for source, rec, curve in curves:
        try:
            if fnir is not None:
                t = curve.threshold_at_fnir(fnir)
                return Threshold(t, source, f"FNIR {fnir:g}", curve.fpir(t), fnir, _on(rec))
            assert fpir is not None
            return _from_curve(source, rec, curve, fpir, prior)
        except ValueError as err:
            reasons.append(f"{source}: {err}")
    if fpir is not None and prior is not None and classes:  # too small to measure itself: the prior alone
        pt = prior.threshold_at_fpir(classes, fpir)
        if pt is not None:
            return Threshold(pt.value, "prior", f"FPIR {fpir:g}", pt.fpir, None, f"{pt.note}: {prior.described}")
    if point.fpir is not None or point.fnir is not None:
        why = "; ".join(reasons) or (
            "the gallery is too small to measure itself (it needs 5 labelled images in 2 classes) and no "
            "calibration was run"
        )
        raise DataError(
            f"cannot fit a threshold for that target on this index ({why}); give --threshold or run calibrate"
        )
    pair_t = encoder_meta.get("threshold")
    if pair_t is not None:
        return Threshold(
            float(pair_t),
            "encoder",
            "pair FAR 0.01",
            None,
            None,
            "pairs of the encoder's validation classes, not this gallery",
        )
    return Threshold(DEFAULT_THRESHOLD, "default", "none", None, None, "nothing")


def resolve_pair_threshold(
    manifest: Manifest | None, encoder_meta: dict[str, Any], override: float | None = None
) -> tuple[float, str]:
    """(threshold, source) for 1:1 verification: explicit > calibrate's pairs at FAR 1% > the gallery's own
    pairs at FAR 1% > an old calibrated pair threshold > the encoder's > 0.5. Pairs, not best-of-gallery
    scores: verify compares two images. `manifest` None: no index, only the encoder's."""
    if override is not None:
        if not math.isfinite(override):
            raise ConfigError(
                f"{{fields}} {literal(override)} is not a number (a cosine score, in [-1, 1])", ["threshold"]
            )
        return override, "explicit"
    if manifest is not None:
        for source, rec in (("calibrated", manifest.calibration), ("gallery", manifest.gallery_calibration)):
            t = rec.get("pair_threshold") if isinstance(rec, dict) else None
            if isinstance(t, (int, float)) and math.isfinite(t):
                return float(t), f"{source} (pair FAR 0.01)"
        legacy = isinstance(manifest.calibration, dict) and "curve" not in manifest.calibration
        if manifest.threshold is not None and legacy:
            return float(manifest.threshold), "calibrated"
    t = encoder_meta.get("threshold")
    return (float(t), "encoder (pair FAR 0.01)") if t is not None else (DEFAULT_THRESHOLD, "default")
