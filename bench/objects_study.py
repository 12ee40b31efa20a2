"""How `objects` is chosen (issue 37), on training splits only: EfficientNet-Lite0's pooled features (computed once,
cached) with projection heads trained by tools/make_objects.py's recipe, scored by few-shot episodes on
clothing validation/ (what the head is for) and on pictures that are not clothing: Omniglot background
drawings and LFW people A-J. The projection trains on clothing train/ alone (the recipe until 2026-12-04
night) or also on episodes of other kinds of pictures (tools/make_objects.py other_drawings, other_faces: drawings of the
first half of the background alphabets, LFW people A-E); the pictures the episodes here score are others
(the second half of the alphabets, people F-J). Heads that saw only one of the other kinds show what
happens on a kind of picture no episode showed. Prints a table; nothing is written but the feature cache.

    python bench/objects_study.py --data ../shared/data --cache runs/objects_study
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from make_objects import (
    labelled_features,
    objects_config,
    omniglot_halves,
    other_drawings,
    other_faces,
    pick_classes,
    train_head,
)

from simsearch.encoder import Encoder, build_encoder


def cached(cache: Path, name: str, make: Callable[[], tuple[torch.Tensor, torch.Tensor]]):
    path = cache / f"{name}.pt"
    if path.exists():
        d = torch.load(path)
        return d["x"], d["y"]
    x, y = make()
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"x": x, "y": y}, path)
    return x, y


def episodes(e: torch.Tensor, y: torch.Tensor, way: int, shot: int, n: int, seed: int = 0) -> tuple[float, float]:
    """Prototype accuracy over n episodes (one query a class) and its 95% interval half-width."""
    rng = np.random.default_rng(seed)
    y = y.numpy()
    by = {c: np.flatnonzero(y == c) for c in np.unique(y)}
    ok_classes = [c for c, ii in by.items() if len(ii) > shot]
    hits = []
    for _ in range(n):
        chosen = rng.choice(ok_classes, size=way, replace=False)
        protos, queries = [], []
        for c in chosen:
            ii = rng.permutation(by[c])
            protos.append(F.normalize(e[ii[:shot]].mean(0), dim=0))
            queries.append(e[ii[shot]])
        s = torch.stack(queries) @ torch.stack(protos).T
        hits.append(float((s.argmax(1) == torch.arange(way)).float().mean()))
    h = np.array(hits)
    return float(h.mean()), float(1.96 * h.std() / np.sqrt(len(h)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--episodes", type=int, default=1000)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    config = objects_config()
    enc = build_encoder(config).eval()
    clothing = args.data / "clothing/clothing-small-256.zip"
    omni = args.data / "omniglot/images_background.zip"
    lfw = args.data / "lfw/lfw-deepfunneled.zip"
    _, second = omniglot_halves(omni)
    sets = {
        "clothing_train": cached(args.cache, "clothing_train", lambda: labelled_features(enc, clothing, "train/*")),
        "clothing_val": cached(args.cache, "clothing_val", lambda: labelled_features(enc, clothing, "validation/*")),
        "omni_score": cached(
            args.cache,
            "omni_score",
            lambda: labelled_features(
                enc, omni, pick_classes(omni, None, lambda c: c.split("/")[0] in second, 150, 1), 8
            ),
        ),
        "lfw_score": cached(
            args.cache,
            "lfw_score",
            lambda: labelled_features(enc, lfw, pick_classes(lfw, "[F-J]*", lambda c: True, 300, 3), 6),
        ),
    }
    drawn = cached(args.cache, "omni_keep", lambda: other_drawings(enc, omni))
    faces = cached(args.cache, "lfw_keep", lambda: other_faces(enc, lfw))
    sets["omni_keep"], sets["lfw_keep"] = drawn, faces
    for k, (x, y) in sets.items():
        print(f"{k}: {len(x)} pictures, {len(torch.unique(y))} classes", flush=True)
    xt, yt = sets["clothing_train"]

    def head(others: list[tuple[torch.Tensor, torch.Tensor]]) -> Encoder:
        e = build_encoder(config).eval()
        with torch.enable_grad():
            train_head(e, xt, yt, 300, 0, others=others)
        return e

    def unit(e: Encoder) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: F.normalize(e.head(x), dim=1)

    candidates: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [
        ("trunk alone", lambda x: F.normalize(x, dim=1))
    ]
    plans = [
        ("clothing only (the recipe until 2026-12-04 night)", [], (0.3, 0.4, 0.5)),
        ("clothing, faces and drawings", [drawn, faces], (0.3, 0.4, 0.5, 0.6, 0.7)),
        # a kind of picture no episode showed: drawings beside clothing (faces unseen), faces (drawings unseen)
        ("clothing and drawings (faces unseen)", [drawn], (0.3, 0.5, 0.7)),
        ("clothing and faces (drawings unseen)", [faces], (0.3, 0.5, 0.7)),
    ]
    for where, others, shares in plans:
        base = head(others)
        for share in shares:
            e = copy.deepcopy(base)
            e.head.share.fill_(share)  # the cosine's share of the projection (the trunk's: 1 - share)
            candidates.append((f"episodes on {where}, share {share}", unit(e)))
    print(
        "| candidate | clothing val 10-way 1-shot | 5-shot | Omniglot bg (2nd half) 20-way 1-shot | LFW F-J 5-way 1-shot |"
    )
    print("|---|---|---|---|---|")
    for name, f in candidates:
        (cv, cy), (ox, oy), (lx, ly) = sets["clothing_val"], sets["omni_score"], sets["lfw_score"]
        row = [
            episodes(f(cv), cy, 10, 1, args.episodes),
            episodes(f(cv), cy, 10, 5, args.episodes),
            episodes(f(ox), oy, 20, 1, args.episodes),
            episodes(f(lx), ly, 5, 1, args.episodes),
        ]
        print(f"| {name} | " + " | ".join(f"{m:.3f} ± {h:.3f}" for m, h in row) + " |", flush=True)


if __name__ == "__main__":
    main()
