"""The FAISS index over int64 ids: add, remove and search L2-normalized float32 vectors by cosine.

Three kinds: exact `flat`; `hnsw` (graph, fast, approximate; faiss cannot delete from it, so removed
ids become tombstones filtered out at search time and purged by a rebuild once they pile up);
`ivfpq` (inverted lists of product-quantized codes, trained on the first vectors added; faiss
removes from it natively): the codes in memory are 16x smaller than flat vectors, and each search
re-ranks its PQ candidates by exact cosine against the float32 vectors, which the store keeps in a
separate file and memory-maps, so they cost disk and page cache, not resident memory. `auto` never
picks ivfpq: it is a choice for galleries whose vectors do not fit in memory.
"""

from __future__ import annotations

import io
from enum import Enum

import faiss
import numpy as np

from index.errors import IndexCorruptError, VectorError
from index.kinds import (
    AUTO_HNSW_FROM,
    IVF_MIN,
    IVF_TRAIN,
    KIND_RULES,
    IndexKind,
    KindParams,
    KindRules,
    choose_kind,
    new_flat,
    trained_ivfpq,
)

__all__ = [
    "AUTO_HNSW_FROM",
    "IVF_MIN",
    "IVF_TRAIN",
    "KIND_RULES",
    "ExactVectors",
    "IndexKind",
    "KindParams",
    "KindRules",
    "Metric",
    "VectorIndex",
    "check_vectors",
    "choose_kind",
    "ivfpq_add_shard",
    "trained_ivfpq",
]

# Tombstones beyond this share of an HNSW index trigger a rebuild at the next save.
_COMPACT_AT = 0.2


class Metric(str, Enum):
    """Similarity measures; cosine is the inner product of unit vectors."""

    COSINE = "cosine"

    @classmethod
    def parse(cls, value: str) -> Metric:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown metric {value!r}; allowed: {', '.join(m.value for m in cls)}") from None


def check_vectors(vectors: np.ndarray, dim: int, ids: np.ndarray | None = None, norm_tol: float = 1e-3) -> None:
    """Raise VectorError unless `vectors` is C-contiguous float32 (N, dim) with unit rows
    (and `ids`, when given, is (N,) int64)."""
    if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32:
        raise VectorError("vectors must be a float32 numpy array")
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise VectorError(f"vectors must have shape (N, {dim}), not {vectors.shape}")
    if not vectors.flags.c_contiguous:
        raise VectorError("vectors must be C-contiguous")
    if len(vectors):
        if not np.isfinite(vectors).all():
            raise VectorError("vectors contain NaN or infinity")
        norms = np.linalg.norm(vectors, axis=1)
        if np.abs(norms - 1.0).max() > norm_tol:
            raise VectorError("vectors must be L2-normalized (unit rows) for cosine search")
    if ids is not None:
        if not isinstance(ids, np.ndarray) or ids.dtype != np.int64 or ids.shape != (len(vectors),):
            raise VectorError(f"ids must be int64 of shape ({len(vectors)},)")


# a filtered search scores up to this many allowed rows exactly; above it FAISS searches with an id selector
EXACT_SUBSET = 200_000


def _npy_bytes(arr: np.ndarray) -> bytes:
    """The .npy file bytes of an array (no pickling)."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def ivfpq_add_shard(trained: bytes, vecs: np.ndarray, ids: np.ndarray) -> bytes:
    """A copy of the trained empty IVF-PQ index with one shard's vectors added under their ids,
    serialized: what a worker of a distributed build sends back for VectorIndex.ivfpq_from_shards."""
    index = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
    check_vectors(vecs, int(index.d), ids)
    index.add_with_ids(vecs, ids)
    return faiss.serialize_index(index).tobytes()


class ExactVectors:
    """The float32 vectors of an ivfpq index by id, for exact re-ranking of its PQ candidates.

    Rows are kept sorted by id; loaded from the store they are memory-mapped (read-only), so a
    search touches only the rows of its candidates. Additions are buffered until the next read.
    """

    def __init__(self, dim: int, ids: np.ndarray | None = None, vecs: np.ndarray | None = None) -> None:
        self.dim = dim
        self._ids = np.zeros(0, np.int64) if ids is None else ids
        self._vecs: np.ndarray = np.zeros((0, dim), np.float32) if vecs is None else vecs
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        if len(self._ids) != len(self._vecs) or self._vecs.shape[1:] != (dim,):
            raise IndexCorruptError("exact vector file does not match its ids or the index dimension")
        if len(self._ids) > 1 and not (np.diff(self._ids) > 0).all():
            raise IndexCorruptError("exact vector ids are not sorted")

    def __len__(self) -> int:
        return len(self._ids) + sum(len(i) for _, i in self._pending)

    def add(self, vecs: np.ndarray, ids: np.ndarray) -> None:
        self._pending.append((vecs.copy(), ids.copy()))

    def _settle(self) -> None:
        if not self._pending:
            return
        ids = np.concatenate([self._ids, *[i for _, i in self._pending]])
        vecs = np.concatenate([np.asarray(self._vecs), *[v for v, _ in self._pending]])
        order = np.argsort(ids, kind="stable")
        self._ids, self._vecs, self._pending = ids[order], vecs[order], []

    def remove(self, ids: np.ndarray) -> None:
        self._settle()
        keep = ~np.isin(self._ids, ids)
        if not keep.all():
            self._ids, self._vecs = self._ids[keep], np.asarray(self._vecs)[keep]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids sorted, vectors) of every row."""
        self._settle()
        return self._ids, self._vecs

    def rerank(self, queries: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosine of each query against its candidate ids (-1 = none); the best k, best first."""
        ids, vecs = self.arrays()
        scores = np.full(cand.shape, -np.inf, np.float32)
        if len(ids):
            pos = np.clip(np.searchsorted(ids, cand), 0, len(ids) - 1)
            found = (cand >= 0) & (ids[pos] == cand)
            for r in range(len(queries)):
                rows = pos[r][found[r]]
                scores[r][found[r]] = np.asarray(vecs[rows]) @ queries[r]
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out_ids = np.take_along_axis(np.where(np.isfinite(scores), cand, -1), order, axis=1)
        return np.take_along_axis(scores, order, axis=1), out_ids


class VectorIndex:
    """A FAISS inner-product index keyed by int64 ids.

    search returns (scores (Q, k) float32, ids (Q, k) int64), best first; missing slots are
    score -inf, id -1.
    """

    def __init__(self, dim: int, kind: IndexKind = IndexKind.FLAT, params: KindParams | None = None) -> None:
        if dim <= 0:
            raise VectorError("dimension must be positive")
        self.dim = dim
        self.kind = IndexKind.parse(str(getattr(kind, "value", kind)))
        self.params = params or KindParams()
        self.rules = KIND_RULES[self.kind]
        self._index: faiss.Index | None = self.rules.make(dim, self.params)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # waiting for training (ivfpq) or insertion (hnsw)
        self._tombstones: set[int] = set()  # hnsw ids removed but still in the graph
        self.exact: ExactVectors | None = ExactVectors(dim) if self.rules.trained else None

    # ---- size and ids
    def _stored(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def __len__(self) -> int:
        return self._stored() + sum(len(i) for _, i in self._pending) - len(self._tombstones)

    def ids(self) -> np.ndarray:
        """All live ids, (N,) int64."""
        parts = [self._stored_ids()] + [i for _, i in self._pending]
        ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        if self._tombstones:
            ids = ids[~np.isin(ids, np.fromiter(self._tombstones, np.int64))]
        return ids.astype(np.int64, copy=False)

    def _stored_ids(self) -> np.ndarray:
        if self._index is None:
            return np.zeros(0, np.int64)
        return self.rules.ids(self._index)

    @property
    def tombstones(self) -> int:
        return len(self._tombstones)

    # ---- changes
    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        check_vectors(vectors, self.dim, ids)
        if not len(ids):
            return
        if self.exact is not None:
            self.exact.add(vectors, ids)
        if self._index is None:  # a kind still to be trained
            self._pending.append((vectors.copy(), ids.copy()))
            if sum(len(i) for _, i in self._pending) >= IVF_TRAIN:
                self._train_ivfpq()
            return
        if self.rules.graph:
            # buffered and inserted in one call at finalize: a graph built batch by batch is worse
            # (recall@10 0.955 instead of 0.982 on 300,000 vectors added in 65,536-vector batches)
            self._pending.append((vectors.copy(), ids.copy()))
            return
        assert self._index is not None
        self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        """Remove these ids; returns how many were present."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        if self.exact is not None:
            self.exact.remove(ids)
        removed = 0
        if self._pending:
            kept = []
            for v, i in self._pending:
                keep = ~np.isin(i, ids)
                removed += int((~keep).sum())
                kept.append((v[keep], i[keep]))
            self._pending = [(v, i) for v, i in kept if len(i)]
        if self._index is None:
            return removed
        if self.rules.graph:
            present = set(np.intersect1d(self._stored_ids(), ids).tolist()) - self._tombstones
            self._tombstones |= present
            return removed + len(present)
        return removed + int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def _take_pending(self) -> tuple[np.ndarray, np.ndarray]:
        """The buffered (vectors, ids), concatenated; the buffer is left empty."""
        vecs = np.concatenate([v for v, _ in self._pending])
        ids = np.concatenate([i for _, i in self._pending])
        self._pending = []
        return vecs, ids

    def _train_ivfpq(self) -> None:
        vecs, ids = self._take_pending()
        try:
            ivf = trained_ivfpq(self.dim, vecs, self.params)
        except VectorError:
            self._pending = [(vecs, ids)]  # the buffer is kept: the caller may add more
            raise
        ivf.add_with_ids(vecs, ids)
        self._index = ivf

    @classmethod
    def ivfpq_from_shards(
        cls, trained: bytes, shards: list[bytes], ids: np.ndarray, vecs: np.ndarray, params: KindParams | None = None
    ) -> VectorIndex:
        """An ivfpq index put together from shards built elsewhere (a distributed build): `trained` is
        an empty trained IVF-PQ index (trained_ivfpq, serialized), each shard a copy of it with a
        disjoint set of ids added (ivfpq_add_shard); their inverted lists are merged into it, in the
        order given (faiss's IndexIVF.merge_from), so shards in id order give the lists a local build
        makes. `ids`, `vecs`: every vector, for the exact re-ranking file."""
        base = faiss.deserialize_index(np.frombuffer(trained, dtype=np.uint8))
        dim = int(base.d)
        check_vectors(vecs, dim, ids)
        out = cls(dim, IndexKind.IVFPQ, params)
        for shard in shards:
            part = faiss.deserialize_index(np.frombuffer(shard, dtype=np.uint8))
            base.merge_from(part, 0)
        if int(base.ntotal) != len(ids):
            raise VectorError(f"the shards hold {int(base.ntotal):,} vectors, not the {len(ids):,} given")
        out._index = base
        assert out.exact is not None
        out.exact.add(vecs, ids)
        if not np.array_equal(np.sort(out._stored_ids()), np.sort(ids)):
            raise VectorError("the shards' ids are not the ids given")
        return out

    def compact(self, force: bool = False) -> bool:
        """Rebuild an HNSW graph without its tombstones when they exceed 20% (or when forced)."""
        if not self.rules.graph or not self._tombstones:
            return False
        if not force and len(self._tombstones) < _COMPACT_AT * self._stored():
            return False
        ids, vecs = self.vectors()
        fresh = VectorIndex(self.dim, self.kind, self.params)
        fresh.add(vecs, ids)
        fresh.finalize()
        self._index, self._tombstones = fresh._index, set()
        return True

    def finalize(self) -> None:
        """Make the index searchable and saveable (trains a still-untrained ivfpq index; inserts
        the buffered vectors of an hnsw graph)."""
        if not self._pending:
            return
        if self._index is None:
            self._train_ivfpq()
        else:  # a graph's buffered vectors
            self._index.add_with_ids(*self._take_pending())

    # ---- reading
    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids (N,) int64, vectors (N, D) float32) of every live entry, exact for every kind."""
        self.finalize()
        if self.exact is not None:
            ids, vecs = self.exact.arrays()
            return ids.copy(), np.ascontiguousarray(vecs, dtype=np.float32)
        if self._index is None:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        else:
            inner = faiss.downcast_index(self._index.index)  # type: ignore[attr-defined]
            vecs = inner.reconstruct_n(0, inner.ntotal)
            ids = self._stored_ids()
        if self._tombstones:
            keep = ~np.isin(ids, np.fromiter(self._tombstones, np.int64))
            ids, vecs = ids[keep], vecs[keep]
        return ids.astype(np.int64), np.ascontiguousarray(vecs, dtype=np.float32)

    def reconstruct(self, id_: int) -> np.ndarray:
        """The stored (D,) float32 vector of one id."""
        ids, vecs = self.vectors()
        hit = np.flatnonzero(ids == id_)
        if not len(hit):
            raise VectorError(f"id {id_} is not in the index")
        return vecs[hit[0]]

    def _search_params(self) -> tuple[faiss.SearchParameters | None, faiss.IDSelector | None]:
        """Search parameters for the kind, and the selector they point to (keep it alive)."""
        sel = (
            faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(self._tombstones, np.int64)))
            if self._tombstones
            else None
        )
        if self.rules.search is None:
            return None, None
        p = self.rules.search(self.params)
        if sel is not None:
            p.sel = sel
        return p, sel

    def search(self, queries: np.ndarray, k: int, allow: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k best entries for each query; with `allow`, only among those ids (a filter: exact over the
        allowed rows up to EXACT_SUBSET of them, a FAISS id selector beyond)."""
        check_vectors(queries, self.dim)
        if k < 1:
            raise VectorError("k must be at least 1")
        self.finalize()
        if allow is not None:
            return self._search_among(queries, k, np.asarray(allow, dtype=np.int64))
        n = len(self)
        if not n or not len(queries):
            return (np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64))
        assert self._index is not None
        kk = min(k, n)
        params, _selector = self._search_params()
        if self.exact is not None:  # PQ candidates, re-ranked by exact cosine
            _, cand = self._index.search(queries, min(n, max(kk * self.params.rerank, 32)), params=params)
            scores, ids = self.exact.rerank(queries, cand, kk)
        elif params is None:
            scores, ids = self._index.search(queries, kk)
        else:
            scores, ids = self._index.search(queries, kk, params=params)
        if scores.shape[1] < k:
            pad = k - scores.shape[1]
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        scores[ids < 0] = -np.inf
        return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), D) stored float32 vectors of live ids (as a search returned them), in their order."""
        self.finalize()
        return self._vectors_of(np.asarray(ids, dtype=np.int64))

    def _vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """(len(ids), D) stored vectors of live ids."""
        if self.exact is not None:
            all_ids, vecs = self.exact.arrays()
            return np.asarray(vecs[np.searchsorted(all_ids, ids)], dtype=np.float32)
        assert self._index is not None
        return np.asarray(self._index.reconstruct_batch(ids), dtype=np.float32).reshape(len(ids), self.dim)

    def _search_among(self, queries: np.ndarray, k: int, allow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        live = np.intersect1d(allow, self.ids())
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        if not len(live) or not len(queries):
            return scores, ids
        kk = min(k, len(live))
        if len(live) <= EXACT_SUBSET:
            for start in range(0, len(live), 65_536):  # bounded memory for the score block
                part = live[start : start + 65_536]
                block = queries @ self._vectors_of(part).T
                both_s = np.concatenate([scores[:, :kk], block], axis=1)
                both_i = np.concatenate([ids[:, :kk], np.broadcast_to(part, block.shape)], axis=1)
                order = np.argsort(-both_s, axis=1, kind="stable")[:, :kk]
                scores[:, :kk] = np.take_along_axis(both_s, order, axis=1)
                ids[:, :kk] = np.take_along_axis(both_i, order, axis=1)
            return scores, ids
        sel = faiss.IDSelectorBatch(live)
        params = self._search_params()[0] or faiss.SearchParameters()
        params.sel = sel  # tombstones are already outside `live`: the allowed set alone decides
        assert self._index is not None
        if self.exact is not None:
            _, cand = self._index.search(queries, min(len(live), max(kk * self.params.rerank, 32)), params=params)
            found_s, found_i = self.exact.rerank(queries, cand, kk)
        else:
            found_s, found_i = self._index.search(queries, kk, params=params)
        scores[:, :kk], ids[:, :kk] = found_s, found_i
        scores[ids < 0] = -np.inf
        return scores, ids

    def range_search(self, queries: np.ndarray, min_score: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query, (ids, scores) of every entry scoring at least `min_score` (exact for flat)."""
        check_vectors(queries, self.dim)
        self.finalize()
        if self._index is None or not len(self):
            return [(np.zeros(0, np.int64), np.zeros(0, np.float32)) for _ in queries]
        if self.rules.exact_range:
            lims, scores, ids = self._index.range_search(queries, float(np.nextafter(np.float32(min_score), -np.inf)))
            out = [(ids[lims[i] : lims[i + 1]], scores[lims[i] : lims[i + 1]]) for i in range(len(queries))]
        else:  # approximate kinds: neighbours from a wide k-NN search, cut at the score
            s, i = self.search(queries, min(len(self), 256))
            out = [(i[r][s[r] >= min_score], s[r][s[r] >= min_score]) for r in range(len(queries))]
        return [(ids_.astype(np.int64), sc.astype(np.float32)) for ids_, sc in out]

    # ---- bytes
    def to_bytes(self) -> bytes:
        """faiss index file bytes (after finalize)."""
        self.finalize()
        if self._index is None:
            return faiss.serialize_index(new_flat(self.dim, self.params)).tobytes()
        return faiss.serialize_index(self._index).tobytes()

    def exact_bytes(self) -> tuple[bytes, bytes] | None:
        """ivfpq: (.npy of the sorted ids, .npy of their float32 vectors) for exact re-ranking."""
        if self.exact is None:
            return None
        ids, vecs = self.exact.arrays()
        return _npy_bytes(ids), _npy_bytes(np.ascontiguousarray(vecs, dtype=np.float32))

    def tombstone_bytes(self) -> bytes | None:
        if not self._tombstones:
            return None
        return _npy_bytes(np.array(sorted(self._tombstones), dtype=np.int64))

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        dim: int,
        kind: IndexKind,
        params: KindParams | None = None,
        tombstones: bytes | None = None,
        exact: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> VectorIndex:
        """Rebuild from faiss bytes; an ivfpq index also needs `exact` (sorted ids, their vectors;
        the vectors may be a read-only memory map)."""
        try:
            idx = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as err:
            raise IndexCorruptError(f"vector index file is unreadable ({str(err).splitlines()[0]})") from None
        if idx.d != dim:
            raise IndexCorruptError(f"vector index has dimension {idx.d}, the manifest says {dim}")
        out = cls(dim, kind, params)
        out._index = None if out.rules.trained and not isinstance(idx, faiss.IndexIVF) else idx
        if out.rules.trained:
            if exact is None:
                raise IndexCorruptError("an ivfpq index needs its exact vector file")
            out.exact = ExactVectors(dim, exact[0], exact[1])
            if len(out.exact) != out._stored():
                raise IndexCorruptError(
                    f"exact vector file holds {len(out.exact):,} rows, the ivfpq index {out._stored():,}"
                )
        if tombstones:
            try:
                out._tombstones = set(np.load(io.BytesIO(tombstones), allow_pickle=False).tolist())
            except ValueError as err:
                raise IndexCorruptError(f"tombstone file is unreadable ({err})") from None
        return out
