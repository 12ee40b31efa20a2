"""`simsearch query` and `identify`'s own settings, each declared once with its default and help text: what to
ask (images or words, how many, which page, which part of the gallery) and the operating point an answer of
identify stands on. Free of torch, faiss and click; the CLI builds its options from these fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simsearch.config.options import fraction, option

__all__ = ["IdentifyOptions", "QueryOptions"]


@dataclass(frozen=True)
class QueryOptions:
    texts: tuple[str, ...] = option(
        (),
        'Search by words instead of an image ("a red dress"); repeat for several. Needs an index built with a '
        "CLIP-family encoder: an OpenCLIP import (simsearch models import openclip:...) or one trained with --captions.",
        flag="--text",
        metavar="TEXT",
        multiple=True,
        show_default=False,
    )
    k: int = option(5, "How many nearest gallery images to list.", flag="-k", bounds=(1, 10000))
    offset: int = option(
        0,
        "Skip this many best results first (the next page: --offset 5 -k 5 lists ranks 6-10).",
        bounds=(0, 100_000),
    )
    labels: tuple[str, ...] = option(
        (),
        "Only gallery images of this class (first-level subfolder); repeat for several.",
        flag="--label",
        multiple=True,
        show_default=False,
    )
    under: Path | None = option(None, "Only gallery images under this folder.", kind="path")


@dataclass(frozen=True)
class IdentifyOptions:
    """The operating point: a target FPIR or FNIR, a fixed threshold, or closed set."""

    fpir: float | None = fraction(
        "Target FPIR: the share of images of classes NOT in the gallery that may be accepted as some class. "
        "Default: the target `calibrate` saved, else 0.01 (1%), fitted on this gallery at its size.",
    )
    fnir: float | None = fraction(
        "Target FNIR instead: the share of images of gallery classes that may come back unknown or wrong "
        "(needs classes with two images, or calibrate).",
    )
    closed_set: bool = option(False, "Never say unknown: always the nearest class (every probe is known).")
    threshold: float | None = option(
        None, 'Cosine score below which the answer is "unknown", instead of a target.', bounds=(-1.0, 1.0)
    )
