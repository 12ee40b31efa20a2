"""Verification: are two images the same (person, character, signature, object)?"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from simsearch.engine.decision import resolve_pair_threshold
from simsearch.engine.search import Searcher
from simsearch.errors import ImageError

__all__ = ["Verdict", "verify"]


@dataclass(frozen=True)
class Verdict:
    """A same/different answer: cosine `score` of the two images against `threshold`."""

    a: str
    b: str
    score: float
    same: bool
    threshold: float
    threshold_source: str
    encoder: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    index: str | os.PathLike[str] | None = None,
    model: str | None = None,
    threshold: float | None = None,
    device: str = "auto",
) -> Verdict:
    """Embed two images with one encoder and compare them.

    With `index`, the index's encoder and its pair threshold (accepting 1% of pairs of different
    classes: from calibrate's probes, else the gallery's own pairs, else the encoder's) are used;
    without, `model` (or the default encoder) and its recommended threshold. An explicit `threshold`
    wins over both. Verification compares two images, so its threshold is fitted on pairs, not on
    best-of-gallery scores as identify's is.
    Raises ImageError when either image cannot be read.
    """
    if index is not None:
        with Searcher(index, model=model, device=device) as searcher:
            vecs, failed = searcher.embed_paths([str(a), str(b)])
            thr, thr_source = searcher.pair_threshold(threshold)
            source = searcher.model.source
    else:
        from simsearch.embed import Embedder

        embedder = Embedder.load(model, device)
        vecs, failed = embedder.embed_paths([a, b])
        thr, thr_source = resolve_pair_threshold(None, embedder.loaded.meta, threshold)
        source = embedder.loaded.source
    if failed:
        raise ImageError(*failed[0])
    score = float(vecs[0] @ vecs[1])
    return Verdict(
        a=str(a), b=str(b), score=score, same=score >= thr, threshold=thr, threshold_source=thr_source, encoder=source
    )
