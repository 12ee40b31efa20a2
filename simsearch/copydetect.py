"""Copy detection: find the original of an edited copy in a gallery. Seeded query sets, the
measures (recall@k per edit type, mean average precision) and the baselines users try instead
(perceptual hashes, raw pixels)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from simsearch.edits import EDITS, apply_edit
from simsearch.embed import embed_arrays_with
from simsearch.encoder import Encoder
from simsearch.errors import SimSearchError
from simsearch.evaluate import raw_pixel_embeddings
from simsearch.images import to_array

__all__ = [
    "HASHES",
    "RAW_PIXELS",
    "CopyQueries",
    "copy_detection_table",
    "embed_pictures",
    "hash_codes",
    "make_copy_queries",
    "ranks_of_truth",
    "represent",
]

RAW_PIXELS = "raw-pixels"
HASHES = ("phash", "dhash")


@dataclass(frozen=True)
class CopyQueries:
    """Edited copies: images[j] is `edits[j]` applied to gallery item `truth[j]`."""

    images: list[Image.Image]
    truth: np.ndarray
    edits: list[str]


def make_copy_queries(
    originals: Sequence[Image.Image], n_originals: int, edits: Sequence[str] = tuple(EDITS), seed: int = 0
) -> CopyQueries:
    """Every edit in `edits` applied to each of `n_originals` originals drawn with `seed`.

    Each (original, edit) copy has its own generator, so a copy does not depend on which other
    originals or edits are in the set.
    """
    unknown = [e for e in edits if e not in EDITS]
    if unknown:
        raise ValueError(f"unknown edit {unknown[0]!r}; known: {', '.join(EDITS)}")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(originals), size=min(n_originals, len(originals)), replace=False))
    jobs = [(int(i), name, k) for i in chosen for k, name in enumerate(edits)]

    def one(job: tuple[int, str, int]) -> Image.Image:
        i, name, k = job
        return apply_edit(originals[i], name, np.random.default_rng([seed, i, k]))

    with ThreadPoolExecutor() as pool:
        images = list(pool.map(one, jobs))
    return CopyQueries(images=images, truth=np.array([j[0] for j in jobs]), edits=[j[1] for j in jobs])


def embed_pictures(
    encoder: Encoder, images: Sequence[Image.Image], device: torch.device, chunk: int = 2048
) -> np.ndarray:
    """(N, D) unit rows of PIL images under an encoder's own preprocessing (crop, size, channels)."""
    pre = encoder.config.preprocess
    mode = "L" if pre.channels == 1 else "RGB"
    parts = []
    with ThreadPoolExecutor() as pool:  # Pillow's convert and resize release the GIL
        for s in range(0, len(images), chunk):
            batch = images[s : s + chunk]
            arrays = np.stack(list(pool.map(lambda im: to_array(im.convert(mode), pre.size, pre.crop, pre.ink), batch)))
            parts.append(embed_arrays_with(encoder, arrays, device))
    return np.concatenate(parts) if parts else np.zeros((0, encoder.config.embedding_dim), np.float32)


def hash_codes(images: Sequence[Image.Image], kind: str) -> np.ndarray:
    """(N, 64) bool perceptual hashes from the imagehash library (pHash or dHash, 8x8)."""
    try:
        import imagehash
    except ImportError:
        raise SimSearchError(
            "the perceptual-hash baselines need the imagehash library: pip install 'simsearch[bench]'"
        ) from None
    fn = {"phash": imagehash.phash, "dhash": imagehash.dhash}[kind]
    with ThreadPoolExecutor() as pool:
        return np.stack(list(pool.map(lambda im: np.asarray(fn(im).hash, dtype=bool).reshape(-1), images)))


def represent(method: str | Encoder, images: Sequence[Image.Image], device: torch.device) -> tuple[np.ndarray, str]:
    """(codes, how to compare them): unit embeddings ("cosine") or hash bits ("hamming")."""
    if isinstance(method, Encoder):
        return embed_pictures(method, images, device), "cosine"
    if method == RAW_PIXELS:
        arrays = np.stack([to_array(im.convert("RGB"), 64) for im in images])
        return raw_pixel_embeddings(arrays, 32), "cosine"
    if method in HASHES:
        return hash_codes(images, method), "hamming"
    raise ValueError(f"unknown method {method!r}")


def ranks_of_truth(
    gallery: np.ndarray, queries: np.ndarray, truth: np.ndarray, metric: str, seed: int = 0, chunk: int = 1024
) -> np.ndarray:
    """1-based rank of each query's original among all gallery items (ties broken at random,
    seeded: hashes tie often, and a tie must not count as a hit)."""
    rng = np.random.default_rng(seed)
    ranks = np.empty(len(queries), dtype=np.int64)
    g = gallery.astype(np.float32)
    for s in range(0, len(queries), chunk):
        q = queries[s : s + chunk].astype(np.float32)
        if metric == "cosine":
            scores = q @ g.T
        else:  # hamming: more equal bits is better
            scores = q @ g.T + (1 - q) @ (1 - g).T
        t = truth[s : s + chunk]
        mine = scores[np.arange(len(q)), t][:, None]
        better = (scores > mine).sum(1)
        ties = (scores == mine).sum(1) - 1
        ranks[s : s + chunk] = 1 + better + rng.integers(0, ties + 1)
    return ranks


def copy_detection_table(
    ranks: np.ndarray, edits: Sequence[str], ks: Sequence[int] = (1, 10)
) -> list[dict[str, object]]:
    """Per edit type (in first-seen order) and overall: queries, recall@k, and mean average
    precision (one relevant item per query, so AP is 1 / rank)."""
    edits_arr = np.asarray(edits)
    rows = []
    for name in [*dict.fromkeys(edits), "overall"]:
        sel = np.ones(len(ranks), bool) if name == "overall" else edits_arr == name
        r = ranks[sel]
        row: dict[str, object] = {"edit": name, "queries": int(sel.sum())}
        for k in ks:
            row[f"recall@{k}"] = float(np.mean(r <= k)) if len(r) else 0.0
        row["mAP"] = float(np.mean(1.0 / r)) if len(r) else 0.0
        rows.append(row)
    return rows
