"""Near-duplicate groups: connected components of the "scores at least T" graph over an index."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from index.catalog import Record
from index.store import IndexStore

__all__ = ["duplicate_rows", "find_duplicates"]


def _components(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def find_duplicates(
    index: str | os.PathLike[str], threshold: float, batch: int = 1024
) -> list[list[tuple[Record, float]]]:
    """Groups of gallery images linked by cosine score >= threshold (transitively), largest first.

    Each member comes with its best score to another member of its group.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError("threshold must be a cosine score in [-1, 1]")
    with IndexStore.open(index) as store:
        ids, vecs = store.vectors.vectors()
        pos = {int(i): p for p, i in enumerate(ids)}
        edges, best = [], np.full(len(ids), -np.inf)
        for start in range(0, len(ids), batch):
            for row, (nbr, sc) in enumerate(store.vectors.range_search(vecs[start : start + batch], threshold)):
                a = start + row
                for j, s in zip(nbr.tolist(), sc.tolist(), strict=True):
                    b = pos.get(int(j))
                    if b is not None and b != a:
                        edges.append((a, b))
                        best[a] = max(best[a], s)
        groups = _components(len(ids), edges)
        records = store.catalog.get(ids.tolist())
    out = [
        [(records[int(ids[m])], float(best[m])) for m in sorted(g, key=lambda m: records[int(ids[m])].path)]
        for g in groups
    ]
    return sorted(out, key=lambda g: (-len(g), g[0][0].path))


def duplicate_rows(groups: list[list[tuple[Record, float]]]) -> list[dict[str, Any]]:
    """find_duplicates' groups as JSON-ready rows: {"group": 1.., "size", "members": [{id, path, label, best_score}]}."""
    return [
        {
            "group": g,
            "size": len(members),
            "members": [{"id": r.id, "path": r.path, "label": r.label, "best_score": round(s, 6)} for r, s in members],
        }
        for g, members in enumerate(groups, 1)
    ]
