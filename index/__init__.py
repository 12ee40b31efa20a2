"""The vector-index layer: a FAISS index over int64 ids, a SQLite catalog and an atomic on-disk store.

Stands on numpy, faiss and sqlite3 alone (never torch or PIL).
"""

from index.catalog import Catalog, Record
from index.errors import (
    IndexChangedError,
    IndexCorruptError,
    IndexLockedError,
    IndexNotFoundError,
    IndexStoreError,
    VectorError,
)
from index.store import CheckReport, IndexStore, Manifest, Transaction
from index.vector_index import IndexKind, Metric, VectorIndex, check_vectors

__all__ = [
    "Catalog",
    "CheckReport",
    "IndexChangedError",
    "IndexCorruptError",
    "IndexKind",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexStore",
    "IndexStoreError",
    "Manifest",
    "Metric",
    "Record",
    "Transaction",
    "VectorError",
    "VectorIndex",
    "check_vectors",
]
