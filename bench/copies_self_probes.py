"""Can a one-photo-a-class gallery of a copies encoder measure its own edited-copy tail? (issue 38)

A copies encoder (`photos`) is queried by edited copies, but a gallery can only probe itself with its own
unedited photos, so its FPIR-1% threshold leans on the encoder's prior, measured on clothing photos; on other
kinds of photo the prior's tail shape is wrong (BENCHMARKS 17: 0.1x-0.3x on faces and drawings). Here the
gallery instead embeds k edited copies of each of its photos (edit types in turn, k = ceil(budget / N), at most
one of each edit type) and probes itself with them, each copy against the gallery less its own photo: an
estimate of the edited-copy impostor tail at (nearly) its own size. Where k x N probes hold the 10
exceedances the target needs the threshold is read from them alone; below that, their highest measured
quantile and the prior's share of the distance to 1 beyond it, read from the prior's edited-copy scores.

Sets that are not evaluation splits (as bench/copies_calibration.py): clothing validation (the prior's own
photos), Omniglot background, SigComp2011 train genuine signatures, LFW A-D. 200 galleries a size; known and
unknown queries: one edited copy of gallery photos and of as many others, our 11 edits in turn ("11") or all
21 ("21"). Prints observed FPIR over the stated, and the FNIR against the hindsight FNIR at the same FPIR.

    python bench/copies_self_probes.py --data ../shared/data [--cap 600] [--budget 1000] [--cache runs/copies_study]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from copies_calibration import SETS  # the same four sets, none an evaluation split

from simsearch.datasets import load_pictures
from simsearch.edits import ALL_EDITS, EDITS, copies_in_turn
from simsearch.embed import Embedder
from simsearch.measures.openset import OpenSetCurve, gallery_self_scores, predictive_target
from simsearch.measures.prior import MIN_EXCEEDANCES, OpenSetPrior, combine, edited_threshold


def embeddings(model: Embedder, data: Path, classes: str | None, cap: int, cache: Path | None) -> dict[str, np.ndarray]:
    """orig (N, D); q11, q21 (N, D): one edited copy each, our 11 / all 21 edits in turn (seed 0);
    own (21, N, D): copy e of photo i is edit (i + e) mod 21 (seed 11 + e)."""
    key = cache / f"{data.stem}-{(classes or 'all').replace('/', '_').replace('*', '')}-{cap}.npz" if cache else None
    if key is not None and key.exists():
        with np.load(key) as z:
            return {k: z[k] for k in z.files}
    pics, _ = load_pictures(data, classes=classes, progress=False)
    rng = np.random.default_rng(0)
    pics = [pics[i] for i in np.sort(rng.choice(len(pics), size=min(cap, len(pics)), replace=False))]
    names = list(ALL_EDITS)
    out = {
        "orig": model.embed_images(pics),
        "q11": model.embed_images(copies_in_turn(pics, list(EDITS), 0)),
        "q21": model.embed_images(copies_in_turn(pics, names, 0)),
        "own": np.stack(
            [model.embed_images(copies_in_turn(pics, names[e:] + names[:e], 11 + e)) for e in range(len(names))]
        ),
    }
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        np.savez(key, **out)
    return out


def self_probe_threshold(scores: np.ndarray, size: int, fpir: float, prior: OpenSetPrior) -> float:
    """The rule under study: the edited self-probes' own quantile where they hold 10 exceedances, else their
    highest measured quantile and the prior's edited-copy share of the distance to 1 beyond it."""
    n = len(scores)
    direct = edited_threshold(np.sort(scores), fpir)  # what a build reads where the copies hold 10 exceedances
    if direct is not None:
        return direct
    level = max(0.5, 1 - MIN_EXCEEDANCES / n)
    pt = prior.threshold_at_fpir(size, fpir, above_level=level, level_of_queries=True)
    if pt is None:  # a target below what the prior measured: no lower than its own strictest share
        pt = prior.threshold_at_fpir(size, MIN_EXCEEDANCES / min(prior.n_impostor.values()), level, True)
        assert pt is not None
    return 1.0 - (1.0 - float(np.quantile(scores, level))) * min(1.0, pt.value)


def predictive_threshold(
    scores: np.ndarray, size: int, fpir: float, prior: OpenSetPrior, draws: int = 100, seed: int = 0
) -> float:
    """self_probe_threshold made predictive: its probes come in clusters (the k copies of one photo), so the
    threshold read from N photos is uncertain; the target is lowered until the expected exceedance rate,
    over thresholds read from the photos drawn again with replacement (a cluster bootstrap), is the target.
    scores: (k, N) the best score of copy e of photo i."""
    rng = np.random.default_rng(seed)
    flat = np.sort(scores.ravel())
    picks = rng.integers(0, scores.shape[1], size=(draws, scores.shape[1]))

    def expected(target: float) -> float:
        ts = [self_probe_threshold(scores[:, row].ravel(), size, target, prior) for row in picks]
        return float(np.mean([1 - np.searchsorted(flat, t, side="left") / len(flat) for t in ts]))

    return self_probe_threshold(flat, size, predictive_target(expected, fpir, lowest=fpir / 4, steps=8), prior)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--cap", type=int, default=600, help="photos drawn from each set (seeded)")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--budget", type=int, default=1000, help="edited self-probes a gallery embeds, at most")
    ap.add_argument("--fpir", type=float, nargs="+", default=[0.01, 0.1])
    ap.add_argument("--model", default="photos")
    ap.add_argument(
        "--probe-edits", choices=("all", "ours"), default="all", help="edit types of the self-probes: 21 or our 11"
    )
    ap.add_argument("--predictive", action="store_true", help="also the cluster-bootstrap rule (slower)")
    ap.add_argument("--only", default=None, help="sets whose name starts with this")
    ap.add_argument("--cache", type=Path, default=None, help="keep each set's embeddings here (.npz)")
    args = ap.parse_args()
    model = Embedder.load(args.model)
    prior = OpenSetPrior.from_meta(model.loaded.meta)
    assert prior is not None and prior.query_impostor
    print(
        "| set | photos | classes | queries | FPIR | self-probes | shipped: FPIR ratio (FNIR / hindsight) | "
        "self-probes: FPIR ratio (FNIR / hindsight) |" + (" self-probes, predictive |" if args.predictive else "")
    )
    print("|---|---|---|---|---|---|---|---|" + ("---|" if args.predictive else ""))
    for name, (data, classes) in SETS.items():
        if args.only and not name.startswith(args.only):
            continue
        e = embeddings(model, args.data / data, classes, args.cap, args.cache)
        orig, own = e["orig"], e["own"]
        n = len(orig)
        for size in (20, 100, 300):
            if 2 * size > n:
                continue
            types = len(EDITS) if args.probe_edits == "ours" else own.shape[0]
            k = min(types, math.ceil(args.budget / size))
            # copy e of photo i is edit (i + e) mod 21; with --probe-edits ours, only those of our 11 edits
            usable = np.array([[e for e in range(own.shape[0]) if (i + e) % own.shape[0] < types] for i in range(n)])
            for qname in ("q11", "q21"):
                queries = e[qname]
                for fpir in args.fpir:
                    rng = np.random.default_rng(1)
                    acc = {"shipped": [0, 0], "self": [0, 0], **({"predictive": [0, 0]} if args.predictive else {})}
                    known_all, unknown_all = [], []
                    for _ in range(args.runs):
                        order = rng.permutation(n)
                        gal, other = order[:size], order[size : 2 * size]
                        unknown = (queries[other] @ orig[gal].T).max(1)
                        s = queries[gal] @ orig[gal].T
                        known = np.where(s.argmax(1) == np.arange(size), np.diag(s), -np.inf)
                        curve = OpenSetCurve.fit(gallery_self_scores(orig[gal], np.arange(size)), size)
                        shipped = combine(
                            curve.threshold_at_fpir(fpir), curve.unknown, curve.n_unknown, size, fpir, prior
                        ).value
                        picked = own[usable[gal, :k].T, gal[None, :]]  # (k, size, D)
                        probes = picked @ orig[gal].T  # (k, size, size)
                        probes[:, np.arange(size), np.arange(size)] = -np.inf
                        mine = self_probe_threshold(probes.max(2).ravel(), size - 1, fpir, prior)
                        rules = {"shipped": shipped, "self": mine}
                        if args.predictive:
                            rules["predictive"] = predictive_threshold(probes.max(2), size - 1, fpir, prior)
                        for rule, t in rules.items():
                            acc[rule][0] += int(np.sum(unknown >= t))
                            acc[rule][1] += int(np.sum(known >= t))
                        known_all.append(known)
                        unknown_all.append(unknown)
                    kn, un = np.concatenate(known_all), np.concatenate(unknown_all)
                    desc = np.sort(un)[::-1]
                    cells = []
                    for fp, tp in acc.values():
                        obs = fp / len(un)
                        t = float(np.nextafter(desc[min(int(np.floor(obs * len(desc))), len(desc) - 1)], np.inf))
                        cells.append(f"{obs / fpir:.2f}x ({1 - tp / len(kn):.3f} / {1 - np.mean(kn >= t):.3f})")
                    print(
                        f"| {name} | {n} | {size} | {qname[1:]} | {fpir:g} | {k} x {size} | {' | '.join(cells)} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
