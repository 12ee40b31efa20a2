"""Search's second stage (measures/structure.py) on pictures and edits nothing chose it on. Two questions:
does it call a different picture "the same picture" (galleries of Omniglot evaluation drawings, LFW K-Z faces,
SigComp2011 test signatures, clothing test photos; queries are other pictures of the same set, none of them in
the gallery), and does it find copies under edits no benchmark uses (clothing test: darkened to 35%, shrunk to
24 px and blown up, gamma 2.2; each photo's copy searched among all of them)? `photos`, seeded; prints tables.

    python bench/same_picture_check.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simsearch.datasets import load_pictures
from simsearch.embed import Embedder
from simsearch.measures.structure import STRUCTURE_POOL, StructurePart

SETS = {
    "Omniglot evaluation drawings": ("omniglot/images_evaluation.zip", None),
    "LFW K-Z faces": ("lfw/lfw-deepfunneled.zip", "[K-Z]*"),
    "SigComp2011 test signatures": ("signatures/sigcomp2011-processed.zip", "test/*"),
    "clothing test photos": ("clothing/clothing-small-256.zip", "test/*"),
}
EDITS = {
    "darkened to 35%": lambda p: ImageEnhance.Brightness(p).enhance(0.35),
    "shrunk to 24 px, blown up": lambda p: p.resize((24, 24), Image.Resampling.BILINEAR).resize(
        p.size, Image.Resampling.BICUBIC
    ),
    "gamma 2.2": lambda p: p.point(lambda v: int(255 * (v / 255) ** 2.2)),
}


def staged(part: StructurePart, q: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the cosine's pool, each row's sure candidates, the pool in the stage's order)."""
    top = np.argsort(-(q @ g.T), axis=1, kind="stable")[:, :STRUCTURE_POOL]
    sure = part.sure(q, g[top])
    return top, sure, np.take_along_axis(top, part.order(sure), axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--cap", type=int, default=1200, help="pictures drawn from each set (seeded)")
    args = ap.parse_args()
    model = Embedder.load("photos")
    part = StructurePart.of(model.loaded.config)
    assert part is not None
    print("| set | gallery | queries (no copy in the gallery) | any hit called the same picture | top answer changed |")
    print("|---|---|---|---|---|")
    for name, (data, classes) in SETS.items():
        pics, _ = load_pictures(args.data / data, classes=classes, progress=False)
        order = np.random.default_rng(0).permutation(len(pics))[: args.cap]
        emb = model.embed_images([pics[i] for i in order])
        cut = int(0.7 * len(emb))
        _, sure, _ = staged(part, emb[cut:], emb[:cut])
        moved = sure.any(1) & ~sure[:, 0]
        print(f"| {name} | {cut} | {len(emb) - cut} | {int(sure.any(1).sum())} | {int(moved.sum())} |", flush=True)
        if data.startswith("clothing"):
            pictures, gallery = [pics[i] for i in order], emb
    print(
        "\n| edit (clothing test, each photo's copy among all) | recall@1, cosine | with the stage | called the same picture |"
    )
    print("|---|---|---|---|")
    truth = np.arange(len(gallery))
    for name, edit in EDITS.items():
        q = model.embed_images([edit(p) for p in pictures])
        top, sure, order = staged(part, q, gallery)
        own = (top == truth[:, None]) & sure
        print(
            f"| {name} | {np.mean(top[:, 0] == truth):.3f} | {np.mean(order[:, 0] == truth):.3f} | {own.any(1).mean():.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
