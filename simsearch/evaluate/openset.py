"""Open-set evaluation runs: galleries drawn from a labelled set (random, within one alphabet, copies),
each calibrated on itself as an index is at build and then asked its known and unknown probes. The
measures themselves (best-of-gallery scores, the FPIR/FNIR curve) are in simsearch.measures.openset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from simsearch.measures.openset import OpenSetCurve, ProbeScores, gallery_self_scores, open_set_rates, probe_scores
from simsearch.measures.prior import (
    DEFAULT_FPIR,
    OpenSetPrior,
    combine,
    edited_threshold,
    probes_itself_with_copies,
)

__all__ = ["Run", "copy_runs", "measure_runs", "random_runs", "within_alphabet_runs"]


@dataclass(frozen=True)
class Run:
    """One open-set trial: rows of the gallery, of probes of gallery classes and of probes of other classes."""

    gallery: np.ndarray
    known: np.ndarray
    unknown: np.ndarray


def random_runs(labels: np.ndarray, classes: int, shot: int, runs: int, seed: int = 0) -> list[Run]:
    """Galleries of `classes` random classes with `shot` images each; every other image of a gallery class
    (up to 5 a class) probes as known, one image of each of up to `classes` other classes as unknown."""
    rng = np.random.default_rng(seed)
    names, counts = np.unique(labels, return_counts=True)
    eligible = names[counts >= shot]
    if len(eligible) < classes + 1:
        raise ValueError(
            f"a gallery of {classes} classes with {shot} image(s) each, and unknown classes beside it, needs more "
            f"than {classes} classes with {shot} image(s); this set has {len(eligible)}"
        )
    by_class = {c: np.flatnonzero(labels == c) for c in names.tolist()}
    out = []
    for _ in range(runs):
        chosen = rng.choice(eligible, size=classes, replace=False)
        gallery, known = [], []
        for c in chosen.tolist():
            rows = rng.permutation(by_class[c])
            gallery.extend(rows[:shot].tolist())
            known.extend(rows[shot : shot + 5].tolist())
        others = np.setdiff1d(names, chosen)
        picked = rng.choice(others, size=min(classes, len(others)), replace=False)
        unknown = [int(rng.choice(by_class[c])) for c in picked.tolist()]
        out.append(Run(np.array(gallery), np.array(known, dtype=int), np.array(unknown, dtype=int)))
    return out


def within_alphabet_runs(
    labels: np.ndarray,
    groups: list[str],
    drawers: np.ndarray,
    runs: int,
    seed: int = 0,
    way: int = 20,
    unknown_from: str = "other",
) -> list[Run]:
    """Lake et al.'s one-shot protocol on Omniglot, made open-set: `way` characters of one alphabet drawn by
    one drawer are the gallery, the same characters by another drawer are the known probes, and characters
    the gallery lacks, by that second drawer, are the unknown probes: `way` of other alphabets
    (unknown_from="other"), or up to `way` more of the same alphabet ("same"; alphabets with more than
    `way` characters only).

    labels (N,) class per image; groups[c] the alphabet of class c; drawers (N,) the drawer of each image.
    """
    rng = np.random.default_rng(seed)
    groups_arr = np.asarray(groups)
    cell = {(int(c), int(d)): i for i, (c, d) in enumerate(zip(labels.tolist(), drawers.tolist(), strict=True))}
    all_drawers = np.unique(drawers)
    least = way + 5 if unknown_from == "same" else way
    alphabets = [a for a in np.unique(groups_arr) if np.sum(groups_arr == a) >= least]
    if not alphabets:
        raise ValueError(f"no alphabet has {least} characters")
    out: list[Run] = []
    while len(out) < runs:
        alpha = rng.choice(alphabets)
        members = rng.permutation(np.flatnonzero(groups_arr == alpha))
        chars = members[:way]
        d1, d2 = rng.choice(all_drawers, size=2, replace=False)
        if unknown_from == "same":
            foreign = members[way : 2 * way]
        else:
            foreign = rng.choice(np.flatnonzero(groups_arr != alpha), size=way, replace=False)
        rows = [[cell.get((int(c), int(d))) for c in cs] for cs, d in ((chars, d1), (chars, d2), (foreign, d2))]
        if any(r is None for part in rows for r in part):
            continue  # a drawing missing from this set: draw the run again
        out.append(Run(*(np.array(part, dtype=int) for part in rows)))
    return out


def measure_runs(
    emb: np.ndarray,
    labels: np.ndarray,
    runs: list[Run],
    fpirs: tuple[float, ...] = (0.01, 0.1),
    encoder_threshold: float | None = None,
    prior: OpenSetPrior | None = None,
    edited: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Each run's gallery calibrated on itself (as an index is at build, joined with the encoder's open-set
    prior where the gallery measured too few unknown probes, as identify does), then its probes answered.
    With a prior, "gallery alone" rows show what the gallery's own fit would have done without it.
    `edited` (a copies encoder): the best-scores of a gallery's edited copies of its own pictures against its
    other pictures, given the gallery's rows, as a build probes itself (engine.calibrate.edited_self_probes);
    "without edited copies" rows show the decision without them.

    Returns the pooled figures: closed-set (nearest-class) accuracy; FNIR at FPIR 1% and 10% at thresholds
    chosen with hindsight on the pooled unknown probes (what the encoder can do); and for each target
    FPIR, the mean threshold the galleries fitted on themselves, the FPIR stated and observed on the
    unknown probes, the FNIR, and the decision accuracy (known probes given their class and unknown
    probes rejected, over all probes); the same for the encoder's own pair-level threshold.
    """
    policies: dict[str, dict[str, Any]] = {}
    known_all, correct_all, unknown_all = [], [], []
    classes = 0
    for run in runs:
        g_lab = labels[run.gallery]
        classes = len(np.unique(g_lab))
        curve = OpenSetCurve.fit(gallery_self_scores(emb[run.gallery], g_lab), classes)
        probes = np.concatenate([run.known, run.unknown])
        got = probe_scores(emb[probes], labels[probes], emb[run.gallery], g_lab, leave_class_out=False)
        known_all.append(got.known)
        correct_all.append(got.correct)
        unknown_all.append(got.unknown)
        own = {p: curve.threshold_at_fpir(p) for p in fpirs}
        joined = {p: combine(own[p], curve.unknown, curve.n_unknown, classes, p, prior).value for p in fpirs}
        decided = dict(joined)  # as identify decides: from the gallery's edited copies where they can say
        if edited is not None and probes_itself_with_copies(prior, curve.n_unknown, DEFAULT_FPIR):
            copies = np.sort(edited(run.gallery))
            for p in fpirs:
                t = edited_threshold(copies, p)
                if t is not None:
                    decided[p] = t
        chosen: dict[str, tuple[float, float | None]] = {f"gallery-fitted, FPIR {p:g}": (decided[p], p) for p in fpirs}
        if edited is not None:
            chosen.update({f"without edited copies, FPIR {p:g}": (joined[p], p) for p in fpirs})
        if prior is not None:
            chosen.update({f"gallery alone (no prior), FPIR {p:g}": (own[p], p) for p in fpirs})
        if encoder_threshold is not None:
            chosen["encoder's threshold (pair FAR 0.01)"] = (encoder_threshold, None)
        for name, (t, stated) in chosen.items():
            acc = policies.setdefault(name, {"stated_fpir": stated, "thresholds": [], "fp": 0, "tp": 0})
            acc["thresholds"].append(t)
            acc["fp"] += int(np.sum(got.unknown >= t))
            acc["tp"] += int(np.sum(got.correct & (got.known >= t)))
    known, correct, unknown = (np.concatenate(x) for x in (known_all, correct_all, unknown_all))
    pooled = ProbeScores(known, correct, unknown, float(classes))
    oracle = {}
    for p in fpirs:
        t = float(np.nextafter(np.sort(unknown)[::-1][int(np.floor(p * len(unknown)))], np.inf))
        oracle[f"fnir_at_fpir_{p:g}"] = open_set_rates(pooled, t)[1]
    grid = np.unique(np.quantile(unknown, np.linspace(0, 1, 80)))
    det: dict[str, list[float]] = {"fpir": [], "fnir": []}
    for t in grid:
        f, n = open_set_rates(pooled, float(t))
        det["fpir"].append(round(float(f or 0.0), 6))
        det["fnir"].append(round(float(n or 0.0), 6))
    rows = []
    desc = np.sort(unknown)[::-1]
    for name, acc in policies.items():
        fpir = acc["fp"] / len(unknown)
        fnir = 1 - acc["tp"] / len(known)
        # hindsight: the threshold that gives this same observed FPIR on the pooled probes, and its FNIR
        hind_t = float(np.nextafter(desc[min(int(np.floor(fpir * len(desc))), len(desc) - 1)], np.inf))
        rows.append(
            {
                "threshold": name,
                "mean_threshold": float(np.mean(acc["thresholds"])),
                "stated_fpir": acc["stated_fpir"],
                "observed_fpir": fpir,
                "ratio": fpir / acc["stated_fpir"] if acc["stated_fpir"] else None,
                "fnir": fnir,
                "hindsight_fnir": open_set_rates(pooled, hind_t)[1],
                "decision_accuracy": (acc["tp"] + len(unknown) - acc["fp"]) / (len(known) + len(unknown)),
            }
        )
    return {
        "gallery_classes": classes,
        "gallery_images": int(np.mean([len(r.gallery) for r in runs])),
        "runs": len(runs),
        "known_probes": len(known),
        "unknown_probes": len(unknown),
        "nearest_class_accuracy": float(np.mean(correct)),
        **oracle,
        "thresholds": rows,
        "det": det,
    }


def copy_runs(originals: int, classes: int, runs: int, seed: int = 0) -> list[Run]:
    """Open-set reverse image search: rows 0..originals-1 are photos, row originals+i an edited copy of
    photo i. Each run's gallery is `classes` random photos (each its own class); the copies of those are
    the known probes, copies of as many other photos the unknown ones."""
    if originals < classes + 1:
        raise ValueError(f"a gallery of {classes} photos and unknown ones beside it needs more than {classes} photos")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(runs):
        order = rng.permutation(originals)
        gallery, others = order[:classes], order[classes : 2 * classes]
        out.append(Run(gallery, originals + gallery, originals + others))
    return out
