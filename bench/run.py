"""Benchmark harness: speed, memory and accuracy beside baselines and limits; rewrites BENCHMARKS.md.

    python bench/run.py --size small            # about a minute: checks that every section runs
    python bench/run.py --size full             # the figures in BENCHMARKS.md (about 40 minutes on 2 cores)
    python bench/run.py --size full --only search,sync

Ratios are measured within one run (ours against a baseline or a limit): these machines are shared
and noisy, so absolute times drift between runs while ratios hold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from index.vector_index import IndexKind, VectorIndex  # noqa: E402
from simsearch.checkpoint import builtin_models, load_checkpoint  # noqa: E402
from simsearch.config.choices import Framing  # noqa: E402
from simsearch.device import resolve_device  # noqa: E402
from simsearch.embed import Embedder  # noqa: E402
from simsearch.engine import Searcher, build_index  # noqa: E402
from simsearch.images import load_array, scan_folder  # noqa: E402
from simsearch.symbols import SYMBOLS, draw_symbol, write_photos  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


@dataclass(frozen=True)
class Sizes:
    jpegs: int  # generated 640x480 RGB JPEGs
    omniglot: bool  # the whole Omniglot set (32,460 PNGs) when ../shared/data is present
    vectors: tuple[int, ...]  # gallery sizes for search alone
    queries: int
    scale: tuple[int, ...]  # folder multiples for how indexing cost grows
    episodes: int
    requests: int  # service load test: requests from 8 concurrent clients
    big_jpegs: int = 12  # generated 12-megapixel JPEGs (and a tenth as many HEIC) for intake
    spread: int = 120  # generated 640x480 JPEGs for the distributed build
    accuracy_classes: str | None = None  # a subset of Omniglot's evaluation classes (None: all of them)


SIZES = {
    "small": Sizes(
        jpegs=60,
        omniglot=False,
        vectors=(5_000,),
        queries=50,
        scale=(1, 2),
        episodes=100,
        requests=80,
        big_jpegs=3,
        spread=40,
        accuracy_classes="A*",
    ),
    "full": Sizes(
        jpegs=2_000,
        omniglot=True,
        vectors=(10_000, 100_000, 1_000_000),
        queries=1_000,
        scale=(1, 4, 16),
        episodes=2000,
        requests=2000,
        big_jpegs=200,
        spread=3000,
    ),
}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{os.cpu_count()} cores, {cpu}, {gpu}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"faiss {faiss.__version__}, numpy {np.__version__}"
    )


def table(header: list[str], rows: list[list[object]]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def peak_rss_of(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident MiB) of one child process, from its own rusage (os.wait4)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(proc.stderr.read().decode()[-2000:] if proc.stderr else "failed")
    return wall, usage.ru_maxrss / 1024


def best_of(fn, reps: int = 3) -> float:
    """The fastest of `reps` runs of fn(), in seconds (the least disturbed by other load)."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def simsearch_cmd() -> list[str]:
    script = Path(sys.executable).parent / "simsearch"
    return [str(script)] if script.exists() else [sys.executable, str(REPO / "cli.py")]


# ---------------------------------------------------------------- data
def make_jpegs(root: Path, n: int, seed: int = 0) -> Path:
    """n 640x480 RGB JPEGs of drawn symbols on noisy paper, in 10 class folders."""
    rng = np.random.default_rng(seed)
    names = list(SYMBOLS)
    for i in range(n):
        name = names[i % len(names)]
        (root / name).mkdir(parents=True, exist_ok=True)
        img = draw_symbol(name, rng, size=480, mode="RGB").resize((640, 480))
        noise = rng.integers(-12, 12, (480, 640, 3))
        arr = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(root / name / f"{i:06d}.jpg", quality=90)
    return root


def extract_omniglot(root: Path) -> Path | None:
    zips = [SHARED / "omniglot" / "images_background.zip", SHARED / "omniglot" / "images_evaluation.zip"]
    if not all(z.exists() for z in zips):
        return None
    for z in zips:
        with zipfile.ZipFile(z) as zf:
            zf.extractall(root)
    return root


# ---------------------------------------------------------------- sections
def bench_indexing(work: Path, sizes: Sizes, out: list[str]) -> None:
    """Files to searchable index: ours vs the naive loop, and the decode and encoder limits."""
    model = load_checkpoint(None)
    dev = resolve_device("auto")
    pre = model.config.preprocess
    folders = [("generated 640x480 JPEG", make_jpegs(work / "jpegs", sizes.jpegs))]
    if sizes.omniglot:
        omni = extract_omniglot(work / "omniglot")
        if omni is not None:
            folders.append(("Omniglot 105x105 PNG", omni))
    rows = []
    for name, folder in folders:
        files = [f.path for f in scan_folder(folder).files]
        n = len(files)
        idx = work / f"idx-{folder.name}"
        wall, rss = peak_rss_of(
            [*simsearch_cmd(), "index", "build", str(folder), "--index", str(idx), "-q", "--kind", "flat"]
        )
        t = time.perf_counter()
        build_index(folder, work / f"inproc-{folder.name}", progress=False, kind="flat")
        ours = n / (time.perf_counter() - t)
        # naive: one image at a time through decode, preprocess, model; then stack and brute force
        sample = files[: min(n, 500)]
        t = time.perf_counter()
        vecs = []
        with torch.inference_mode():
            for f in sample:
                arr = load_array(f, pre)
                vecs.append(model.encoder(torch.from_numpy(arr[None]).float().div(255)).numpy())
        emb = np.concatenate(vecs)
        _ = emb @ emb[:1].T
        naive = len(sample) / (time.perf_counter() - t)
        # limits: decoding alone (same thread pool width as ours), encoder alone on decoded tensors
        from concurrent.futures import ThreadPoolExecutor

        t = time.perf_counter()
        with ThreadPoolExecutor(min(8, (os.cpu_count() or 1) + 1)) as pool:
            arrays = list(pool.map(lambda f: load_array(f, pre), files))
        decode = n / (time.perf_counter() - t)
        stacked = np.stack(arrays)
        best = 0.0
        for bs in (64, 256, 1024):
            t = time.perf_counter()
            Embedder(model.encoder, dev).embed_arrays(stacked, batch_size=bs)
            best = max(best, n / (time.perf_counter() - t))
        serial_limit = 1 / (1 / decode + 1 / best)
        rows.append(
            [name, n, ours, naive, decode, best, ours / min(decode, best), ours / serial_limit, ours / naive, rss, wall]
        )
    out.append("## 1. Indexing a folder (files to searchable index)\n")
    out.append(
        table(
            [
                "folder",
                "images",
                "ours img/s",
                "naive img/s",
                "decode-only img/s",
                "encoder-only img/s (best batch)",
                "ours / lower limit",
                "ours / serial limit",
                "ours / naive",
                "CLI peak RSS MiB",
                "CLI wall s",
            ],
            rows,
        )
    )
    out.append(
        "\n*lower limit* = the slower of decoding alone and the encoder alone (reachable only if the two "
        "overlapped perfectly on separate cores); *serial limit* = both run back to back on the same cores "
        "(1 / (1/decode + 1/encoder)). CLI figures include Python and torch start-up.\n"
    )


def bench_sync_and_scale(work: Path, sizes: Sizes, out: list[str]) -> None:
    base = work / "scale-1"
    make_jpegs(base, sizes.jpegs, seed=1)
    rows_sync = []
    idx = work / "sync.idx"
    t = time.perf_counter()
    build_index(base, idx, progress=False)
    first = time.perf_counter() - t
    t = time.perf_counter()
    build_index(base, idx, progress=False)
    again = time.perf_counter() - t
    rows_sync.append([f"{sizes.jpegs} JPEG", first, again, again / first])
    omni = work / "omniglot" if (work / "omniglot").exists() else None
    if omni is not None:
        idx2 = work / "sync-omni.idx"
        t = time.perf_counter()
        build_index(omni, idx2, progress=False)
        first2 = time.perf_counter() - t
        t = time.perf_counter()
        build_index(omni, idx2, progress=False)
        again2 = time.perf_counter() - t
        rows_sync.append(["Omniglot 32,460 PNG", first2, again2, again2 / first2])
    out.append("## 2. Sync: re-running a build over an unchanged folder\n")
    out.append(table(["folder", "first build s", "re-run s", "re-run / first"], rows_sync))
    rows = []
    for m in sizes.scale:
        folder = work / f"scale-x{m}"
        if m == 1:
            folder = base
        else:
            for i in range(m):
                shutil.copytree(base, folder / f"copy{i}")
        n = len(scan_folder(folder).files)
        wall, rss = peak_rss_of(
            [*simsearch_cmd(), "index", "build", str(folder), "--index", str(work / f"scale{m}.idx"), "-q"]
        )
        rows.append([f"{m}x", n, wall, n / wall, rss])
    out.append("\n## 6a. How indexing cost grows with the folder\n")
    out.append(table(["folder", "images", "wall s (CLI)", "img/s", "peak RSS MiB"], rows))
    out.append("")


def _embedding_like(n: int, d: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(gallery (n, d), queries) of unit vectors shaped like real embeddings: classes of about 20
    members around centres that are themselves grouped (like characters within alphabets). The
    noise is set so that a query's top-1 and top-10 cosines (about 0.80 and 0.77) match those of the
    shipped encoder on Omniglot's evaluation set (0.88 and 0.77); queries are new members of
    gallery classes."""
    rng = np.random.default_rng(seed)
    roots = rng.standard_normal((50, d)).astype(np.float32)
    roots /= np.linalg.norm(roots, axis=1, keepdims=True)
    nc = max(1, n // 20)
    centres = roots[rng.integers(0, 50, nc)] + rng.normal(0, 1 / np.sqrt(d), (nc, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def members(m: int) -> np.ndarray:
        out = np.empty((m, d), np.float32)
        for s in range(0, m, 100_000):
            e = min(m, s + 100_000)
            v = centres[rng.integers(0, nc, e - s)] + rng.normal(0, 0.55 / np.sqrt(d), (e - s, d)).astype(np.float32)
            out[s:e] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out

    return members(n), members(queries)


def bench_search(work: Path, sizes: Sizes, out: list[str]) -> None:
    rows = []
    for d in (256, 128):
        for n in sizes.vectors:
            g, q = _embedding_like(n, d, sizes.queries, seed=n + d)
            ids = np.arange(n, dtype=np.int64)

            def brute() -> np.ndarray:
                return np.concatenate(
                    [np.argpartition(-(q[s : s + 100] @ g.T), 10, axis=1)[:, :10] for s in range(0, len(q), 100)]  # noqa: B023
                )

            gt = brute()
            numpy_qps = len(q) / best_of(brute)
            raw = faiss.IndexFlatIP(d)
            raw.add(g)
            raw_qps = len(q) / best_of(lambda: raw.search(q, 10))  # noqa: B023
            flat_mib = n * d * 4 / 2**20
            rows.append([d, n, "numpy brute force", 0.0, flat_mib, flat_mib, numpy_qps, 1.0, "-"])
            rows.append([d, n, "raw faiss IndexFlatIP", 0.0, flat_mib, flat_mib, raw_qps, 1.0, "-"])
            for kind in (IndexKind.FLAT, IndexKind.HNSW, IndexKind.IVFPQ):
                t = time.perf_counter()
                vi = VectorIndex(d, kind)
                for s in range(0, n, 65_536):
                    vi.add(g[s : s + 65_536], ids[s : s + 65_536])
                vi.finalize()
                build = time.perf_counter() - t
                mem = len(vi.to_bytes()) / 2**20
                exact = vi.exact_bytes()
                disk = mem + (sum(len(b) for b in exact) / 2**20 if exact else 0.0)
                _, got = vi.search(q, 10)
                qps = len(q) / best_of(lambda: vi.search(q, 10))  # noqa: B023
                recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, gt, strict=True)]))
                overhead = f"{raw_qps / qps - 1:+.1%}" if kind is IndexKind.FLAT else "-"
                rows.append([d, n, f"simsearch {kind.value}", build, mem, disk, qps, recall, overhead])
    out.append("## 4. Search alone: build, memory, queries per second, recall@10 against exact search\n")
    out.append(
        table(
            [
                "dim",
                "vectors",
                "index",
                "build s",
                "in memory MiB",
                "on disk MiB",
                "queries/s (batch)",
                "recall@10",
                "our layer's overhead vs raw faiss",
            ],
            rows,
        )
    )
    out.append(
        "\nQueries are searched as one batch of "
        f"{sizes.queries:,}; recall@10 is against exact inner-product search. Defaults: hnsw M=32, efConstruction=80, "
        "efSearch=128; ivfpq nlist=4*sqrt(N), dim/4 sub-quantizers of 8 bits, nprobe=64, the best 4k PQ candidates "
        "(at least 32) re-ranked by exact cosine from the memory-mapped float32 file (on disk, not resident: "
        "*in memory* counts the faiss index only). Vectors are synthetic but embedding-like (see _embedding_like in "
        "bench/run.py: classes of ~20 around grouped centres, neighbour cosines matched to the shipped encoder's "
        "on Omniglot). The query-time rows for 10k/100k/1M answer 6b.\n"
    )


def bench_query(work: Path, sizes: Sizes, out: list[str]) -> None:
    folder = work / "jpegs" if (work / "jpegs").exists() else make_jpegs(work / "jpegs", sizes.jpegs)
    idx = work / "query.idx"
    build_index(folder, idx, progress=False)
    files = [str(f.path) for f in scan_folder(folder).files]
    lat = []
    with Searcher(idx) as s:
        for f in files[: min(200, len(files))]:
            t = time.perf_counter()
            v, _ = s.embed_paths([f])
            s.search_vectors(v, [f], 5)
            lat.append(time.perf_counter() - t)
        batch = (files * (1 + sizes.queries // len(files)))[: sizes.queries]
        t = time.perf_counter()
        for start in range(0, len(batch), 256):
            chunk = batch[start : start + 256]
            v, _ = s.embed_paths(chunk)
            s.search_vectors(v, chunk, 5)
        qps = len(batch) / (time.perf_counter() - t)
    t = time.perf_counter()
    subprocess.run(
        [*simsearch_cmd(), "query", files[0], "--index", str(idx), "--json"], check=True, capture_output=True
    )
    cli = time.perf_counter() - t
    lat_ms = np.array(lat) * 1000
    out.append("## 3. Query latency (640x480 JPEG query, gallery of the generated folder)\n")
    out.append(
        table(
            [
                "in-process p50 ms",
                "in-process p99 ms",
                "CLI wall s (incl. start-up)",
                f"batch queries/s ({len(batch):,} images)",
                "CLI / in-process p50",
            ],
            [
                [
                    float(np.percentile(lat_ms, 50)),
                    float(np.percentile(lat_ms, 99)),
                    cli,
                    qps,
                    cli * 1000 / float(np.percentile(lat_ms, 50)),
                ]
            ],
        )
    )
    out.append("")


def bench_accuracy(work: Path, sizes: Sizes, out: list[str]) -> None:
    zip_path = SHARED / "omniglot" / "images_evaluation.zip"
    if not zip_path.exists():
        out.append("## 5. Accuracy\n\nskipped: ../shared/data/omniglot not present\n")
        return
    proc = subprocess.run(
        [
            *simsearch_cmd(),
            "evaluate",
            str(zip_path),
            "--table",
            "--episodes",
            str(sizes.episodes),
            "--seed",
            "0",
            "--json",
            *(["--classes", sizes.accuracy_classes] if sizes.accuracy_classes else []),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    res = json.loads(proc.stdout)
    rows = [
        [f"{r['way']}-way {r['shot']}-shot", f"{100 * r['accuracy']:.2f}", f"{100 * r['ci95']:.2f}"]
        for r in res["results"]
    ]
    v = res["verification"]
    out.append("## 5. Accuracy of the shipped encoder (Omniglot evaluation alphabets, never trained on)\n")
    out.append(table(["task", "accuracy %", "± 95% CI"], rows))
    out.append(f"\nVerification on {v['pairs']:,} random pairs: ROC AUC {v['auc']:.4f}, EER {v['eer']:.4f}.\n")


def bench_drawn(work: Path, sizes: Sizes, out: list[str]) -> None:
    """One-shot identification of drawn symbols in pens 2-4 px wide, with an 'unknown' for symbols the
    gallery lacks: the shipped encoder, the same weights with each of its drawing-specific input steps
    (contrast stretch, ink framing) toggled, and raw pixels."""
    from dataclasses import replace

    from simsearch.encoder import build_encoder
    from simsearch.evaluate.baselines import raw_pixel_embeddings
    from simsearch.images import to_array

    seeds = 100 if sizes.omniglot else 10
    names = list(SYMBOLS)
    shipped = load_checkpoint(None)
    pre = shipped.config.preprocess
    dev = torch.device("cpu")

    def toggled(**change: Any) -> Any:
        enc = build_encoder(replace(shipped.config, preprocess=replace(pre, **change)))
        enc.load_state_dict(shipped.encoder.state_dict())
        return enc.eval()

    def on(flag: bool) -> str:
        return "with" if flag else "without"

    # name -> (the preprocessing its arrays get, (N, C, S, S) uint8 -> (N, D) unit rows)
    embedders: dict[str, tuple[Any, Any]] = {
        f"{shipped.source} (shipped: {on(pre.autocontrast)} contrast stretch, {on(pre.fit_ink)} ink framing)": (
            pre,
            Embedder(shipped.encoder, dev).embed_arrays,
        )
    }
    stretchless = toggled(autocontrast=not pre.autocontrast)
    embedders[f"{shipped.source} weights {on(not pre.autocontrast)} contrast stretch"] = (
        stretchless.config.preprocess,
        Embedder(stretchless, dev).embed_arrays,
    )
    if pre.can_fit_ink:
        unframed = toggled(framing=Framing.CENTRE if pre.fit_ink else Framing.INK)
        embedders[f"{shipped.source} weights {on(not pre.fit_ink)} ink framing"] = (
            unframed.config.preprocess,
            Embedder(unframed, dev).embed_arrays,
        )
    raw_name = f"raw pixels (28x28{', ink framed' if pre.fit_ink else ''}, cosine)"
    embedders[raw_name] = (replace(pre, size=28), lambda a: raw_pixel_embeddings(a, 28))
    threshold = shipped.meta.get("threshold")
    counts = {k: [0, 0, 0] for k in embedders}  # right, known accepted and right, unknown rejected
    n_known = n_unknown = 0
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        gallery_names = [str(n) for n in rng.choice(names, 6, replace=False)]
        gallery = [draw_symbol(n, rng) for n in gallery_names]
        probes = [(n, draw_symbol(n, rng)) for n in names for _ in range(4)]
        known = np.array([n in gallery_names for n, _ in probes])
        n_known, n_unknown = n_known + int(known.sum()), n_unknown + int((~known).sum())
        probe_images = [img for _, img in probes]
        # (probe arrays, gallery arrays) per input framing: the stretch toggle shares the shipped one's
        framed: dict[tuple[int, float, Any], tuple[np.ndarray, np.ndarray]] = {}
        for key, (p, embed) in embedders.items():
            frame = (p.size, p.crop, p.ink)
            if frame not in framed:
                framed[frame] = (
                    np.stack([to_array(img, p) for img in probe_images]),
                    np.stack([to_array(img, p) for img in gallery]),
                )
            scores = embed(framed[frame][0]) @ embed(framed[frame][1]).T
            best = scores.argmax(1)
            right = np.array([gallery_names[j] == n for j, (n, _) in zip(best, probes, strict=True)])
            top = scores.max(1)
            counts[key][0] += int((right & known).sum())
            if threshold is not None and not key.startswith("raw"):
                counts[key][1] += int((right & known & (top >= threshold)).sum())
                counts[key][2] += int((~known & (top < threshold)).sum())
    rows: list[list[object]] = []
    for key, c in counts.items():
        raw = key.startswith("raw")
        rows.append([key, c[0] / n_known, "-" if raw else c[1] / n_known, "-" if raw else c[2] / n_unknown])
    out.append("## 5b. One-shot identification of drawn symbols, pens of any width\n")
    out.append(table(["encoder", "6-way 1-shot accuracy", "known: accepted and right", "unknown: rejected"], rows))
    out.append(
        f"\n{seeds} rounds (seeds 0-{seeds - 1}, `simsearch.symbols.draw_symbol`, pen 2-4 px on 105 px): each "
        f"draws one reference of 6 of the {len(names)} symbols and 4 new drawings of every symbol as probes "
        f"({n_known:,} known, {n_unknown:,} unknown probes in all); accepted = best score at or above the shipped "
        f"encoder's threshold ({threshold}).\n"
    )


def bench_service(work: Path, sizes: Sizes, out: list[str]) -> None:
    """`simsearch serve` under load: concurrent clients on loopback, each sending query images."""
    import socket
    import urllib.request
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    folder = work / "jpegs" if (work / "jpegs").exists() else make_jpegs(work / "jpegs", sizes.jpegs)
    idx = work / "service.idx"
    if not idx.exists():
        build_index(folder, idx, progress=False)
    files = [f.path for f in scan_folder(folder).files][:200]
    bodies = []
    for f in files:
        boundary = uuid.uuid4().hex
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{f.name}"\r\n\r\n'
        bodies.append((boundary, head.encode() + f.read_bytes() + f"\r\n--{boundary}--\r\n".encode()))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [*simsearch_cmd(), "serve", "--index", str(idx), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/health", timeout=5).read()
                break
            except OSError:
                time.sleep(0.1)

        def one(i: int) -> tuple[float, bool]:
            boundary, body = bodies[i % len(bodies)]
            path = "/search?k=5" if i % 2 == 0 else "/identify"
            req = urllib.request.Request(
                base + path, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
            )
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    ok = r.status == 200 and bool(json.loads(r.read()))
            except OSError:
                ok = False
            return time.perf_counter() - t, ok

        rows = []
        for clients in (1, 8):
            n = sizes.requests if clients > 1 else max(50, sizes.requests // 10)
            t = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                res = list(pool.map(one, range(n)))
            wall = time.perf_counter() - t
            lat = np.array([r[0] for r in res]) * 1000
            errors = sum(not r[1] for r in res)
            rows.append([clients, n, n / wall, float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), errors])
        stats = json.loads(urllib.request.urlopen(base + "/stats", timeout=10).read())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out.append("## 7. Search service under load (`simsearch serve`, loopback)\n")
    out.append(table(["concurrent clients", "requests", "requests/s", "p50 ms", "p99 ms", "errors"], rows))
    out.append(
        f"\nEach request uploads one of {len(bodies)} generated 640x480 JPEGs (about "
        f"{np.mean([len(b) for _, b in bodies]) / 1024:.0f} kB) as multipart `file`, alternating POST /search?k=5 "
        f"and POST /identify, over a {stats['count']:,}-image index; latency is the client's, including upload "
        "and JSON. The server decodes uploads in parallel threads and serializes embedding and search under one lock.\n"
    )


def _copy_gallery(work: Path, sizes: Sizes) -> tuple[Path, str]:
    """The copy-detection gallery: held-out clothing test/ photos plus LFW people K to Z when
    ../shared/data is present (full size), else generated photos."""
    clothing = SHARED / "clothing" / "clothing-small-256.zip"
    lfw = SHARED / "lfw" / "lfw-deepfunneled.zip"
    root = work / "copy-gallery"
    if sizes.omniglot and clothing.exists() and lfw.exists():
        for zpath, keep in ((clothing, r"clothing-small-256/test/"), (lfw, r"lfw-deepfunneled/[K-Z]")):
            with zipfile.ZipFile(zpath) as zf:
                zf.extractall(root, [n for n in zf.namelist() if re.match(keep, n) and not n.endswith("/")])
        return root, "clothing test/ (372 photos) + LFW people K-Z (5,922 photos)"
    write_photos(root, 200, seed=11)
    return root, "200 generated photos"


def bench_copy_detection(work: Path, sizes: Sizes, out: list[str]) -> None:
    """Reverse image search under edits: our encoders against perceptual hashes and raw pixels."""
    gallery, what = _copy_gallery(work, sizes)
    # not faces: it finds a face before it embeds, and a copy-detection gallery is not of faces
    models = [m for m in ("photos", "characters") if m in builtin_models()]
    baselines = ["raw-pixels"]
    try:
        import imagehash  # noqa: F401

        baselines += ["phash", "dhash"]
    except ImportError:
        pass
    queries = "300" if sizes.omniglot else "20"
    cmd = [*simsearch_cmd(), "evaluate", str(gallery), "--copy-detection", "--model", models[0]]
    for m in [*models[1:], *baselines]:
        cmd += ["--compare", m]
    res = json.loads(
        subprocess.run(
            [*cmd, "--queries", queries, "--seed", "0", "--json"], check=True, capture_output=True, text=True
        ).stdout
    )
    names = [r["model"] for r in res["results"]]
    rows = []
    for i, row in enumerate(res["results"][0]["rows"]):
        cells = [f"{r['rows'][i]['recall@1']:.3f} / {r['rows'][i]['recall@10']:.3f}" for r in res["results"]]
        rows.append([row["edit"], row["queries"], *cells])
    maps = ["mAP", "", *(f"{r['rows'][-1]['mAP']:.3f}" for r in res["results"])]
    out.append("## 8. Copy detection: find the original of an edited copy (recall@1 / recall@10)\n")
    out.append(
        f"Gallery: {what}, {res['gallery']:,} images; queries: every edit type applied to {res['originals_queried']} "
        f"originals drawn with seed 0 ({res['queries']:,} copies); the other originals are distractors. "
        f"Baselines: raw pixels (32x32, cosine), and pHash / dHash from the imagehash library ranked by Hamming "
        f"distance (ties broken at random), as imagededup's hashing methods do.\n"
    )
    out.append(table(["edit", "queries", *names], [*rows, maps]))
    if "phash" not in names:
        out.append("\n(imagehash not installed: `pip install 'simsearch[bench]'` adds the hash baselines)\n")


def _evaluate_json(args: list[str]) -> dict:
    proc = subprocess.run([*simsearch_cmd(), "evaluate", *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(proc.stdout)


def bench_open_set(work: Path, sizes: Sizes, out: list[str]) -> None:
    """Open-set identification: galleries calibrated on themselves (as an index is at build), FPIR stated
    against FPIR observed on classes nothing was tuned on, FNIR, nearest-class accuracy; and Lake's
    within-alphabet 20-way one-shot runs. Every run is `simsearch evaluate --open-set` / `--lake`."""
    runs = "100" if sizes.omniglot else "10"
    omni = SHARED / "omniglot" / "images_evaluation.zip"
    lfw = SHARED / "lfw" / "lfw-deepfunneled.zip"
    plans = [
        ("characters", omni, ["--model", "characters", "--open-set", "--sizes", "20,100,300"]),
        ("faces", lfw, ["--classes", "[K-Z]*", "--model", "faces", "--open-set", "--sizes", "20,100,1000"]),
        (
            "photos (edited copies)",
            lfw,
            ["--classes", "[K-Z]*", "--model", "photos", "--copy-detection", "--open-set", "--sizes", "20,100,1000"],
        ),
    ]
    if not sizes.omniglot:  # small: drawn symbols, to check the section runs anywhere
        from simsearch.symbols import SYMBOLS, write_symbol_set

        write_symbol_set(work / "open_symbols", list(SYMBOLS), per_class=6, seed=4)
        plans = [
            (
                "characters (drawn symbols)",
                work / "open_symbols",
                ["--model", "characters", "--open-set", "--sizes", "4", "--shot", "2"],
            )
        ]
    out.append("## 9. Open-set identification: the FPIR a threshold states against the FPIR observed\n")
    rows, commands = [], []
    for name, data, args in plans:
        if not data.exists():
            rows.append([name, "-", "skipped: data not present", "", "", "", "", "", ""])
            continue
        cmd = ["simsearch", "evaluate", str(data).replace(str(SHARED), "../shared/data"), *args, "--runs", runs]
        commands.append(" ".join(f"'{a}'" if "*" in a else a for a in cmd))
        for r in _evaluate_json([str(data), *args, "--runs", runs])["results"]:
            t = {x["threshold"]: x for x in r["thresholds"]}
            g1, g10 = t["gallery-fitted, FPIR 0.01"], t["gallery-fitted, FPIR 0.1"]
            enc = t.get("encoder's threshold (pair FAR 0.01)")
            rows.append(
                [
                    name,
                    f"{r['gallery_classes']:,}",
                    f"{100 * r['nearest_class_accuracy']:.1f}",
                    f"{100 * r['fnir_at_fpir_0.01']:.1f} / {100 * r['fnir_at_fpir_0.1']:.1f}",
                    f"{g1['observed_fpir']:.4f} ({g1['ratio']:.2f}x)",
                    f"{100 * g1['fnir']:.1f}",
                    f"{g10['observed_fpir']:.3f} ({g10['ratio']:.2f}x)",
                    f"{100 * g10['fnir']:.1f}",
                    f"{enc['observed_fpir']:.3f}" if enc else "-",
                ]
            )
    header = [
        "encoder",
        "gallery classes",
        "nearest class right %",
        "FNIR % at FPIR 1% / 10% (hindsight)",
        "FPIR observed at the gallery's 1% threshold",
        "FNIR % there",
        "FPIR observed at its 10% threshold",
        "FNIR % there",
        "FPIR at the encoder's pair threshold",
    ]
    out.append(table(header, rows))
    out.append(
        f"\n{runs} galleries a size, one image a class, seeded; known probes: up to 5 other images of each gallery "
        "class; unknown probes: one image of each of as many classes outside the gallery. Each gallery fitted "
        "its own thresholds the way `index build` does (each image probing the rest), and they were then applied "
        'to the probes; the ratio is observed over stated FPIR. "Hindsight": thresholds chosen on the pooled '
        "unknown probes themselves (what the encoder can do at that FPIR). Photos: each photo is its own class, "
        "probes are edited copies (one edit type each, all 11 in turn) of gallery photos and of other photos.\n\n"
        + "\n".join(f"    {c}" for c in commands)
        + "\n"
    )
    if sizes.omniglot and omni.exists():
        lake_rows = []
        res = _evaluate_json([str(omni), "--model", "characters", "--lake", "--runs", "400"])
        for r in res["results"]:
            t = {x["threshold"]: x for x in r["thresholds"]}
            g1, g10, enc = (
                t["gallery-fitted, FPIR 0.01"],
                t["gallery-fitted, FPIR 0.1"],
                t["encoder's threshold (pair FAR 0.01)"],
            )
            lake_rows.append(
                [
                    r["unknown_probes_from"],
                    f"{100 * r['nearest_class_accuracy']:.1f}",
                    f"{100 * r['fnir_at_fpir_0.01']:.1f} / {100 * r['fnir_at_fpir_0.1']:.1f}",
                    f"{g1['observed_fpir']:.4f} / {100 * g1['fnir']:.1f}",
                    f"{g10['observed_fpir']:.3f} / {100 * g10['fnir']:.1f}",
                    f"{enc['observed_fpir']:.3f} / {100 * enc['fnir']:.1f}",
                ]
            )
        out.append(
            "\nLake's within-alphabet 20-way one-shot runs (Omniglot evaluation alphabets; 400 runs, seed 0: 20 "
            "characters of one alphabet drawn by one drawer are the gallery, the same characters by another drawer "
            "the known probes, 20 more characters by that drawer the unknown ones). Published closed-set accuracy "
            "on Lake's 20 runs: Siamese network (Koch et al. 2015) 92.0%, people 95.5%, BPL 96.7%.\n\n"
            "    simsearch evaluate ../shared/data/omniglot/images_evaluation.zip --model characters --lake --runs 400\n"
        )
        out.append(
            table(
                [
                    "unknown probes from",
                    "closed-set accuracy %",
                    "FNIR % at FPIR 1% / 10% (hindsight)",
                    "gallery's 1% threshold: FPIR / FNIR %",
                    "gallery's 10%: FPIR / FNIR %",
                    "encoder's pair threshold: FPIR / FNIR %",
                ],
                lake_rows,
            )
        )


def bench_duplicates(work: Path, sizes: Sizes, out: list[str]) -> None:
    """The default `duplicates` threshold of each built-in encoder (bench/duplicate_thresholds.py): the score
    pairs of distinct training pictures reach at a false-match rate of 1e-5, and the edited copies it finds."""
    sys.path.insert(0, str(REPO / "bench"))
    import duplicate_thresholds as dt

    out.append("## 10. Default duplicate thresholds: false matches against edited copies found\n")
    rows = []
    if not sizes.omniglot:  # small: the characters encoder on drawn symbols, to check the section runs
        from simsearch.symbols import SYMBOLS, write_symbol_set

        write_symbol_set(work / "dup_symbols", list(SYMBOLS), per_class=12, seed=5)
        r = dt.measure_on("characters", work / "dup_symbols", None, "drawn symbols", fmr=1e-3, sample=120)
        rows.append(
            [
                f"characters (small: fmr {r['fmr']:g})",
                f"{r['threshold']:.4f}",
                f"{r['pairs']:,}",
                f"{r['copies_found']:.3f}",
                "-",
                r["measured_on"],
            ]
        )
    for name, (rel, _) in dt.REFERENCE.items() if sizes.omniglot else ():
        if not (SHARED / rel).exists():
            rows.append([name, "-", "-", "-", "skipped: data not present", ""])
            continue
        r = dt.measure(name, SHARED)
        worst = sorted(r["copies_found_by_edit"].items(), key=lambda kv: kv[1])[:3]
        rows.append(
            [
                name,
                f"{r['threshold']:.4f}",
                f"{r['pairs']:,}",
                f"{r['copies_found']:.3f}",
                ", ".join(f"{e} {v:.2f}" for e, v in worst),
                r["measured_on"],
            ]
        )
    out.append(table(["encoder", "threshold", "distinct pairs", "copies found", "hardest edits", "measured on"], rows))
    out.append(
        "\nThe threshold is the score a share 1e-5 of pairs of distinct pictures (different bytes) of the encoder's "
        "training data reach; `simsearch duplicates` uses it by default (recorded in each model.json by "
        "`python bench/duplicate_thresholds.py --write`). Copies found: one edited copy of each of 600 of those "
        "pictures (the 11 edit types in turn) scoring at least the threshold against its original.\n"
    )


def make_big_photos(root: Path, n: int, fmt: str = "JPEG", seed: int = 0) -> Path:
    """n 4000x3000 (12-megapixel) photo-like pictures: a colour gradient and random shapes, as JPEG or HEIC."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    base = Image.linear_gradient("L").resize((4000, 3000))
    for i in range(n):
        c = rng.integers(0, 255, 3)
        img = Image.merge("RGB", [base.point(lambda v, add=int(c[k]): (v + add) % 256) for k in range(3)])
        draw = ImageDraw.Draw(img)
        for _ in range(25):
            x, y = rng.integers(0, 3600), rng.integers(0, 2600)
            w, h = rng.integers(100, 1400, 2)
            draw.ellipse((x, y, x + w, y + h), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        if fmt == "HEIC":
            import pillow_heif

            pillow_heif.from_pillow(img).save(root / f"{i:05d}.heic", quality=85)
        else:
            img.save(root / f"{i:05d}.jpg", quality=90)
    return root


def bench_intake(work: Path, sizes: Sizes, out: list[str]) -> None:
    """Big photos to index: decoding at the scale the encoder needs, against the decode and encoder limits."""
    from concurrent.futures import ThreadPoolExecutor

    from simsearch.images import decode_image, to_array

    model = load_checkpoint("photos")
    dev = resolve_device("auto")
    pre = model.config.preprocess
    threads = min(8, (os.cpu_count() or 1) + 1)
    folders = [("12 MP JPEG", make_big_photos(work / "big-jpeg", sizes.big_jpegs))]
    try:
        folders.append(("12 MP HEIC", make_big_photos(work / "big-heic", max(1, sizes.big_jpegs // 10), "HEIC", 1)))
    except ImportError:
        pass
    rows = []
    for name, folder in folders:
        files = [f.path for f in scan_folder(folder).files]
        n = len(files)
        with ThreadPoolExecutor(threads) as pool:
            t = time.perf_counter()
            list(pool.map(lambda f: to_array(decode_image(f, channels=pre.channels), pre), files))
            full = n / (time.perf_counter() - t)
            t = time.perf_counter()
            arrays = list(pool.map(lambda f: load_array(f, pre), files))
            needed = n / (time.perf_counter() - t)
        stacked = np.stack(arrays)
        embedder = Embedder(model.encoder, dev)
        t = time.perf_counter()
        embedder.embed_arrays(stacked, batch_size=256)
        encoder = n / (time.perf_counter() - t)
        t = time.perf_counter()
        build_index(folder, work / f"intake-{folder.name}", model="photos", progress=False, kind="flat")
        ours = n / (time.perf_counter() - t)
        serial = 1 / (1 / needed + 1 / encoder)  # both on the same cores, one after the other
        rows.append([name, n, full, needed, needed / full, encoder, ours, ours / min(needed, encoder), ours / serial])
    out.append("## 11. Intake of big photos (12 megapixels; `photos` encoder, 64-pixel input)\n")
    out.append(
        table(
            [
                "files",
                "count",
                "full-size decode/s",
                "decode at needed scale/s",
                "speed-up",
                "encoder alone/s",
                "ours files-to-index/s",
                "ours / slower limit",
                "ours / shared-core limit",
            ],
            rows,
        )
    )
    out.append(
        f"\nDecoding runs in {threads} threads. A JPEG is decoded by libjpeg at the smallest of 1/2, 1/4, 1/8 scale "
        "whose shorter side is still twice the encoder's input (`Image.draft`); HEIC has no reduced decode, so "
        "it is decoded whole. Encoder alone: the decoded inputs embedded in batches of 256. Ours: `build_index` "
        "from files to a committed index (read, hash, decode, embed, write). The target is ours >= 0.8 of the "
        "slower of decoding and the encoder, measured in the same run. Without a GPU, decoding and the encoder "
        "share the same cores, so the reachable limit is the shared-core one, 1 / (1/decode + 1/encoder); "
        "with the encoder on a GPU the slower limit is decoding alone.\n"
    )


def bench_distributed(work: Path, sizes: Sizes, out: list[str]) -> None:
    """`index build --cluster local`: one worker against two on this machine, and the local build."""
    from simsearch.engine.distributed import build_distributed

    folder = make_jpegs(work / "spread", sizes.spread, seed=5)
    n = len(scan_folder(folder).files)
    rows = []
    t = time.perf_counter()
    build_index(folder, work / "spread-local.idx", model="photos", progress=False)
    local = time.perf_counter() - t
    rows.append(["local build (one process, its threads)", n, local, n / local, 1.0])
    # the small size checks the path with two workers only (each cluster start costs seconds)
    for workers in (1, 2) if sizes.spread >= 1000 else (2,):
        t = time.perf_counter()
        build_distributed(folder, work / f"spread-{workers}.idx", workers=workers, model="photos", progress=False)
        wall = time.perf_counter() - t
        rows.append([f"Dask local cluster, {workers} worker(s)", n, wall, n / wall, local / wall])
    ivf_rows = []
    if n >= 1000:  # ivfpq trains on at least 1,000 vectors
        t = time.perf_counter()
        build_index(folder, work / "spread-local-ivf.idx", model="photos", kind="ivfpq", progress=False)
        local_ivf = time.perf_counter() - t
        ivf_rows.append(["local build, --kind ivfpq", n, local_ivf, n / local_ivf, 1.0])
        t = time.perf_counter()
        build_distributed(folder, work / "spread-2-ivf.idx", workers=2, model="photos", kind="ivfpq", progress=False)
        wall = time.perf_counter() - t
        ivf_rows.append(["Dask local cluster, 2 workers, --kind ivfpq (shards added on workers, merged)", n, wall,
                         n / wall, local_ivf / wall])  # fmt: skip
    out.append("## 12. Distributed build (Dask, local cluster on loopback)\n")
    out.append(table(["build", "images", "seconds", "images/s", "speed vs local"], rows + ivf_rows))
    two_vs_one = f" Two workers against one: {rows[1][2] / rows[2][2]:.2f}x." if len(rows) == 3 else ""
    out.append(
        f"\nGenerated 640x480 JPEGs, `photos` encoder; the cluster's time includes starting and stopping its worker "
        f"processes and each loading the encoder.{two_vs_one} On one "
        "2-core machine the workers share the two cores the local build also uses (it decodes in threads while it "
        "embeds), so the cluster can only match it here, within the noise of a shared machine; what a cluster "
        "buys is more machines (docs/scale.md). The ivfpq rows train once in the coordinator, add each shard on "
        "a worker and merge the inverted lists in id order (the same lists as the local ivfpq build; "
        "tests/engine/test_distributed.py); their speed is against the local ivfpq build.\n"
    )


SECTIONS = {
    "indexing": bench_indexing,
    "sync": bench_sync_and_scale,
    "query": bench_query,
    "search": bench_search,
    "accuracy": bench_accuracy,
    "drawn": bench_drawn,
    "service": bench_service,
    "copy": bench_copy_detection,
    "openset": bench_open_set,
    "duplicates": bench_duplicates,
    "intake": bench_intake,
    "distributed": bench_distributed,
}


def _blocks(text: str) -> tuple[str, dict[str, str]]:
    """(text before the first '## ' heading, {heading key: block}) in order; key is '## 6a' etc."""
    chunks = re.split(r"(?m)^(?=## )", text)
    head, blocks = chunks[0], {}
    for c in chunks[1:]:
        blocks[c.split(".", 1)[0].strip()] = c
    return head, blocks


def merge_sections(old: str, new: str, provenance: str) -> str:
    head, blocks = _blocks(old)
    _, fresh = _blocks(new)
    for key, block in fresh.items():
        title, _, rest = block.partition("\n")
        blocks[key] = f"{title}\n\nMeasured separately: `{provenance}`\n{rest}"
    ordered = sorted(blocks, key=lambda k: (int(re.sub(r"\D", "", k) or 0), k))
    return head + "".join(blocks[k].rstrip("\n") + "\n\n" for k in ordered)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections: " + ", ".join(SECTIONS))
    ap.add_argument(
        "--out", type=Path, default=REPO / "BENCHMARKS.md", help="markdown file to rewrite ('-' = print only)"
    )
    args = ap.parse_args()
    sizes = SIZES[args.size]
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; allowed: {', '.join(SECTIONS)}")
    command = "python bench/run.py " + " ".join(sys.argv[1:])
    parts = [f"# Benchmarks\n\nCommand: `{command}`\n\nMachine: {machine()}\n"]
    with tempfile.TemporaryDirectory(prefix="simsearch-bench-") as tmp:
        work = Path(tmp)
        for name in chosen:
            t = time.perf_counter()
            SECTIONS[name](work, sizes, parts)
            print(f"[{name}: {time.perf_counter() - t:.0f}s]", file=sys.stderr, flush=True)
            print(parts[-2] if len(parts) > 1 else "", parts[-1], sep="\n", flush=True)
    text = "\n".join(parts) + "\n"
    if str(args.out) != "-":
        if set(chosen) != set(SECTIONS) and args.out.exists():
            # a partial run updates its own sections in place, each marked with the command that made it
            text = merge_sections(args.out.read_text(), "\n".join(parts[1:]), f"{command}; {machine()}")
        args.out.write_text(text)
    print(
        f"peak RSS of the harness: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", file=sys.stderr
    )


if __name__ == "__main__":
    main()
