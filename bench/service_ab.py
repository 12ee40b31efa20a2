"""Before/after latency of `simsearch serve`: two source trees serve the same index side by side and
one client alternates requests between them, so both see the same machine at the same moment.

    git worktree add /tmp/before <commit>
    python bench/service_ab.py --before /tmp/before [--requests 600]

Prints p50 / mean / p99 client latency of each (uploads of generated 640x480 JPEGs, alternating
POST /search?k=5 and POST /identify, over a 300-image index) and the ratio now / before.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="a source tree of the earlier version")
    ap.add_argument("--requests", type=int, default=600, help="requests to each server (the first 50 warm up)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="simsearch-ab-") as tmp:
        work = Path(tmp)
        rng = np.random.default_rng(0)
        for c in range(10):
            (work / "gallery" / f"c{c}").mkdir(parents=True)
            for i in range(30):
                pixels = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
                Image.fromarray(pixels).save(work / "gallery" / f"c{c}" / f"{i}.jpg", quality=85)
        idx = work / "g.idx"
        before_env = dict(os.environ, PYTHONPATH=str(args.before))
        run = [sys.executable, "-m", "simsearch"]
        subprocess.run(
            [*run, "index", "build", str(work / "gallery"), "--index", str(idx), "-q"], check=True, env=before_env
        )
        bodies = []
        for f in sorted((work / "gallery").rglob("*.jpg"))[:100]:
            b = uuid.uuid4().hex
            head = f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{f.name}"\r\n\r\n'
            bodies.append((b, head.encode() + f.read_bytes() + f"\r\n--{b}--\r\n".encode()))
        servers = {}
        for name, tree in (("before", args.before), ("now", REPO)):
            port = _port()
            proc = subprocess.Popen(
                [*run, "serve", "--index", str(idx), "--port", str(port)],
                env=dict(os.environ, PYTHONPATH=str(tree)),
                stderr=subprocess.DEVNULL,
            )
            servers[name] = (proc, f"http://127.0.0.1:{port}")
        latency: dict[str, list[float]] = {n: [] for n in servers}
        try:
            for _, base in servers.values():
                for _ in range(900):
                    try:
                        urllib.request.urlopen(base + "/health", timeout=5).read()
                        break
                    except OSError:
                        time.sleep(0.1)
            order = list(servers.items())
            for i in range(args.requests):
                for name, (_, base) in order if i % 2 else order[::-1]:
                    b, body = bodies[i % len(bodies)]
                    path = "/search?k=5" if i % 2 == 0 else "/identify"
                    req = urllib.request.Request(
                        base + path, data=body, headers={"Content-Type": f"multipart/form-data; boundary={b}"}
                    )
                    t = time.perf_counter()
                    with urllib.request.urlopen(req, timeout=60) as r:
                        r.read()
                    latency[name].append(time.perf_counter() - t)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
    print("| server | requests | p50 ms | mean ms | p99 ms |\n|---|---|---|---|---|")
    means = {}
    for name, lat in latency.items():
        ms = np.array(lat[50:]) * 1000
        means[name] = ms.mean()
        print(f"| {name} | {len(ms)} | {np.percentile(ms, 50):.1f} | {ms.mean():.1f} | {np.percentile(ms, 99):.1f} |")
    print(f"\nmean latency now / before: {means['now'] / means['before']:.2f}")


if __name__ == "__main__":
    main()
