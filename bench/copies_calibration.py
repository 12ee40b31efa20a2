"""How a one-photo-a-class `photos` gallery could calibrate itself for edited-copy queries (issue 38): four
rules for the FPIR-1% threshold, on sets of pictures that are not evaluation splits, 200 random galleries a
size, each photo its own class; known/unknown queries are one edited copy (our 11 edits in turn) of gallery
photos and of as many others. A study of the rule, not of the encoder; prints the observed FPIR over the stated.

Rules: "shipped" (the gallery's unedited self-probes up to its measured quantile, the prior's edited-query
share of the distance to 1 beyond it: measures.prior.combine); "edited self-probes" (the gallery probes
itself with its own edited copies, all 21 edit types in turn, another seed, and the prior's share is read from
its edited-query scores alone); "unedited, scale" and "edited, scale" (the same two, but the prior's distance
beyond the quantile in units of the scores' L-scale instead of a share of the distance to 1).

Sets: clothing validation/ (the prior's own photos: a check of the rule), Omniglot background drawings,
SigComp2011 train writers' genuine signatures (many near-identical pictures of one writer), LFW A-D (photos
trained on LFW A-J unlabelled: a biased check, marked). Never clothing test/ or LFW K-Z.

    python bench/copies_calibration.py --data ../shared/data [--cap 800] [--model runs/photos_nodct]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simsearch.datasets import load_pictures
from simsearch.edits import ALL_EDITS, EDITS, copies_in_turn
from simsearch.embed import Embedder
from simsearch.measures.openset import OpenSetCurve, gallery_self_scores
from simsearch.measures.prior import MIN_EXCEEDANCES, OpenSetPrior, combine

SETS = {
    "clothing validation (the prior's)": ("clothing/clothing-small-256.zip", "validation/*"),
    "Omniglot background": ("omniglot/images_background.zip", None),
    "signatures train, genuine": ("signatures/sigcomp2011-processed.zip", "train/genuine/*"),
    "LFW A-D (trained on, unlabelled)": ("lfw/lfw-deepfunneled.zip", "[A-D]*"),
}
FPIR = 0.01


def l_scale(x: np.ndarray) -> float:
    """The second L-moment (half the mean absolute difference of two draws)."""
    x = np.sort(x)
    k, i = len(x), np.arange(len(x))
    return float(np.sum((2 * i - k + 1) * x) / (k * (k - 1)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--cap", type=int, default=800, help="photos drawn from each set (seeded)")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--model", default="photos", help="a copies encoder with a prior queried by edited copies")
    args = ap.parse_args()
    model = Embedder.load(args.model)
    prior = OpenSetPrior.from_meta(model.loaded.meta)
    assert prior is not None and prior.query_impostor
    qi, ui = prior.query_impostor, prior.impostor

    def at(size: int, f) -> float:  # log-linear between measured sizes, as the prior is read
        sizes = sorted(qi)
        lo = max([s for s in sizes if s <= size], default=sizes[0])
        hi = min([s for s in sizes if s >= size], default=sizes[-1])
        w = 0.0 if hi == lo else (np.log(size) - np.log(lo)) / (np.log(hi) - np.log(lo))
        return f(lo) + w * (f(hi) - f(lo))

    def t_query(size: int) -> float:
        q = qi[size]
        return float(np.nextafter(q[::-1][int(np.floor(FPIR * len(q)))], np.inf))

    print(
        "| set | photos | classes | shipped | gallery alone | the lower of the two | edited self-probes | "
        "unedited, scale | edited, scale |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (data, classes) in SETS.items():
        pics, _ = load_pictures(args.data / data, classes=classes, progress=False)
        rng = np.random.default_rng(0)
        pics = [pics[i] for i in np.sort(rng.choice(len(pics), size=min(args.cap, len(pics)), replace=False))]
        orig = model.embed_images(pics)
        queries = model.embed_images(copies_in_turn(pics, list(EDITS), 0))
        own_copies = model.embed_images(copies_in_turn(pics, list(ALL_EDITS), 11))
        n = len(pics)
        for size in (20, 100, 300):
            if 2 * size > n:
                continue
            level = max(0.5, 1 - MIN_EXCEEDANCES / size)
            z_plain = at(size, lambda s, lv=level: (t_query(s) - np.quantile(ui[s], lv)) / l_scale(ui[s]))
            z_edit = at(size, lambda s, lv=level: (t_query(s) - np.quantile(qi[s], lv)) / l_scale(qi[s]))
            share = at(size, lambda s, lv=level: (1 - t_query(s)) / (1 - np.quantile(qi[s], lv)))
            got: dict[str, list[int]] = {}
            rng = np.random.default_rng(1)
            for _ in range(args.runs):
                order = rng.permutation(n)
                gal, other = order[:size], order[size : 2 * size]
                unknown = (queries[other] @ orig[gal].T).max(1)
                curve = OpenSetCurve.fit(gallery_self_scores(orig[gal], np.arange(size)), size)
                s = own_copies[gal] @ orig[gal].T
                np.fill_diagonal(s, -np.inf)
                edited = s.max(1)
                own = curve.threshold_at_fpir(FPIR)
                shipped = combine(own, curve.unknown, curve.n_unknown, size, FPIR, prior).value
                rules = {
                    "shipped": shipped,
                    "gallery alone": own,
                    "the lower of the two": min(own, shipped),
                    "edited self-probes": 1 - (1 - np.quantile(edited, level)) * share,
                    "unedited, scale": np.quantile(curve.unknown, level) + z_plain * l_scale(curve.unknown),
                    "edited, scale": np.quantile(edited, level) + z_edit * l_scale(edited),
                }
                for k, t in rules.items():
                    acc = got.setdefault(k, [0, 0])
                    acc[0] += int(np.sum(unknown >= t))
                    acc[1] += len(unknown)
            cells = " | ".join(f"{a / b / FPIR:.2f}x" for a, b in got.values())
            print(f"| {name} | {n} | {size} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
