"""The FAISS index over int64 ids: add, remove and search L2-normalized float32 vectors by cosine."""

from __future__ import annotations

from enum import Enum

import faiss
import numpy as np

from index.errors import IndexCorruptError, VectorError

__all__ = ["IndexKind", "Metric", "VectorIndex", "check_vectors"]


class Metric(str, Enum):
    """Similarity measures; cosine is the inner product of unit vectors."""

    COSINE = "cosine"

    @classmethod
    def parse(cls, value: str) -> Metric:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown metric {value!r}; allowed: {', '.join(m.value for m in cls)}") from None


class IndexKind(str, Enum):
    """Index structures this layer builds."""

    FLAT = "flat"

    @classmethod
    def parse(cls, value: str) -> IndexKind:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown index kind {value!r}; allowed: {', '.join(k.value for k in cls)}") from None


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


class VectorIndex:
    """A FAISS inner-product index keyed by int64 ids (IndexIDMap2 over IndexFlatIP).

    search returns (scores (Q, k) float32, ids (Q, k) int64), best first; missing slots are
    score -inf, id -1.
    """

    def __init__(self, dim: int, kind: IndexKind = IndexKind.FLAT, _index: faiss.Index | None = None) -> None:
        if dim <= 0:
            raise VectorError("dimension must be positive")
        self.dim = dim
        self.kind = IndexKind.parse(str(getattr(kind, "value", kind)))
        self._index = _index if _index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        """All stored ids, (N,) int64, in insertion order."""
        return faiss.vector_to_array(self._index.id_map).astype(np.int64, copy=False)  # type: ignore[attr-defined]

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        check_vectors(vectors, self.dim, ids)
        if len(ids):
            self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        """Remove these ids; returns how many were present."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def reconstruct(self, id_: int) -> np.ndarray:
        """The stored (D,) float32 vector of one id."""
        return np.asarray(self._index.reconstruct(int(id_)), dtype=np.float32)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        check_vectors(queries, self.dim)
        if k < 1:
            raise VectorError("k must be at least 1")
        if not len(self) or not len(queries):
            return (np.full((len(queries), k), -np.inf, np.float32), np.full((len(queries), k), -1, np.int64))
        scores, ids = self._index.search(queries, min(k, len(self)))
        if scores.shape[1] < k:
            pad = k - scores.shape[1]
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        scores[ids < 0] = -np.inf
        return scores.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)

    def to_bytes(self) -> bytes:
        return faiss.serialize_index(self._index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, dim: int, kind: IndexKind) -> VectorIndex:
        try:
            idx = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        except RuntimeError as err:
            raise IndexCorruptError(f"vector index file is unreadable ({str(err).splitlines()[0]})") from None
        if idx.d != dim:
            raise IndexCorruptError(f"vector index has dimension {idx.d}, the manifest says {dim}")
        return cls(dim, kind, _index=idx)
