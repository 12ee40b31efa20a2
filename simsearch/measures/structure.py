"""A second stage of search for encoders that carry a DCT part (encoder.DctPart, pHash's measurement kept as
numbers, the embedding's last `dim` numbers at `weight` of the cosine): among the cosine's best
STRUCTURE_POOL gallery pictures, those whose DCT part matches the query's at STRUCTURE_SURE or more come
first, each group in cosine order. At that DCT cosine the query is that very picture, faded, pixelated,
recompressed or recoloured, which pHash, dHash and PDQ always find and the networks now and then rank below
another photo; nothing else moves, and scores stay the cosines. Pure numpy.

On training photos (bench/photos_hash_signal.py, BENCHMARKS.md section 18c) the stage found every pixelated
and faded copy (1.000, from 0.992) and changed no other edit type's recall.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the encoder's module loads torch; this one stays numpy alone
    from simsearch.encoder import EncoderConfig

__all__ = ["STRUCTURE_POOL", "STRUCTURE_SURE", "StructurePart"]

STRUCTURE_POOL = 100
STRUCTURE_SURE = 0.95


@dataclass(frozen=True)
class StructurePart:
    """Where an encoder's DCT part sits in its embedding: the last `dim` numbers, `weight` of the cosine."""

    dim: int
    weight: float

    @classmethod
    def of(cls, config: EncoderConfig) -> StructurePart | None:
        """The DCT part of an encoder's config (None: it has none)."""
        return cls(config.dct_dim, config.dct_weight) if config.dct_dim > 0 else None

    def sure(self, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """(Q, P) bool: candidate j of query i ((Q, D) rows and (Q, P, D) stored rows, or only their last `dim`
        numbers) matches its DCT part at STRUCTURE_SURE or more."""
        q = queries[:, -self.dim :].astype(np.float32)
        c = candidates[:, :, -self.dim :].astype(np.float32)
        return np.einsum("qd,qpd->qp", q, c) >= STRUCTURE_SURE * self.weight

    @staticmethod
    def order(sure: np.ndarray) -> np.ndarray:
        """(Q, P) positions that put each row's sure candidates first, each group kept in its order."""
        return np.argsort(~sure, axis=1, kind="stable")
