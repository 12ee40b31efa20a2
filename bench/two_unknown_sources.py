"""One gallery, two kinds of unknown probe (issue 38): can any threshold state its FPIR for both?

Lake's within-alphabet runs on Omniglot's evaluation alphabets, made open-set: 20 characters of one alphabet
by one drawer are the gallery; by a second drawer, 20 characters of the same alphabet the gallery lacks and
20 characters of other alphabets are two sets of unknown probes for the SAME gallery (alphabets with at
least 40 characters). Each gallery's threshold is the one identify uses (its own scores joined with the
encoder's prior). A threshold depends only on the gallery, so it cannot tell which kind of unknown will come:
if at every threshold the two FPIRs differ by more than 4x, no threshold puts both within 2x of a target.
Prints, per target: the observed FPIR of each source at the galleries' thresholds, and on the pooled probes
the threshold that comes closest to the target for both at once (a hindsight choice no rule can beat) and
how far from the target its worse source lies.

    python bench/two_unknown_sources.py --data ../shared/data [--runs 200] [--model characters]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simsearch.datasets import load_labelled
from simsearch.embed import Embedder
from simsearch.measures.openset import OpenSetCurve, gallery_self_scores
from simsearch.measures.prior import OpenSetPrior, combine

WAY = 20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--model", default="characters")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model = Embedder.load(args.model)
    prior = OpenSetPrior.from_meta(model.loaded.meta)
    found = load_labelled(args.data / "omniglot/images_evaluation.zip", model.preprocess, progress=False)
    emb = model.embed_arrays(found.images)
    drawers = np.array([int(re.search(r"_(\d+)\.png$", p).group(1)) for p in found.paths])  # type: ignore[union-attr]
    groups = np.asarray(found.groups)
    cell = {(int(c), int(d)): i for i, (c, d) in enumerate(zip(found.labels.tolist(), drawers.tolist(), strict=True))}
    alphabets = [a for a in np.unique(groups) if np.sum(groups == a) >= 2 * WAY]
    rng = np.random.default_rng(args.seed)
    targets = (0.01, 0.1)
    got: dict[tuple[float, str], list[int]] = {}
    pooled: dict[str, list[np.ndarray]] = {"same": [], "other": []}
    runs = 0
    while runs < args.runs:
        alpha = rng.choice(alphabets)
        members = rng.permutation(np.flatnonzero(groups == alpha))
        d1, d2 = rng.choice(np.unique(drawers), size=2, replace=False)
        sets = {
            "gallery": [cell.get((int(c), int(d1))) for c in members[:WAY]],
            "same": [cell.get((int(c), int(d2))) for c in members[WAY : 2 * WAY]],
            "other": [cell.get((int(c), int(d2))) for c in rng.choice(np.flatnonzero(groups != alpha), WAY, False)],
        }
        if any(r is None for rows in sets.values() for r in rows):
            continue
        runs += 1
        gal = emb[np.array(sets["gallery"])]
        curve = OpenSetCurve.fit(gallery_self_scores(gal, np.arange(WAY)), WAY)
        best = {k: (emb[np.array(sets[k])] @ gal.T).max(1) for k in ("same", "other")}
        for k, v in best.items():
            pooled[k].append(v)
        for p in targets:
            t = combine(curve.threshold_at_fpir(p), curve.unknown, curve.n_unknown, WAY, p, prior).value
            for k, v in best.items():
                acc = got.setdefault((p, k), [0, 0])
                acc[0] += int(np.sum(v >= t))
                acc[1] += len(v)
    same, other = np.concatenate(pooled["same"]), np.concatenate(pooled["other"])
    grid = np.unique(np.concatenate([same, other]))
    f_same = 1 - np.searchsorted(np.sort(same), grid, side="left") / len(same)
    f_other = 1 - np.searchsorted(np.sort(other), grid, side="left") / len(other)
    print(f"{args.model}: {runs} galleries of {WAY} characters, {len(same)} unknown probes of each kind")
    print(
        "| target FPIR | same alphabet: observed (ratio) | other alphabets: observed (ratio) | "
        "best single threshold (hindsight) | its FPIRs: same / other | worse source off by |"
    )
    print("|---|---|---|---|---|---|")
    for p in targets:
        with np.errstate(divide="ignore"):
            off = np.maximum(np.abs(np.log2(f_same / p)), np.abs(np.log2(f_other / p)))
        i = int(np.argmin(off))
        a, b = got[(p, "same")], got[(p, "other")]
        print(
            f"| {p:g} | {a[0] / a[1]:.4f} ({a[0] / a[1] / p:.2f}x) | {b[0] / b[1]:.4f} ({b[0] / b[1] / p:.2f}x) | "
            f"{grid[i]:.3f} | {f_same[i]:.4f} / {f_other[i]:.4f} | {2 ** off[i]:.2f}x |"
        )


if __name__ == "__main__":
    main()
