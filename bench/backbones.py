"""Library backbones and text search, measured here (issue 28), in one run, through the real `simsearch`
command:

1. text search: a CLIP-style encoder trained by `simsearch train --captions` on generated captioned
   shapes, asked every caption as a text query over pictures it never saw. Five compositions (count,
   colour, shape) are never in its training pictures, so their rows say whether it composes words it
   learnt apart. Against chance: precision@5 (share of the first five that are right), hit@5 (a
   right picture among the first five) and R-precision (share of the first ten that are right: each
   caption has ten pictures).
2. fine-tuning step time of imported backbones (random weights: a step costs the same whatever the
   weights), whole network against --train-blocks 1 and 0 (the head alone), beside the built-in
   `photos` encoder; self-supervised steps of --batch images (two views each).
3. indexing speed (images/s, `index build`) with imported backbones against the built-in `photos`, on
   the same folder.

Needs the backbone extras (timm): run it in the environment .ci/run makes (.venv-backbones):

    python bench/backbones.py --workdir /tmp/bb-bench --photos ../shared/data/clothing/clothing-small-256.zip
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from simsearch.shapes import COLOURS, SHAPES, caption_of, draw_shapes

HELD_OUT = [
    (3, "purple", "triangle"),
    (1, "green", "square"),
    (2, "yellow", "circle"),
    (3, "red", "square"),
    (2, "blue", "triangle"),
]


def sh(*args: object) -> str:
    proc = subprocess.run([sys.executable, "-m", "simsearch", *map(str, args)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"simsearch {' '.join(map(str, args))} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def write_set(
    folder: Path, per_caption: int, seed: int, skip: list[tuple[int, str, str]], captions: bool
) -> dict[str, str]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    truth = {}
    combos = [c for c in itertools.product((1, 2, 3), COLOURS, SHAPES) if c not in skip]
    for i, (n, colour, shape) in enumerate(c for c in combos for _ in range(per_caption)):
        path = folder / f"s{i:05d}.png"
        draw_shapes(n, colour, shape, rng, 64).save(path)
        caption = caption_of(n, colour, shape)
        if captions:
            path.with_suffix(".txt").write_text(caption)
        truth[str(path)] = caption
    return truth


def hit_chance(right: int, total: int, k: int = 5) -> float:
    return 1 - math.comb(total - right, k) / math.comb(total, k)


def text_search(work: Path, steps: int) -> None:
    train = write_set(work / "shapes_train", 60, 1, HELD_OUT, captions=True)
    gallery = write_set(work / "shapes_gallery", 10, 2, [], captions=False)
    t = time.time()
    res = json.loads(
        sh("train", work / "shapes_train", "--captions", "--out", work / "clip", "--channels", "3", "--size", "32",
           "--widths", "32,64,128", "--embedding-dim", "64", "--steps", steps, "--val-every", 250, "--batch", 128,
           "--lr", "2e-3", "--json")
    )  # fmt: skip
    print(f"trained on {len(train)} captioned pictures (40 of 45 compositions), {steps} steps, {time.time() - t:.0f}s "
          f"({res['step_s']:.3f} s a step); held-out text recall@5 {res['best_val_accuracy']}")  # fmt: skip
    sh("index", "build", work / "shapes_gallery", "--model", work / "clip", "--index", work / "clip.idx", "-q")
    captions = sorted(set(gallery.values()))
    args = [a for c in captions for a in ("--text", c)]
    answers = [json.loads(x) for x in sh("query", *args, "--index", work / "clip.idx", "-k", 10, "--json").splitlines()]
    held = {caption_of(*c) for c in HELD_OUT}
    rows = {"seen in training": [], "never in training": [], "all": []}
    for caption, ans in zip(captions, answers, strict=True):
        right = [gallery[h["path"]] == caption for h in ans["results"]]
        row = (np.mean(right[:5]), float(any(right[:5])), np.mean(right))  # R-precision: 10 right ones in the first 10
        rows["never in training" if caption in held else "seen in training"].append(row)
        rows["all"].append(row)
    n = len(gallery)
    print(
        f"\ntext -> image over {n} unseen pictures (10 per caption); chance: precision@5 and R-precision "
        f"{10 / n:.3f}, hit@5 {hit_chance(10, n):.3f}"
    )
    print(f"{'captions':20s} {'queries':>7s} {'precision@5':>11s} {'hit@5':>6s} {'R-precision':>11s}")
    for name, r in rows.items():
        a = np.array(r)
        print(f"{name:20s} {len(a):7d} {a[:, 0].mean():11.3f} {a[:, 1].mean():6.3f} {a[:, 2].mean():11.3f}")


def photo_folder(work: Path, source: Path | None, count: int) -> Path:
    out = work / "photos"
    if source is not None and zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            names = sorted(
                n for n in zf.namelist() if ("/test/" in n or "/validation/" in n) and n.lower().endswith(".jpg")
            )[:count]
            out.mkdir()
            for i, n in enumerate(names):
                (out / f"p{i:04d}.jpg").write_bytes(zf.read(n))
        return out
    from simsearch.symbols import write_photos

    return write_photos(out, count, seed=3)


IMPORTS = (("timm:resnet18", 224), ("timm:resnet18", 128), ("timm:mobilenetv3_small_100", 224))


def imported(work: Path) -> dict[str, str]:
    """The built-in photos encoder and the imported backbones (random weights), by display name."""
    models = {"photos (built-in)": "photos"}
    for spec, size in IMPORTS:
        folder = work / f"{spec.replace(':', '_')}_{size}"
        if not folder.exists():
            sh("models", "import", spec, "--random-init", "--size", size, "--out", folder)
        models[f"{spec} @{size}"] = str(folder)
    return models


def step_times(work: Path, photos: Path, steps: int, batch: int) -> None:
    models = imported(work)
    print(
        f"\nfine-tuning step time (self-supervised, {batch} images = {2 * batch} views a step, mean of {steps} steps)"
    )
    print(f"{'encoder':34s} {'trains':>14s} {'s/step':>7s} {'images/s':>8s}")
    for name, model in models.items():
        blocks = [None] if model == "photos" else [None, 1, 0]
        for b in blocks:
            out = work / f"ft_{abs(hash((name, b)))}"
            extra = [] if b is None else ["--train-blocks", b] + (["--head", 128] if b == 0 else [])
            res = json.loads(
                sh("train", photos, "--self-supervised", "--init", model, *extra, "--batch", batch, "--steps", steps,
                   "--val-every", 10_000, "--val-fraction", 0, "--out", out, "--json")
            )  # fmt: skip
            what = "everything" if b is None else ("head only" if b == 0 else f"last {b} block")
            print(f"{name:34s} {what:>14s} {res['step_s']:7.3f} {2 * batch / res['step_s']:8.1f}")
            shutil.rmtree(out)
    return None


def index_speed(work: Path, photos: Path) -> None:
    n = len(list(photos.iterdir()))
    print(f"\nindexing {n} photos (index build, flat; the build's own time, not the command's start)")
    print(f"{'encoder':34s} {'images/s':>8s} {'vs photos':>9s}")
    base = None
    for name, model in imported(work).items():
        idx = work / f"idx_{abs(hash(name))}"
        report = json.loads(sh("index", "build", photos, "--model", model, "--index", idx, "--json"))
        rate = report["added"] / report["elapsed_s"]
        base = base or rate
        print(f"{name:34s} {rate:8.1f} {rate / base:9.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True, help="an empty or new folder for the generated data")
    ap.add_argument("--photos", type=Path, default=None, help="clothing zip (its test photos); default: generated")
    ap.add_argument("--count", type=int, default=700, help="photos to index (clothing test/ and validation/)")
    ap.add_argument("--clip-steps", type=int, default=1000)
    ap.add_argument("--ft-steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--only", choices=["text", "steps", "index"], default=None)
    a = ap.parse_args()
    if a.workdir.exists() and any(a.workdir.iterdir()):
        raise SystemExit(f"{a.workdir} is not empty")
    a.workdir.mkdir(parents=True, exist_ok=True)
    if a.only in (None, "text"):
        text_search(a.workdir, a.clip_steps)
    if a.only in (None, "steps", "index"):
        photos = photo_folder(a.workdir, a.photos, a.count)
        if a.only != "index":
            step_times(a.workdir, photos, a.ft_steps, a.batch)
        if a.only != "steps":
            index_speed(a.workdir, photos)


if __name__ == "__main__":
    main()
