"""The CUDA path against the CPU on one machine with a GPU: every built-in encoder's embeddings, an index
built on each device (same answers), and training steps (loss, step time) on each. Prints a table and writes
JSON to --out. Not a test: CI has no GPU. Run: python bench/cuda_check.py --out cuda.json"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def cli(*args: object) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "simsearch", *map(str, args)], capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        raise SystemExit(f"simsearch {' '.join(map(str, args))} failed: {proc.stderr.strip()[-2000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--embed-only", action="store_true", help="only the embeddings of each encoder (no faiss needed)")
    args = ap.parse_args()
    import torch

    from simsearch.embed import Embedder
    from simsearch.symbols import write_photos, write_symbol_set

    report: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
    work = Path(tempfile.mkdtemp())
    drawings = work / "drawings"
    write_symbol_set(drawings, ["circle", "triangle", "square", "star", "cross", "arrow", "spiral", "wave"], 40)
    photos = write_photos(work / "photos", 200, seed=3, side=160, classes=5)
    # 1. each built-in encoder: the same images embedded on both devices
    rows = []
    for name, folder in (("characters", drawings), ("signatures", drawings), ("photos", photos), ("objects", photos)):
        files = sorted(str(p) for p in folder.rglob("*") if p.is_file())[:256]
        out = {}
        for dev in ("cpu", "cuda"):
            try:
                emb = Embedder.load(name, dev)
            except Exception as err:  # a built-in whose extra is not installed there
                rows.append({"encoder": name, "skipped": str(err)})
                break
            emb.embed_paths(files[:8])  # warm-up
            t = time.perf_counter()
            vecs, _ = emb.embed_paths(files)
            out[dev] = (vecs, time.perf_counter() - t)
        if len(out) < 2:
            continue
        diff = float(np.abs(out["cpu"][0] - out["cuda"][0]).max())
        cos = float(np.min(np.sum(out["cpu"][0] * out["cuda"][0], axis=1)))
        rows.append(
            {
                "encoder": name,
                "images": len(files),
                "max_abs_diff": diff,
                "min_cosine": cos,
                "cpu_img_s": len(files) / out["cpu"][1],
                "cuda_img_s": len(files) / out["cuda"][1],
            }
        )
    report["embed"] = rows
    if args.embed_only:
        args.out.write_text(json.dumps(report, indent=1))
        print(json.dumps(report, indent=1))
        return
    # 2. an index built on each device answers the same
    builds = {}
    for dev in ("cpu", "cuda"):
        idx = work / f"{dev}.idx"
        builds[dev] = cli("index", "build", drawings, "--index", idx, "--device", dev, "--json")
    probes = sorted((drawings / "star").iterdir())[:10]
    same = 0
    for p in probes:
        a = cli("query", p, "--index", work / "cpu.idx", "-k", 5, "--json", "--device", "cpu")
        b = cli("query", p, "--index", work / "cuda.idx", "-k", 5, "--json", "--device", "cuda")
        same += [r["path"] for r in a["results"]] == [r["path"] for r in b["results"]]
    report["index"] = {
        "cpu_s": builds["cpu"]["elapsed_s"],
        "cuda_s": builds["cuda"]["elapsed_s"],
        "same_top5": f"{same}/{len(probes)}",
    }
    # 3. training steps on each device from the same seed
    train = {}
    for dev in ("cpu", "cuda"):
        res = cli(
            "train",
            drawings,
            "--out",
            work / f"train-{dev}",
            "--steps",
            60,
            "--val-every",
            30,
            "--device",
            dev,
            "--json",
            "--seed",
            0,
        )
        train[dev] = {k: res.get(k) for k in ("steps", "step_s", "best_val_accuracy", "elapsed_s")}
    report["train"] = train
    # 4. the objects encoder (EfficientNet-Lite0 trunk from its weights package): an index of photos built on each
    # device (same answers), and fine-tuning steps from it on each
    if any(r.get("encoder") == "objects" and "skipped" not in r for r in rows):
        obj: dict = {}
        for dev in ("cpu", "cuda"):
            b = cli(
                "index",
                "build",
                photos,
                "--index",
                work / f"obj-{dev}.idx",
                "--model",
                "objects",
                "--device",
                dev,
                "--json",
            )
            t = cli(
                "train",
                photos,
                "--init",
                "objects",
                "--out",
                work / f"objt-{dev}",
                "--steps",
                20,
                "--val-every",
                10,
                "--device",
                dev,
                "--json",
                "--seed",
                0,
            )
            obj[dev] = {"index_s": b["elapsed_s"], **{k: t.get(k) for k in ("steps", "step_s", "best_val_accuracy")}}
        probes = sorted(p for p in photos.rglob("*") if p.is_file())[:10]
        same = 0
        for p in probes:
            a = cli("query", p, "--index", work / "obj-cpu.idx", "-k", 5, "--json", "--device", "cpu")
            b = cli("query", p, "--index", work / "obj-cuda.idx", "-k", 5, "--json", "--device", "cuda")
            same += [r["path"] for r in a["results"]] == [r["path"] for r in b["results"]]
        obj["same_top5"] = f"{same}/{len(probes)}"
        report["objects"] = obj
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
