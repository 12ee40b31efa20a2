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
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from index.catalog import Record
from index.store import Transaction
from index.vector_index import IVF_MIN
from simsearch.engine.exchange import embedding_column, embeddings_of
from simsearch.engine.sync import BuildReport, build_index
from simsearch.errors import DataError, ImageError

if TYPE_CHECKING:
    from simsearch.embed import Embedded

__all__ = ["ClusterEmbedding", "build_distributed", "embed_shard"]

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


class ClusterEmbedding:
    """Embedding on a Dask cluster (engine.sync.Embedding): `cluster` "local" starts `workers` worker processes
    on this machine, bound to 127.0.0.1 (one thread each, the cores shared between them), and stops them on
    close; an address (tcp://host:8786) uses that cluster's workers. The files are cut into shards of
    `shard_files`, embedded on the workers and taken back in order. With kind "ivfpq" the vectors are not added
    one batch at a time: `finish` builds the index's inverted lists on the workers and merges them here."""

    def __init__(
        self,
        cluster: str = "local",
        workers: int = 2,
        model: str | None = None,
        device: str = "auto",
        batch_size: int = 256,
        shard_files: int = 512,
        kind: str | None = None,
        progress: bool = True,
        folder: str | os.PathLike[str] = ".",
    ) -> None:
        from simsearch.checkpoint import load_checkpoint

        self.distributed = _dask()
        self.loaded = load_checkpoint(model)  # here only for its record and width; the workers load their own
        self.model, self.device, self.batch_size, self.shard_files = model, device, batch_size, shard_files
        self.ivfpq, self.progress, self.folder = kind == "ivfpq", progress, folder
        self.parts: list[tuple[np.ndarray, list[Record]]] = []
        self.address, self.workers = cluster, workers
        self.torch_threads = max(1, (os.cpu_count() or 1) // workers) if cluster == "local" else None
        self.cluster: Any = None
        self.client: Any = None

    def _start(self) -> None:
        """Start the local cluster, or connect to the one at the address (once, at the first files to embed)."""
        if self.client is not None:
            return
        if self.address == "local":
            self.cluster = self.distributed.LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=50,
            )
            self.client = self.distributed.Client(self.cluster)
        else:
            try:
                self.client = self.distributed.Client(self.address, timeout=30)
            except (OSError, TimeoutError) as err:
                raise DataError(f"cannot reach the Dask cluster at {self.address} ({err})") from None

    def __enter__(self) -> ClusterEmbedding:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def check(self, files: int) -> None:
        if self.ivfpq and files < IVF_MIN:  # refused before any embedding is done
            raise DataError(
                f"ivfpq needs at least {IVF_MIN:,} vectors to train, and {self.folder} holds {files:,} "
                "images; use --kind flat or auto"
            )
        self._start()  # an unreachable cluster is refused before the index is created

    def stream(self, paths: list[str], on_error: Any) -> Iterator[Embedded]:
        from tqdm import tqdm

        self._start()
        size = self.shard_files
        shards = [paths[i : i + size] for i in range(0, len(paths), size)]
        futures = {
            self.client.submit(
                embed_shard,
                shard,
                self.model,
                self.device,
                self.batch_size,
                self.torch_threads,
                key=f"simsearch-shard-{n}-{time.time_ns()}",
            ): n
            for n, shard in enumerate(shards)
        }
        done: dict[int, dict[str, Any]] = {}
        following = 0  # the next shard to hand on: shards come back in any order, and go on in the files' order
        with tqdm(total=len(paths), desc="embedding", unit="img", disable=not self.progress, dynamic_ncols=True) as bar:
            for fut in self.distributed.as_completed(futures):
                n = futures[fut]
                done[n] = _read_shard(fut.result())
                fut.release()
                bar.update(len(shards[n]))
                while following in done:
                    yield from _shard_batch(done.pop(following), following * size, paths, on_error)
                    following += 1

    def add(self, tx: Transaction, vectors: np.ndarray, records: list[Record]) -> None:
        if self.ivfpq:
            self.parts.append((np.ascontiguousarray(vectors), records))
        else:
            tx.add(vectors, records)

    def finish(self, tx: Transaction) -> None:
        if self.ivfpq and self.parts:
            _merge_ivfpq_shards(tx, self.parts, self.client, self.progress)


def _shard_batch(got: dict[str, Any], base: int, paths: list[str], on_error: Any) -> Iterator[Embedded]:
    """One shard's table as the batch a local build streams (positions into all the files)."""
    from simsearch.embed import Embedded, FileFacts

    for pos in np.flatnonzero(~got["ok"]):
        on_error(base + int(pos), ImageError(paths[base + pos], got["error"][pos] or "could not be read"))
    keep = np.flatnonzero(got["ok"])
    if len(keep):
        facts = [FileFacts(int(got["size"][p]), float(got["mtime"][p]), got["sha256"][p]) for p in keep]
        yield Embedded([base + int(p) for p in keep], got["vectors"][keep], facts)


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
    """Build a new index from `folder` with the embedding done on a Dask cluster (ClusterEmbedding): the one
    build of engine.sync, so the result is the index a local `build_index` makes of the same folder."""
    # an index already there is refused by build_index (a cluster's embedding makes new indexes only), and the
    # cluster is started only once the build has checked everything else
    with ClusterEmbedding(cluster, workers, model, device, batch_size, shard_files, kind, progress, folder) as emb:
        return build_index(
            folder, index, model, device, batch_size, strict, overwrite, progress, kind=kind, embedding=emb
        )


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
