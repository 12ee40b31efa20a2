"""What search's second stage (measures/structure.py) costs a query: the search of the cosine's best 5 against
the best 100 plus reading their stored vectors back and ordering them, on a random index of 1,871-d unit rows
(photos' width), flat and HNSW; mean of 50 single-image queries after one warm-up. Prints a table.

    python bench/second_stage_cost.py [--rows 50000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from index.kinds import IndexKind
from index.vector_index import VectorIndex
from simsearch.measures.structure import STRUCTURE_POOL, StructurePart


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=50_000)
    args = ap.parse_args()
    dim, part = 1871, StructurePart(143, 0.05)
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(args.rows, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    print(f"{args.rows:,} rows of {dim} numbers; one query at a time, mean of 50")
    print("| kind | best 5 | best 100 + second stage | difference |")
    print("|---|---|---|---|")
    for kind in (IndexKind.FLAT, IndexKind.HNSW):
        index = VectorIndex(dim, kind)
        index.add(rows, np.arange(args.rows, dtype=np.int64))
        index.finalize()
        q = rows[:1]

        def plain(index: VectorIndex = index, q: np.ndarray = q) -> None:
            index.search(q, 5)

        def staged(index: VectorIndex = index, q: np.ndarray = q) -> None:
            _, ids = index.search(q, STRUCTURE_POOL)
            part.order(part.sure(q, index.vectors_of(ids[0])[None, :, -part.dim :]))

        got = []
        for fn in (plain, staged):
            fn()
            t0 = time.perf_counter()
            for _ in range(50):
                fn()
            got.append((time.perf_counter() - t0) / 50 * 1000)
        print(f"| {kind.value} | {got[0]:.2f} ms | {got[1]:.2f} ms | {got[1] - got[0]:+.2f} ms |")


if __name__ == "__main__":
    main()
