"""The index kinds and everything in which they differ: `flat` (exact), `hnsw` (a graph: fast, approximate, no
deletion in faiss) and `ivfpq` (inverted lists of product-quantized codes, trained on the first vectors added),
their build and search settings (KindParams), and one row of rules each (KIND_RULES) that VectorIndex asks
instead of naming a kind."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import faiss
import numpy as np

from index.errors import VectorError

__all__ = [
    "AUTO_HNSW_FROM",
    "IVF_MIN",
    "IVF_TRAIN",
    "KIND_RULES",
    "IndexKind",
    "KindParams",
    "KindRules",
    "choose_kind",
    "new_flat",
    "trained_ivfpq",
]

# `auto` picks exact search below this many vectors, HNSW from here on.
AUTO_HNSW_FROM = 50_000
# IVF-PQ trains on this many vectors (buffered until then) and needs at least IVF_MIN to train.
IVF_TRAIN = 65_536
IVF_MIN = 1_000


class IndexKind(str, Enum):
    """Index structures this layer builds."""

    FLAT = "flat"
    HNSW = "hnsw"
    IVFPQ = "ivfpq"

    @classmethod
    def parse(cls, value: str) -> IndexKind:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown index kind {value!r}; allowed: {', '.join(k.value for k in cls)}") from None


def choose_kind(requested: str, count: int) -> IndexKind:
    """Resolve 'auto' (or a kind name) for an index of `count` vectors."""
    if requested == "auto":
        return IndexKind.FLAT if count < AUTO_HNSW_FROM else IndexKind.HNSW
    return IndexKind.parse(requested)


@dataclass(frozen=True)
class KindParams:
    """Build and search settings of the approximate kinds (ignored by flat)."""

    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nlist: int | None = None  # IVF lists; default about 4 * sqrt(N)
    pq_m: int | None = None  # PQ sub-quantizers; default dim / 4 (4 dims per byte: 16x smaller than flat)
    nprobe: int = 64
    rerank: int = 4  # ivfpq: PQ candidates per requested neighbour, re-ranked exactly

    def __post_init__(self) -> None:
        if self.hnsw_m < 4 or self.ef_construction < 8 or self.ef_search < 1 or self.nprobe < 1 or self.rerank < 1:
            raise ValueError(
                "hnsw_m >= 4, ef_construction >= 8, ef_search >= 1, nprobe >= 1 and rerank >= 1 are required"
            )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KindParams:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def new_flat(dim: int, params: KindParams) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _new_hnsw(dim: int, params: KindParams) -> faiss.Index:
    hnsw = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = params.ef_construction
    return faiss.IndexIDMap2(hnsw)


def _hnsw_search(params: KindParams) -> faiss.SearchParameters:
    p = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
    p.efSearch = params.ef_search
    return p


def _ivf_search(params: KindParams) -> faiss.SearchParameters:
    p = faiss.SearchParametersIVF()
    p.nprobe = params.nprobe
    return p


def _mapped_ids(index: faiss.Index) -> np.ndarray:
    """The ids of an IndexIDMap2 (flat, hnsw)."""
    return faiss.vector_to_array(index.id_map).astype(np.int64, copy=False)  # type: ignore[attr-defined]


def _ivf_ids(index: faiss.Index) -> np.ndarray:
    """The ids held in an IVF index's inverted lists."""
    ivf = faiss.extract_index_ivf(index)
    invlists = ivf.invlists
    assert invlists is not None
    out = [
        faiss.rev_swig_ptr(invlists.get_ids(lst), invlists.list_size(lst)).copy()
        for lst in range(ivf.nlist)
        if invlists.list_size(lst)
    ]
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


@dataclass(frozen=True)
class KindRules:
    """Everything in which the index kinds differ, in one row per kind (VectorIndex asks these, never the kind).

    make: the empty faiss index (None for a kind that must first be trained on vectors: `trained`);
    search: its search parameters (None: plain search); ids: the ids stored in it;
    trained: built by training on the first IVF_TRAIN vectors added (buffered until then), removes natively,
      keeps every float32 vector beside it (ExactVectors) and re-ranks its candidates exactly;
    graph: adds are buffered and inserted in one call at finalize, removals become tombstones purged by
      compact (faiss cannot delete from an HNSW graph);
    exact_range: range_search asks faiss itself (exact); otherwise a wide k-NN search cut at the score.
    """

    make: Callable[[int, KindParams], faiss.Index | None]
    search: Callable[[KindParams], faiss.SearchParameters] | None
    ids: Callable[[faiss.Index], np.ndarray]
    trained: bool = False
    graph: bool = False
    exact_range: bool = False


KIND_RULES: dict[IndexKind, KindRules] = {
    IndexKind.FLAT: KindRules(make=new_flat, search=None, ids=_mapped_ids, exact_range=True),
    IndexKind.HNSW: KindRules(make=_new_hnsw, search=_hnsw_search, ids=_mapped_ids, graph=True),
    IndexKind.IVFPQ: KindRules(make=lambda dim, params: None, search=_ivf_search, ids=_ivf_ids, trained=True),
}


def _pq_m(dim: int, params: KindParams) -> int:
    m = params.pq_m or max(1, dim // 4)
    while dim % m:
        m -= 1
    return m


def trained_ivfpq(dim: int, vecs: np.ndarray, params: KindParams | None = None) -> faiss.IndexIVFPQ:
    """An empty IVF-PQ index trained as every ivfpq index here is: about 4 * sqrt(N) lists for the N
    vectors given (unless params.nlist), codebooks from a seeded sample of at most 65,536 of them."""
    params = params or KindParams()
    if len(vecs) < IVF_MIN:
        raise VectorError(
            f"ivfpq needs at least {IVF_MIN:,} vectors to train, not {len(vecs):,}; use --kind flat or auto"
        )
    nlist = params.nlist or int(min(max(16, 4 * math.sqrt(len(vecs))), len(vecs) // 39))
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFPQ(quantizer, dim, nlist, _pq_m(dim, params), 8, faiss.METRIC_INNER_PRODUCT)
    ivf.train(vecs[np.random.default_rng(0).permutation(len(vecs))[:IVF_TRAIN]])
    return ivf
