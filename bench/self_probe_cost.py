"""What a `photos` gallery's edited copies of its own photos cost at build (issue 38): the same generated
photos indexed as a one-photo-a-class gallery (class subfolders: the build embeds up to 1,000 edited copies
to probe itself with) and as a plain folder (no classes: nothing to identify, no copies), in one run.

    python bench/self_probe_cost.py [--sizes 20,100,300] [--model photos]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simsearch.engine import build_index
from simsearch.engine.sync import open_index
from simsearch.symbols import write_photos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="20,100,300")
    ap.add_argument("--model", default="photos")
    args = ap.parse_args()
    print("| photos | copies embedded | build, one photo a class (s) | build, no classes (s) | extra (s) |")
    print("|---|---|---|---|---|")
    work = Path(tempfile.mkdtemp(prefix="selfprobe-"))
    try:
        for n in (int(x) for x in args.sizes.split(",")):
            labelled, plain = work / f"l{n}", work / f"p{n}"
            write_photos(labelled, n, seed=1, side=320, classes=n)
            plain.mkdir()
            for f in labelled.rglob("*.jpg"):
                shutil.copy(f, plain / f"{f.parent.name}.jpg")
            times = []
            for folder in (labelled, plain):
                t0 = time.perf_counter()
                build_index(folder, work / f"{folder.name}.idx", model=args.model, progress=False)
                times.append(time.perf_counter() - t0)
            with open_index(work / f"{labelled.name}.idx") as store:
                edited = (store.manifest.gallery_calibration or {}).get("edited") or {}
            copies = len(edited.get("scores", []))
            print(f"| {n} | {copies} | {times[0]:.1f} | {times[1]:.1f} | {times[0] - times[1]:.1f} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
