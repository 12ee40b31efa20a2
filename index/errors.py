"""The index layer's error hierarchy (kept apart from the encoder side's)."""

from __future__ import annotations

__all__ = [
    "IndexChangedError",
    "IndexCorruptError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexStoreError",
    "VectorError",
]


class IndexStoreError(Exception):
    """Base of every error the index layer raises for bad input or a damaged index."""


class IndexNotFoundError(IndexStoreError):
    """The index directory does not exist or holds no index."""


class IndexCorruptError(IndexStoreError):
    """The index directory is damaged: unreadable files or vectors and catalog that disagree."""


class VectorError(IndexStoreError):
    """Vectors or ids handed to the index have the wrong shape, dtype or norm."""


class IndexLockedError(IndexStoreError):
    """Another process is writing this index right now."""


class IndexChangedError(IndexStoreError):
    """Another process committed a change that invalidates what this write decided before taking the lock."""
