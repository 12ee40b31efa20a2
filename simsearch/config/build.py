"""`simsearch index build`'s settings, each declared once with its default and help text: the encoder,
the batch, what to do with unreadable files and an existing index, the index structure, and a Dask
cluster to embed on. Free of torch, faiss and click (index kinds are spelled as index/ spells them)."""

from __future__ import annotations

from dataclasses import dataclass

from simsearch.config.options import option

__all__ = ["INDEX_KINDS", "BuildOptions"]

INDEX_KINDS = ("auto", "flat", "hnsw", "ivfpq")  # index.vector_index.IndexKind, plus auto


@dataclass(frozen=True)
class BuildOptions:
    model: str | None = option(
        None,
        "Encoder: a built-in name (see `simsearch models`) or a checkpoint folder. Default: the shipped character "
        "encoder.",
    )
    batch_size: int = option(256, "Images embedded per forward pass.", bounds=(1, 65536))
    strict: bool = option(False, "Fail (exit 1, nothing written) if any file cannot be read, instead of skipping it.")
    overwrite: bool = option(False, "Replace an existing index instead of syncing it (needed to change encoder).")
    kind: str | None = option(
        None,
        "Index structure: flat (exact), hnsw (fast, approximate), ivfpq (16x smaller in memory; exact vectors "
        "stay on disk for re-ranking), or auto: flat below 50,000 images, hnsw above. Default: auto for a new "
        "index, unchanged for an existing one.",
        values=INDEX_KINDS,
    )
    cluster: str | None = option(
        None,
        "Embed on a Dask cluster: 'local' starts --workers processes here (on 127.0.0.1), or give a "
        "scheduler address (tcp://host:8786) whose workers see FOLDER at the same path. Makes a new index "
        "(with --overwrite over an old one); the same index a local build makes. Needs simsearch[distributed].",
    )
    workers: int = option(
        2, "Worker processes of --cluster local (the cores are shared between them).", bounds=(1, 256)
    )
    shard_files: int = option(
        512,
        "Files a --cluster worker embeds per task (larger for millions of files: fewer, bigger tasks).",
        bounds=(1, 1_000_000),
    )
