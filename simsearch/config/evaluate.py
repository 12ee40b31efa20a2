"""`simsearch evaluate`'s settings, one request per protocol, each field declared once with its default and help
text: what is measured (encoders, classes, seed), few-shot episodes, verification pairs, signatures against
skilled forgeries, copy detection, re-framing, and open-set identification. Free of torch, faiss and click; the
CLI builds its options from these fields (in the order of EVALUATE_ORDER)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simsearch.config.options import option

__all__ = [
    "EVALUATE_ORDER",
    "CopyDetectionOptions",
    "EvaluateTarget",
    "FewShotOptions",
    "OpenSetOptions",
    "ReframeOptions",
    "SignatureOptions",
    "VerificationOptions",
]

REFRAMINGS = ("pad", "shift", "scale", "tight", "mixed")  # simsearch.edits.REFRAMINGS


@dataclass(frozen=True)
class EvaluateTarget:
    model: str | None = option(
        None, "Encoder: built-in name or checkpoint folder (default: the shipped one), or 'raw-pixels'."
    )
    compare: tuple[str, ...] = option(
        (),
        "Also measure this encoder (or 'raw-pixels'; with --copy-detection also 'phash', 'dhash' or 'pdq') in the "
        "same run; repeatable.",
        metavar="MODEL",
        multiple=True,
        show_default=False,
    )
    classes: str | None = option(
        None,
        "Only classes whose name matches, e.g. '[K-Z]*' (LFW people K to Z) or 'test/*'. "
        "With --signatures the default is 'test/*'.",
        metavar="GLOB",
    )
    seed: int = option(0)


@dataclass(frozen=True)
class FewShotOptions:
    way: int = option(20, bounds=(2, None))
    shot: int = option(1, bounds=(1, None))
    episodes: int = option(2000, bounds=(1, None))
    table: bool = option(False, "Report 5- and 20-way, 1- and 5-shot in one table (ignores --way/--shot).")


@dataclass(frozen=True)
class VerificationOptions:
    pairs: int = option(
        3000, "Same/different pairs of each kind for verification AUC/EER (0 = skip).", bounds=(0, None)
    )
    fit_classes: str | None = option(
        None,
        "Classes the verification threshold is chosen on (the best-accuracy threshold over their pairs), e.g. "
        "'[A-J]*' (LFW's training people); accuracy is then reported on the measured classes at that threshold. "
        "With --signatures the default is 'train/*' (its EER threshold). 'held-out': the classes of DATA that "
        "--model's training run held out for validation (recorded in its model.json): classes it never trained on, "
        "like the measured ones.",
        metavar="GLOB",
    )


@dataclass(frozen=True)
class SignatureOptions:
    signatures: bool = option(
        False,
        "Signature verification with skilled forgeries (classes genuine/<writer>, forgery/<writer>): per writer, "
        "--refs genuine references against the writer's other genuine signatures and its forgeries; the threshold "
        "is chosen at the EER on the --fit-classes writers and applied to the measured ones.",
    )
    refs: tuple[int, ...] = option((1, 5), "With --signatures: reference counts to measure.", kind="ints")


@dataclass(frozen=True)
class CopyDetectionOptions:
    copy_detection: bool = option(
        False,
        "Reverse image search: DATA (every image in it) is the gallery; edited copies of --queries of its images "
        "(each --edits type, seeded) are searched for their original. Reports recall@1, recall@10 and mAP per edit.",
    )
    n_originals: int = option(
        300,
        "With --copy-detection: originals that get edited copies (the other images are distractors).",
        flag="--queries",
        bounds=(1, None),
    )
    edits: str = option(
        "all",
        "With --copy-detection: comma-separated edit types: ours (crop, resize, jpeg, rotate, flip, color, "
        "grayscale, blur, text, border, combined; 'all'), and AugLy's image augmentations written to its "
        "specification ('augly': screenshot, meme, pad_canvas, crop_corner, perspective, emoji, overlay_text, "
        "pixelize, aspect_ratio, opacity), at strengths beyond what the encoders trained on.",
    )


@dataclass(frozen=True)
class ReframeOptions:
    reframe: str | None = option(
        None,
        "Few-shot and verification: re-frame every measured image first (seeded): pad = on a plain canvas twice "
        "its size, shift = moved 15-30% of each side, scale = 0.5-2x its size, tight = the middle 50-60% of each "
        "side, mixed = one of them at random. How much an encoder depends on the framing it trained on.",
        values=REFRAMINGS,
    )


@dataclass(frozen=True)
class OpenSetOptions:
    open_set: bool = option(
        False,
        "Open-set 1:N identification: galleries of --sizes classes (--shot images each), each calibrated on "
        "itself as an index is, probed with images of its classes and of classes it lacks; reports nearest-class "
        "accuracy, FNIR at FPIR 1%/10%, and FPIR stated against observed. With --copy-detection each photo is its "
        "own class and the probes are edited copies.",
    )
    sizes: tuple[int, ...] = option((20, 100, 1000), "With --open-set: gallery sizes, in classes.", kind="ints")
    runs: int = option(100, "With --open-set or --lake: galleries a size.", bounds=(1, None))
    roc_png: Path | None = option(
        None,
        "With --open-set or --lake: draw the DET curves (FNIR against FPIR, one per gallery size) into this PNG.",
        flag="--roc",
        kind="path",
    )
    lake: bool = option(
        False,
        "Lake et al.'s within-alphabet 20-way one-shot runs on an Omniglot zip (one drawer's drawings as the "
        "gallery, another's as probes; unknown probes from other alphabets), closed-set and open-set.",
    )


PROTOCOLS = (
    EvaluateTarget,
    FewShotOptions,
    VerificationOptions,
    SignatureOptions,
    CopyDetectionOptions,
    ReframeOptions,
    OpenSetOptions,
)
# the order --help lists them in
EVALUATE_ORDER = (
    "model", "way", "shot", "episodes", "seed", "table", "pairs", "classes", "signatures", "refs", "fit_classes",
    "compare", "copy_detection", "n_originals", "edits", "reframe", "open_set", "sizes", "runs", "roc_png", "lake",
)  # fmt: skip
