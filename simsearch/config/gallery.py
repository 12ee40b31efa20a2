"""`simsearch calibrate` and `duplicates`' own settings, each declared once with its default and help text.
Free of torch, faiss and click; the CLI builds its options from these fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simsearch.config.options import fraction, option

__all__ = ["CalibrateOptions", "DuplicatesOptions"]


@dataclass(frozen=True)
class CalibrateOptions:
    index_path: Path | None = option(None, "The index directory.", flag="--index", kind="path")
    encoder: str | None = option(
        None,
        "Instead of an index: measure this encoder's open-set prior on LABELLED's classes (classes it never "
        "trained on) and record it in its model.json, so that galleries too small to measure themselves (one "
        "image a class) get thresholds from it. For imported or fine-tuned encoders; train records it itself.",
        metavar="CHECKPOINT",
    )
    fpir: float | None = fraction(
        "Target FPIR (default 0.01): the share of probes of classes absent from the gallery that identify may accept.",
    )
    fnir: float | None = fraction(
        "Target FNIR instead: the share of probes of gallery classes that may come back unknown or wrong.",
    )
    far: float | None = fraction("Old name of --fpir.", hidden=True)
    roc_png: Path | None = option(
        None, "Write the open-set ROC (1-FNIR against FPIR) as a PNG here.", flag="--roc", kind="path"
    )
    dry_run: bool = option(False, "Measure and report, but do not save anything into the index.")


@dataclass(frozen=True)
class DuplicatesOptions:
    threshold: float | None = option(
        None,
        "Cosine score at or above which two images count as near-duplicates. Default: the encoder's duplicate "
        "threshold (distinct pictures of its reference set exceed it at a false-match rate of 1e-5 a pair, so "
        "about N x 1e-5 false matches for each picture in a folder of N), else 0.95.",
        bounds=(-1.0, 1.0),
    )
    out: Path | None = option(
        None, "Write the groups to .jsonl (one group a line) or .csv (one member a row).", kind="path"
    )
    remove_list: Path | None = option(
        None,
        "Write the files to remove (every member of a group but the one kept, the largest file), one path a "
        "line, for a script to act on. Nothing is deleted by simsearch.",
        kind="path",
    )
    montage_dir: Path | None = option(None, "Write one contact sheet PNG per group into this folder.", kind="path")
