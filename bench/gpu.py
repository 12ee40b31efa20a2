"""GPU check and throughput: the encoder on CUDA against the CPU of the same machine.

    python bench/gpu.py [--models characters,signatures,faces] [--n 20000]

Prints, per built-in encoder, images per second for the encoder alone (uint8 arrays in memory,
batch 512; bf16 autocast on CUDA as `embed_arrays_with` does) on CUDA and on the CPU, the ratio,
and the largest difference between CUDA and CPU embeddings of the same images (cosine terms).
Then it builds an index of generated JPEGs with `simsearch index build --device cuda` and with
`--device cpu` (decode included) and queries it, to show the whole CUDA path works end to end.
Needs a CUDA GPU; on a machine without one it says so and exits 1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.run import make_jpegs, simsearch_cmd, table  # noqa: E402
from simsearch.checkpoint import builtin_models, load_checkpoint  # noqa: E402
from simsearch.embed import embed_arrays_with  # noqa: E402


def throughput(model: str, device: str, arrays: np.ndarray) -> tuple[float, np.ndarray]:
    loaded = load_checkpoint(model, device=device)
    dev = torch.device(device)
    embed_arrays_with(loaded.encoder, arrays[:1024], dev)  # warm-up (cuDNN autotune, allocator)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    emb = embed_arrays_with(loaded.encoder, arrays, dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return len(arrays) / (time.perf_counter() - t), emb


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(builtin_models()))
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--jpegs", type=int, default=2000)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to measure")
        sys.exit(1)
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; CPU threads {torch.get_num_threads()}")
    rows = []
    rng = np.random.default_rng(0)
    for m in args.models.split(","):
        pre = load_checkpoint(m).config.preprocess
        arrays = rng.integers(0, 256, size=(args.n, pre.channels, pre.size, pre.size), dtype=np.uint8)
        gpu, e_gpu = throughput(m, "cuda", arrays)
        cpu, e_cpu = throughput(m, "cpu", arrays[: max(2048, args.n // 10)])
        cos = np.einsum("ij,ij->i", e_gpu[: len(e_cpu)], e_cpu)
        rows.append(
            [
                m,
                f"{pre.channels}x{pre.size}x{pre.size}",
                f"{gpu:,.0f}",
                f"{cpu:,.0f}",
                f"{gpu / cpu:.1f}",
                f"{cos.min():.4f}",
            ]
        )
    print(table(["encoder", "input", "CUDA img/s", "CPU img/s", "CUDA/CPU", "min cos(CUDA, CPU)"], rows))
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_jpegs(Path(tmp) / "jpegs", args.jpegs)
        rows = []
        for device in ("cuda", "cpu"):
            idx = Path(tmp) / f"idx-{device}"
            t = time.perf_counter()
            subprocess.run(
                [*simsearch_cmd(), "index", "build", str(folder), "--index", str(idx), "--device", device, "-q"],
                check=True,
            )
            build = time.perf_counter() - t
            out = subprocess.run(
                [
                    *simsearch_cmd(),
                    "query",
                    next(folder.rglob("*.jpg")).as_posix(),
                    "--index",
                    str(idx),
                    "--json",
                    "--device",
                    device,
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            rows.append([device, f"{args.jpegs / build:,.0f}", "yes" if '"score"' in out else "NO"])
        print(table(["index build --device", "img/s (decode included)", "query answered"], rows))


if __name__ == "__main__":
    main()
