"""One-image-a-class galleries (issue 38), on classes no encoder trained or was tuned on: for each
built-in encoder, random galleries of one image a class at several sizes, each calibrated on itself as an
index is at build (joined with the encoder's open-set prior, as identify does), probed with new images of
its classes (known) and images of classes it lacks (unknown). Prints, per encoder and size: the FPIR stated
and observed (ratio), the same for the gallery's own fit alone, the FNIR at the stated 1%, and the FNIR
a threshold chosen with hindsight gets at the same observed FPIR. For a copies encoder (photos) the
"gallery alone" cell also gives the decision without the gallery's edited copies of its own photos.

    python bench/one_shot.py --data ../shared/data [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PLANS = [
    ("characters", "omniglot/images_evaluation.zip", None, "20,100,300", []),
    ("characters", "omniglot/images_evaluation.zip", None, None, ["--lake"]),
    ("faces", "lfw/lfw-deepfunneled.zip", "[K-Z]*", "20,100,1000", []),
    ("signatures", "signatures/sigcomp2011-processed.zip", "test/genuine/*", "5,10", []),
    ("photos", "clothing/clothing-small-256.zip", "test/*", "20,100", ["--copy-detection"]),
    # 1,000 one-photo classes: the clothing test part has 372 photos; LFW K-Z has thousands (not clothing at all)
    ("photos", "lfw/lfw-deepfunneled.zip", "[K-Z]*", "20,100,1000", ["--copy-detection"]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--models", default="characters,faces,signatures,photos", help="comma-separated encoders")
    args = ap.parse_args()
    print(
        "| encoder | protocol | classes | stated FPIR | observed (ratio) | gallery alone: observed (ratio) | "
        "FNIR | hindsight FNIR at the observed FPIR | mean threshold |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for model, data, classes, sizes, extra in PLANS:
        if model not in args.models.split(","):
            continue
        cmd = [sys.executable, "-m", "simsearch", "evaluate", str(args.data / data), "--open-set", "--shot", "1"]
        cmd += ["--model", model, "--runs", str(args.runs), "--json", *extra]
        cmd += ["--classes", classes] if classes else []
        cmd += ["--sizes", sizes] if sizes else []
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if proc.returncode != 0:
            print(f"| {model} | {' '.join(extra)} | failed: {proc.stderr.strip()[-200:]} |")
            continue
        report = json.loads(proc.stdout)
        for r in report["results"]:
            rows = {t["threshold"]: t for t in r["thresholds"]}
            for p in (0.01, 0.1):
                ours = rows.get(f"gallery-fitted, FPIR {p:g}")
                alone = rows.get(f"gallery alone (no prior), FPIR {p:g}")
                if ours is None:
                    continue
                both = f"{alone['observed_fpir']:.4f} ({alone['ratio']:.2f})" if alone else "-"
                before = rows.get(f"without edited copies, FPIR {p:g}")
                if before is not None:  # a copies encoder: what the gallery would have done without its copies
                    both += f"; without edited copies {before['observed_fpir']:.4f} ({before['ratio']:.2f})"
                src = r.get("unknown_probes_from", report.get("protocol", ""))
                src += f" ({Path(data).stem})" if model == "photos" else ""
                print(
                    f"| {model} | {src} | {r['gallery_classes']} | {p:g} | {ours['observed_fpir']:.4f} "
                    f"({ours['ratio']:.2f}) | {both} | {ours['fnir']:.3f} | "
                    f"{ours['hindsight_fnir']:.3f} | {ours['mean_threshold']:.3f} |",
                    flush=True,
                )
        print(f"<!-- {model} {' '.join(extra)}: {time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
