"""Can a hash's own signal lift `photos` on the two AugLy edits where pHash, dHash and PDQ beat it
(pixelization and fading; issue 37)? A study on training photos only: a gallery of clothing train/ plus LFW
people A-D (both in photos' training), 250 of them edited with each of the 21 edit types (5,250 copies: one
per original and type), recall@1 per edit type for:

- "photos": the embedding alone (`--model`: the study that chose photos' DCT part ran on the one before it,
  `runs/photos_nodct`, made by `git show 59d37e3:simsearch/pretrained/photos/...`);
- "DCT alone": pHash's measurement kept as numbers, as encoder.DctPart computes it from the encoder's input
  (grayscale, 32x32 box-filtered, 2-D DCT, the --keep x --keep lowest frequencies less the constant one), each
  coefficient divided by its spread over the gallery (whitened), unit length;
- "mix a": the cosine (1 - a) x photos' + a x the DCT part's (what a third part of the embedding would give);
- "re-rank tau": photos' top 10, a candidate whose DCT cosine is at least tau put first (a second stage);
- "mix 0.05, re-rank top k": the DCT part at 5% (as shipped), then search's second stage (measures.structure: over
  the top k, the candidates whose DCT cosine is at least 0.95 first, each group in cosine order; k = 100 ships).

    python bench/photos_hash_signal.py --data ../shared/data --model runs/photos_nodct --keep 12 --mix 0.03,0.05,0.1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simsearch.datasets import load_pictures
from simsearch.edits import ALL_EDITS, apply_edit
from simsearch.embed import Embedder
from simsearch.encoder import DCT_SIDE, DctPart
from simsearch.images import to_array
from simsearch.measures.structure import STRUCTURE_POOL, STRUCTURE_SURE, StructurePart
from simsearch.preprocess import Preprocess


def dct(pictures: list[Image.Image], pre: Preprocess) -> np.ndarray:
    """(N, 32 x 32 - 1) DCT coefficients of each picture as the encoder's DCT part takes it (encoder.DctPart at
    the encoder's input, every frequency kept: `lowest` picks the part's), before the part's spread."""
    part = DctPart(DCT_SIDE)
    out = []
    for start in range(0, len(pictures), 256):
        x = torch.from_numpy(np.stack([to_array(p, pre) for p in pictures[start : start + 256]])).float() / 255
        out.append(part.coefficients(x).numpy())
    return np.concatenate(out)


def lowest(coeffs: np.ndarray, keep: int) -> np.ndarray:
    """The keep x keep lowest frequencies (less the constant one) of `dct`'s rows: what DctPart(keep) holds."""
    u, v = np.divmod(np.arange(1, DCT_SIDE * DCT_SIDE), DCT_SIDE)
    return coeffs[:, (u < keep) & (v < keep)].astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", default="photos", help="the encoder (a built-in name or a checkpoint folder)")
    ap.add_argument("--originals", type=int, default=250)
    ap.add_argument("--keep", type=int, default=8, help="the lowest keep x keep DCT frequencies (pHash: 8)")
    ap.add_argument("--mix", default="0.05,0.1", help="comma-separated shares of the DCT part's cosine")
    ap.add_argument("--cache", type=Path, help="an .npz to keep the embeddings in (made when absent)")
    args = ap.parse_args()
    if args.cache is not None and args.cache.exists():
        z = np.load(args.cache)
        gal, gal_d, qry, qry_d, truth, kind = (z[k] for k in ("gal", "gal_d", "qry", "qry_d", "truth", "kind"))
    else:
        model = Embedder.load(args.model)
        pics, _ = load_pictures(args.data / "clothing/clothing-small-256.zip", classes="train/*", progress=False)
        faces, _ = load_pictures(args.data / "lfw/lfw-deepfunneled.zip", classes="[A-D]*", progress=False)
        pics += faces
        pre = model.loaded.config.preprocess
        gal, gal_d = model.embed_images(pics), dct(pics, pre)
        chosen = np.random.default_rng(5).choice(len(pics), args.originals, replace=False)
        names = list(ALL_EDITS)
        copies, truth_l, kind_l = [], [], []
        for j, name in enumerate(names):
            for i in chosen:
                copies.append(apply_edit(pics[i], name, np.random.default_rng([5, int(i), j])))
                truth_l.append(int(i))
                kind_l.append(name)
        qry, qry_d = model.embed_images(copies), dct(copies, pre)
        truth, kind = np.array(truth_l), np.array(kind_l)
        if args.cache is not None:
            np.savez(args.cache, gal=gal, gal_d=gal_d, qry=qry, qry_d=qry_d, truth=truth, kind=kind)
    gal_d, qry_d = lowest(gal_d, args.keep), lowest(qry_d, args.keep)
    spread = gal_d.std(axis=0)

    def unit(x: np.ndarray) -> np.ndarray:
        y = x / spread
        return y / np.linalg.norm(y, axis=1, keepdims=True)

    s, sd = qry @ gal.T, unit(qry_d) @ unit(gal_d).T
    rows = np.arange(len(truth))
    top10 = np.argsort(-s, axis=1)[:, :10]
    d10 = np.take_along_axis(sd, top10, 1)
    picks: dict[str, np.ndarray] = {"photos": s.argmax(1), "DCT alone": sd.argmax(1)}
    for a in (float(v) for v in args.mix.split(",")):
        picks[f"mix {a:g}"] = ((1 - a) * s + a * sd).argmax(1)
    for tau in (0.95, 0.98):
        sure = np.where(d10 >= tau, d10, -np.inf)
        picks[f"re-rank {tau:g}"] = np.where(np.isfinite(sure).any(1), top10[rows, sure.argmax(1)], top10[:, 0])
    shipped = (1 - 0.05) * s + 0.05 * sd  # photos as shipped (the DCT part at 5%), then search's second stage
    for k in (10, STRUCTURE_POOL):  # (measures.structure: the sure ones first, each group in cosine order)
        topk = np.argsort(-shipped, axis=1)[:, :k]
        order = StructurePart.order(np.take_along_axis(sd, topk, 1) >= STRUCTURE_SURE)
        picks[f"mix 0.05, re-rank top {k}"] = np.take_along_axis(topk, order, 1)[:, 0]
    names = list(dict.fromkeys(kind.tolist()))
    right = {k: {e: float(np.mean(v[kind == e] == truth[kind == e])) for e in names} for k, v in picks.items()}
    print(f"gallery {len(gal):,} training photos; {len(truth):,} copies; recall@1")
    print("| edit | " + " | ".join(picks) + " |")
    print("|---|" + "---|" * len(picks))
    for e in names:
        print(f"| {e} | " + " | ".join(f"{right[k][e]:.3f}" for k in picks) + " |")
    print("| **mean** | " + " | ".join(f"{np.mean(list(right[k].values())):.3f}" for k in picks) + " |")


if __name__ == "__main__":
    main()
