"""A build whose embedding runs on a Dask cluster (`index build --cluster`): a local one started here on
loopback, or one at an address such as tcp://scheduler:8786.

The folder is listed here and cut into shards of files. Each worker loads the encoder once (on its GPU
when it has one), decodes and embeds its shards, and sends each back as a Parquet table (file facts and
embeddings, or the reason a file could not be read). Here the shards are taken in order and the index is
written in one commit, exactly as a local build would write it: the same ids (in the folder's order),
paths, labels and vectors (within float tolerance), so query, identify, serve and sync use it unchanged.
The workers must see the images at the same paths (a shared file system).

With `--kind ivfpq` the index structure is distributed too: the coarse quantizer and the PQ codebooks
are trained once, here, on a seeded sample (as a local build trains them); each shard's vectors are added
to a copy of that trained, empty index on a worker, under their global ids; and the workers' inverted
lists are merged here, shard by shard in id order (faiss's IndexIVF.merge_from, the in-memory form of
its on-disk merge), so the lists are the ones a local build makes. What stays on one machine: the exact
float32 vectors that re-rank the PQ candidates, and the merged index itself (docs/scale.md says how it
goes beyond one machine's memory).
"""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from index.catalog import Record
from index.store import IndexStore, Transaction
from index.vector_index import IVF_MIN
from simsearch.engine.compat import encoder_record
from simsearch.engine.exchange import embedding_column, embeddings_of
from simsearch.engine.sync import BuildReport, StrictModeError, commit_measured, encoder_fit_warnings
from simsearch.errors import DataError, ImageError
from simsearch.images import Skipped, scan_folder

__all__ = ["build_distributed", "embed_shard"]

_MODELS: dict[tuple[str | None, str], Any] = {}  # per worker process: the encoder, loaded once
_MODELS_LOCK = threading.Lock()


def _dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise DataError("--cluster needs Dask: pip install 'simsearch[distributed]'") from None
    return distributed


def embed_shard(paths: list[str], model: str | None, device: str, batch_size: int, torch_threads: int | None) -> bytes:
    """On a worker: embed a shard of files; a Parquet table of one row per file, in order: ok, error,
    size, mtime, sha256 and the embedding (zeros where the file could not be read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from simsearch.embed import Embedder

    if torch_threads:
        torch.set_num_threads(torch_threads)
    with _MODELS_LOCK:
        embedder = _MODELS.get((model, device))
        if embedder is None:
            embedder = _MODELS[(model, device)] = Embedder.load(model, device)
    n, dim = len(paths), embedder.dim
    vectors = np.zeros((n, dim), np.float32)
    ok = np.zeros(n, bool)
    errors: list[str | None] = [None] * n
    size = np.zeros(n, np.int64)
    mtime = np.zeros(n, np.float64)
    sha: list[str | None] = [None] * n

    def on_error(pos: int, err: ImageError) -> None:
        errors[pos] = err.reason

    workers = max(1, torch_threads or 1)
    for batch in embedder.stream(paths, batch_size=batch_size, workers=workers, on_error=on_error, progress=False):
        for row, pos in enumerate(batch.positions):
            vectors[pos], ok[pos] = batch.vectors[row], True
            size[pos], mtime[pos], sha[pos] = batch.facts[row].size, batch.facts[row].mtime, batch.facts[row].sha256
    table = pa.table(
        {
            "ok": ok,
            "error": pa.array(errors, type=pa.string()),
            "size": size,
            "mtime": mtime,
            "sha256": pa.array(sha, type=pa.string()),
            "embedding": embedding_column(vectors),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def add_shard(trained: bytes, vectors: np.ndarray, ids: np.ndarray) -> bytes:
    """On a worker: one shard's vectors added to a copy of the trained IVF-PQ index (serialized)."""
    from index.vector_index import ivfpq_add_shard

    return ivfpq_add_shard(trained, vectors, ids)


def _read_shard(data: bytes) -> dict[str, Any]:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    return {
        "ok": table.column("ok").to_numpy(zero_copy_only=False),
        "error": table.column("error").to_pylist(),
        "size": table.column("size").to_numpy(),
        "mtime": table.column("mtime").to_numpy(),
        "sha256": table.column("sha256").to_pylist(),
        "vectors": embeddings_of(table.column("embedding")),
    }


def build_distributed(
    folder: str | os.PathLike[str],
    index: str | os.PathLike[str],
    cluster: str = "local",
    workers: int = 2,
    model: str | None = None,
    device: str = "auto",
    batch_size: int = 256,
    shard_files: int = 512,
    kind: str | None = None,
    overwrite: bool = False,
    strict: bool = False,
    progress: bool = True,
) -> BuildReport:
    """Build a new index from `folder` with the embedding done on a Dask cluster: `cluster` "local" starts
    `workers` worker processes on this machine, bound to 127.0.0.1 (one thread each, the cores shared
    between them), and stops them at the end; an address (tcp://host:8786) uses that cluster's workers.
    The result is the index a local `build_index` makes of the same folder."""
    from tqdm import tqdm

    from simsearch.checkpoint import load_checkpoint

    distributed = _dask()
    start = time.monotonic()
    root, index_path = Path(folder), Path(index)
    if IndexStore.exists(index_path) and not overwrite:
        raise DataError(
            f"{index_path}: an index is already there; a distributed build makes a new one (give --overwrite), "
            "and a sync (`index build` without --cluster) embeds only what changed"
        )
    scan = scan_folder(root)
    report = BuildReport(index=str(index_path), skipped=list(scan.skipped), created=True)
    loaded = load_checkpoint(model)  # here only for its record and width; the workers load their own
    report.warnings += encoder_fit_warnings(loaded, [f.path for f in scan.files])
    files = [str(Path(os.path.abspath(f.path))) for f in scan.files]
    if kind == "ivfpq" and len(files) < IVF_MIN:  # refused before any embedding is done
        raise DataError(
            f"ivfpq needs at least {IVF_MIN:,} vectors to train, and {root} holds {len(files):,} images; "
            "use --kind flat or auto"
        )
    labels = [f.label for f in scan.files]
    shards = [files[i : i + shard_files] for i in range(0, len(files), shard_files)]
    cores = os.cpu_count() or 1
    local = cluster == "local"
    torch_threads = max(1, cores // workers) if local else None
    cluster_obj = None
    if local:
        cluster_obj = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=50,
        )
        client = distributed.Client(cluster_obj)
    else:
        try:
            client = distributed.Client(cluster, timeout=30)
        except (OSError, TimeoutError) as err:
            raise DataError(f"cannot reach the Dask cluster at {cluster} ({err})") from None
    results: dict[int, dict[str, Any]] = {}
    bar = tqdm(total=len(files), desc="embedding", unit="img", disable=not progress, dynamic_ncols=True)
    try:
        futures = {
            client.submit(
                embed_shard,
                shard,
                model,
                device,
                batch_size,
                torch_threads,
                key=f"simsearch-shard-{n}-{time.time_ns()}",
            ): n
            for n, shard in enumerate(shards)
        }
        for fut in distributed.as_completed(futures):
            n = futures[fut]
            results[n] = _read_shard(fut.result())
            fut.release()
            bar.update(len(shards[n]))
        bar.close()
        with Transaction.create(
            index_path, loaded.config.embedding_dim, encoder_record(loaded), kind=kind or "auto"
        ) as tx:
            parts = []  # per shard: (vectors, records), in the folder's order
            for n in range(len(shards)):
                got = results.pop(n)
                base = n * shard_files
                keep = np.flatnonzero(got["ok"])
                for pos in np.flatnonzero(~got["ok"]):
                    report.skipped.append(Skipped(files[base + pos], got["error"][pos] or "could not be read"))
                if strict and report.skipped:
                    raise StrictModeError(report.skipped)
                if not len(keep):
                    continue
                ids = tx.new_ids(len(keep))
                records = [
                    Record(
                        int(i),
                        files[base + p],
                        labels[base + p],
                        int(got["size"][p]),
                        float(got["mtime"][p]),
                        got["sha256"][p],
                    )
                    for i, p in zip(ids, keep, strict=True)
                ]
                parts.append((np.ascontiguousarray(got["vectors"][keep]), records))
                report.added += len(records)
            if not parts and not report.skipped:
                raise DataError(f"{root}: no image files found (looked for .jpg, .png, .gif, .bmp, .tif, .webp ...)")
            if kind == "ivfpq" and parts:
                _merge_ivfpq_shards(tx, parts, client, progress)
            else:
                for vectors, records in parts:
                    tx.add(vectors, records)
            report.total = commit_measured(tx, gallery=os.path.abspath(root)).count
    finally:
        bar.close()
        client.close()
        if cluster_obj is not None:
            cluster_obj.close()
    report.elapsed_s = time.monotonic() - start
    return report


def _merge_ivfpq_shards(
    tx: Transaction, parts: list[tuple[np.ndarray, list[Record]]], client: Any, progress: bool
) -> None:
    """Train the IVF-PQ index here on a sample, add each shard to a copy of it on a worker, merge the
    shards' inverted lists in id order, and give the result to the transaction."""
    import faiss
    from tqdm import tqdm

    from index.vector_index import IVF_TRAIN, VectorIndex, trained_ivfpq

    vectors = np.concatenate([v for v, _ in parts])
    ids = np.array([r.id for _, recs in parts for r in recs], dtype=np.int64)
    trained = faiss.serialize_index(trained_ivfpq(vectors.shape[1], vectors[:IVF_TRAIN], tx.base.kind_params)).tobytes()
    shared = client.scatter(trained, broadcast=True)
    futures, start = [], 0
    for part, records in parts:
        futures.append(client.submit(add_shard, shared, part, ids[start : start + len(records)], pure=False))
        start += len(records)
    shards = []
    for fut in tqdm(futures, desc="adding shards", unit="shard", disable=not progress, dynamic_ncols=True):
        shards.append(fut.result())  # in id order: the merged lists are the ones a local build makes
        fut.release()
    merged = VectorIndex.ivfpq_from_shards(trained, shards, ids, vectors, tx.base.kind_params)
    tx.adopt(merged, [r for _, recs in parts for r in recs])
