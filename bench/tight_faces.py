"""Faces that fill the whole picture: LFW people K to Z cut to the middle of the portrait (where the face is) and
shrunk to 92x112 grayscale, as ID-photo and face-crop sets come (the AT&T set's format). Writes that folder
(one subfolder a person) and measures each encoder on it with `simsearch evaluate`: how many pictures it
embeds (a face found, or the picture taken as one face) and 5-way 1-shot. Prints the evaluate output.

    python bench/tight_faces.py ../shared/data/lfw/lfw-deepfunneled.zip --out /tmp/tight --compare /tmp/faces-old
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("lfw", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--compare", action="append", default=[])
    ap.add_argument("--keep", type=float, default=0.46, help="the middle share of each side kept")
    args = ap.parse_args()
    n = 0
    with zipfile.ZipFile(args.lfw) as z:
        for name in z.namelist():
            m = re.match(r"lfw-deepfunneled/([K-Z][^/]*)/([^/]+\.jpg)$", name)
            if not m:
                continue
            img = Image.open(io.BytesIO(z.read(name))).convert("L")
            w, h = img.size
            kw, kh = w * args.keep, h * args.keep * 112 / 92
            box = (
                round((w - kw) / 2),
                round((h - kh) / 2 + 0.03 * h),
                round((w + kw) / 2),
                round((h + kh) / 2 + 0.03 * h),
            )
            folder = args.out / m.group(1)
            folder.mkdir(parents=True, exist_ok=True)
            img.crop(box).resize((92, 112), Image.Resampling.BILINEAR).save(folder / m.group(2).replace(".jpg", ".png"))
            n += 1
    print(f"wrote {n} tight 92x112 grey crops under {args.out}", flush=True)
    cmd = [sys.executable, "-m", "simsearch", "evaluate", str(args.out), "--model", "faces"]
    for c in args.compare:
        cmd += ["--compare", c]
    cmd += ["--way", "5", "--shot", "1", "--episodes", "2000", "--seed", "0", "--pairs", "0", "--json"]
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
