"""Indexing speed of each encoder on 640x480 JPEGs, everything counted (decoding, framing, finding faces,
embedding, writing the index): `index build`'s own elapsed_s, one build after one warm-up build of 16 images.
Photos are generated (simsearch.symbols.write_photos, enlarged to 640x480); for face encoders each photo shows
one drawn face (tests/test_faces.draw_face) at a random place and size. Old encoders to set against the new are
checkpoint folders given with --compare NAME=DIR (e.g. the previous `faces` from git). Prints a table.

    python bench/index_speed.py --images 256 --compare faces-old=/tmp/faces-old
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simsearch.model_files import read_model_json, resolve_model
from simsearch.symbols import draw_face, write_photos


def jpegs(folder: Path, n: int, faces: bool, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    small = write_photos(folder.parent / f"{folder.name}-src", n, seed=seed, side=160)
    for i, src in enumerate(sorted(p for p in small.rglob("*") if p.is_file())[:n]):
        img = Image.open(src).convert("RGB").resize((640, 480), Image.Resampling.BILINEAR)
        if faces:
            side = int(rng.integers(140, 300))
            face = draw_face(side, hair=tuple(int(c) for c in rng.integers(20, 200, 3)))
            img.paste(face, (int(rng.integers(0, 640 - side)), int(rng.integers(0, 480 - side))))
        img.save(folder / f"p{i:05d}.jpg", quality=90)
    return folder


def build(folder: Path, model: str, work: Path) -> float:
    idx = work / f"{abs(hash((str(folder), model)))}.idx"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "simsearch",
            "index",
            "build",
            str(folder),
            "--index",
            str(idx),
            "--model",
            model,
            "--json",
            "--overwrite",
        ],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise SystemExit(f"index build --model {model} failed: {proc.stderr.strip()[-500:]}")
    out = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    return float(out["elapsed_s"]), int(out["added"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--models", default="characters,photos,signatures,objects,faces")
    ap.add_argument("--compare", action="append", default=[], help="NAME=CHECKPOINT_DIR, also measured")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    plain, people = jpegs(work / "plain", args.images, False), jpegs(work / "faces", args.images, True)
    models = [(m, m) for m in args.models.split(",")] + [tuple(c.split("=", 1)) for c in args.compare]
    print(f"{args.images} JPEGs of 640x480; one build each after a warm-up; {time.strftime('%Y-%m-%d')}")
    print("| encoder | input | images indexed | seconds | images/s |")
    print("|---|---|---|---|---|")
    for name, model in models:
        pre = read_model_json(resolve_model(model)[0])["config"]["preprocess"]
        folder = people if pre.get("face") else plain
        warm = work / f"warm-{name}"
        warm.mkdir()
        for p in sorted(folder.iterdir())[:16]:
            (warm / p.name).symlink_to(p)
        build(warm, model, work)
        secs, added = build(folder, model, work)
        size = f"{pre['channels']}x{pre['size']}x{pre['size']}" + (" face" if pre.get("face") else "")
        print(f"| {name} | {size} | {added} | {secs:.1f} | {added / secs:.1f} |", flush=True)


if __name__ == "__main__":
    main()
