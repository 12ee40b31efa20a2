"""Near-duplicate groups over an index: files with identical bytes first, then groups in which every two
members score at least the threshold against each other (no chaining through intermediate images), and what
to keep.

A group is grown around one image (the one with the most matches still unassigned, then the largest file):
its matches join in order of score, each only if it also matches every member already in. So two images
that do not resemble each other never share a group, however many images lie between them. In each group
the largest file is kept and the rest are listed for removal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index.catalog import Record
from index.manifest import read_manifest
from index.store import IndexStore
from simsearch.errors import ConfigError

__all__ = [
    "DUPLICATE_FMR",
    "Duplicate",
    "duplicate_rows",
    "duplicate_threshold",
    "find_duplicates",
    "index_duplicate_threshold",
]

# The per-pair false-match rate the default duplicates threshold is fitted for: pairs of distinct
# pictures (not copies of each other) scoring at least the threshold.
DUPLICATE_FMR = 1e-5
_FALLBACK = 0.95


@dataclass(frozen=True)
class Duplicate:
    """One member of a group: its record, its score against the group's centre, and how it matched
    ("exact": the same bytes as the centre; "near": by score)."""

    record: Record
    score: float
    match: str


def duplicate_threshold(manifest_encoder: dict[str, Any], meta: dict[str, Any]) -> tuple[float, str]:
    """(default threshold, where it comes from): the encoder's `duplicate_threshold` (the score that
    pairs of distinct pictures of its reference set exceed at a false-match rate of 1e-5), else 0.95."""
    t = meta.get("duplicate_threshold")
    if isinstance(t, dict) and isinstance(t.get("threshold"), (int, float)):
        return float(t["threshold"]), (
            f"encoder {manifest_encoder.get('source')}: false-match rate {t.get('fmr', DUPLICATE_FMR):g} "
            f"on pairs of distinct pictures of {t.get('measured_on', 'its reference set')}"
        )
    return _FALLBACK, f"fixed {_FALLBACK} (encoder {manifest_encoder.get('source')} records no duplicate threshold)"


def index_duplicate_threshold(index: str | os.PathLike[str]) -> tuple[float, str]:
    """(the duplicate threshold of the encoder that built this index, where it comes from); reads the
    manifest alone (the vectors and catalog are not loaded for it)."""
    from simsearch.model_files import recorded_meta

    encoder = read_manifest(Path(index)).encoder
    return duplicate_threshold(encoder, recorded_meta(encoder.get("source")))


def find_duplicates(
    index: str | os.PathLike[str], threshold: float | None = None, batch: int = 1024
) -> list[list[Duplicate]]:
    """Groups of gallery images, largest first: identical files, and near-duplicates scoring at least
    `threshold` (cosine; by default the index's encoder's duplicate threshold) against every other member;
    each member's score is against the group's centre image (the first member)."""
    if threshold is None:
        threshold = index_duplicate_threshold(index)[0]
    if not -1.0 <= threshold <= 1.0:
        raise ConfigError("{fields} must be a cosine score in [-1, 1]", ["threshold"])
    with IndexStore.open(index) as store:
        ids, vecs = store.vectors.vectors()
        records = store.catalog.get(ids.tolist())
        pos = {int(i): p for p, i in enumerate(ids)}
        # exact pass: identical bytes are one picture; the near pass sees one representative of each
        by_hash: dict[str, list[int]] = {}
        for p, i in enumerate(ids.tolist()):
            by_hash.setdefault(records[i].sha256 if i in records else f"#{i}", []).append(p)
        rep = np.arange(len(ids))
        for members in by_hash.values():
            rep[members] = members[0]
        matches: dict[int, dict[int, float]] = {}
        for start in range(0, len(ids), batch):
            for row, (nbr, sc) in enumerate(store.vectors.range_search(vecs[start : start + batch], threshold)):
                a = start + row
                if rep[a] != a:
                    continue
                for j, s in zip(nbr.tolist(), sc.tolist(), strict=True):
                    b = pos.get(int(j))
                    if b is not None and rep[b] == b and b != a:
                        matches.setdefault(a, {})[b] = max(s, matches.get(a, {}).get(b, -1.0))
    size = {p: records[int(ids[p])].size for p in range(len(ids))}
    copies = {members[0]: members[1:] for members in by_hash.values()}
    assigned: set[int] = set()
    groups: list[list[Duplicate]] = []
    order = sorted(
        (p for p in range(len(ids)) if rep[p] == p),
        key=lambda p: (-(len(matches.get(p, {})) + len(copies[p])), -size[p], records[int(ids[p])].path),
    )
    for centre in order:
        if centre in assigned:
            continue
        near: list[int] = []
        for b in sorted((b for b in matches.get(centre, {}) if b not in assigned), key=lambda b: -matches[centre][b]):
            if all(float(vecs[b] @ vecs[m]) >= threshold for m in near):
                near.append(b)
        if not near and not copies[centre]:
            continue
        group = [Duplicate(records[int(ids[centre])], 1.0, "centre")]
        group += [Duplicate(records[int(ids[c])], 1.0, "exact") for c in copies[centre]]
        for b in sorted(near, key=lambda b: -matches[centre][b]):
            group.append(Duplicate(records[int(ids[b])], matches[centre][b], "near"))
            group += [Duplicate(records[int(ids[c])], matches[centre][b], "exact") for c in copies[b]]
        assigned.update([centre, *near])
        groups.append(group)
    return sorted(groups, key=lambda g: (-len(g), g[0].record.path))


def _identity(path: str) -> tuple[int, int] | str:
    """What a path stands for on disk: the (device, inode) of the file it reaches (through links), or its
    real path when it cannot be reached. Two members with one identity are one file, spelt twice."""
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino)


def _keeper(members: list[Duplicate]) -> Duplicate:
    """The member to keep: a real file before a link to one, then the largest file (most pixels or least
    compression, as a rule), then the shortest path."""
    return min(
        members,
        key=lambda m: (os.path.islink(m.record.path), -m.record.size, len(m.record.path), m.record.path),
    )


def _removable(members: list[Duplicate], keep: Duplicate) -> list[str]:
    """The members a user may delete while the keeper stays whole: never a file that is the keeper (a hard
    link, or another spelling of it), nor the target of the keeper or of any link kept; each file once."""
    kept = {_identity(keep.record.path)}
    out, seen = [], set(kept)
    for m in members:
        if m is keep:
            continue
        ident = _identity(m.record.path)
        if os.path.islink(m.record.path):
            if m.record.path not in seen:  # a link: deleting it deletes only the link, never what it reaches
                seen.add(m.record.path)
                out.append(m.record.path)
            continue
        if ident in seen:
            continue
        seen.add(ident)
        out.append(m.record.path)
    return out


def duplicate_rows(groups: list[list[Duplicate]]) -> list[dict[str, Any]]:
    """find_duplicates' groups as JSON-ready rows: {"group": 1.., "size", "keep": PATH, "remove": [PATH, ...],
    "members": [{id, path, label, score, match, keep}]}; `score` is against the group's centre (members[0]).
    `remove` lists only what can be deleted with the keeper left whole (see _removable)."""
    rows = []
    for g, members in enumerate(groups, 1):
        keep = _keeper(members)
        removable = _removable(members, keep)
        rows.append(
            {
                "group": g,
                "size": len(members),
                "keep": keep.record.path,
                "remove": removable,
                "members": [
                    {
                        "id": m.record.id,
                        "path": m.record.path,
                        "label": m.record.label,
                        "score": round(m.score, 6),
                        "match": m.match,
                        "keep": m is keep,
                        "remove": m is not keep and m.record.path in removable,
                    }
                    for m in members
                ],
            }
        )
    return rows
