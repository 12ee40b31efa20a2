"""Copy detection: find the original of an edited copy in a gallery. Seeded query sets and the
measures (recall@k per edit type, mean average precision); the baselines are in baselines.py."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from simsearch.edits import ALL_EDITS, EDITS, apply_edit
from simsearch.errors import ConfigError, literal
from simsearch.measures.structure import STRUCTURE_POOL, StructurePart

__all__ = ["CopyQueries", "copy_detection_table", "make_copy_queries", "ranks_of_truth"]


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
    unknown = [e for e in edits if e not in ALL_EDITS]
    if unknown:
        raise ConfigError(
            f"{{fields}}: unknown edit {literal(repr(unknown[0]))}; known: {', '.join(ALL_EDITS)}", ["edits"]
        )
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(originals), size=min(n_originals, len(originals)), replace=False))
    jobs = [(int(i), name, k) for i in chosen for k, name in enumerate(edits)]

    def one(job: tuple[int, str, int]) -> Image.Image:
        i, name, k = job
        return apply_edit(originals[i], name, np.random.default_rng([seed, i, k]))

    with ThreadPoolExecutor() as pool:
        images = list(pool.map(one, jobs))
    return CopyQueries(images=images, truth=np.array([j[0] for j in jobs]), edits=[j[1] for j in jobs])


def ranks_of_truth(
    gallery: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    metric: str,
    seed: int = 0,
    chunk: int = 1024,
    structure: StructurePart | None = None,
) -> np.ndarray:
    """1-based rank of each query's original among all gallery items (ties broken at random,
    seeded: hashes tie often, and a tie must not count as a hit). With `structure` (an encoder's DCT part),
    ranked as search ranks them: the same picture by its DCT part first among the cosine's best
    STRUCTURE_POOL (measures.structure)."""
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
        if structure is not None and metric == "cosine":
            top = np.argsort(-scores, axis=1, kind="stable")[:, :STRUCTURE_POOL]
            sure = structure.sure(q, g[:, -structure.dim :][top])
            reordered = np.take_along_axis(top, structure.order(sure), axis=1)
            rows, at = np.nonzero(reordered == t[:, None])  # the original among the pool: its place after the stage
            ranks[s + rows] = at + 1
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
