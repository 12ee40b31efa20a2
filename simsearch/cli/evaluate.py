"""`simsearch evaluate`: measuring encoders on a labelled set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from simsearch.cli.common import (
    DEVICE,
    INT_LIST,
    JSON,
    echo_json,
)
from simsearch.cli.root import cli


@cli.command("evaluate")
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--model",
    default=None,
    help="Encoder: built-in name or checkpoint folder (default: the shipped one), or 'raw-pixels'.",
)
@click.option("--way", type=click.IntRange(2), default=20, show_default=True)
@click.option("--shot", type=click.IntRange(1), default=1, show_default=True)
@click.option("--episodes", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--table", is_flag=True, help="Report 5- and 20-way, 1- and 5-shot in one table (ignores --way/--shot).")
@click.option(
    "--pairs",
    type=click.IntRange(0),
    default=3000,
    show_default=True,
    help="Same/different pairs of each kind for verification AUC/EER (0 = skip).",
)
@click.option(
    "--classes",
    default=None,
    metavar="GLOB",
    help="Only classes whose name matches, e.g. '[K-Z]*' (LFW people K to Z) or 'test/*'. "
    "With --signatures the default is 'test/*'.",
)
@click.option(
    "--signatures",
    is_flag=True,
    help="Signature verification with skilled forgeries (classes genuine/<writer>, forgery/<writer>): per writer, "
    "--refs genuine references against the writer's other genuine signatures and its forgeries; the threshold "
    "is chosen at the EER on the --fit-classes writers and applied to the measured ones.",
)
@click.option(
    "--refs", type=INT_LIST, default="1,5", show_default=True, help="With --signatures: reference counts to measure."
)
@click.option(
    "--fit-classes",
    default=None,
    metavar="GLOB",
    help="Classes the verification threshold is chosen on (the best-accuracy threshold over their pairs), e.g. "
    "'[A-J]*' (LFW's training people); accuracy is then reported on the measured classes at that threshold. "
    "With --signatures the default is 'train/*' (its EER threshold). 'held-out': the classes of DATA that "
    "--model's training run held out for validation (recorded in its model.json): classes it never trained on, "
    "like the measured ones.",
)
@click.option(
    "--compare",
    multiple=True,
    metavar="MODEL",
    help="Also measure this encoder (or 'raw-pixels'; with --copy-detection also 'phash', 'dhash' or 'pdq') in the "
    "same run; repeatable.",
)
@click.option(
    "--copy-detection",
    is_flag=True,
    help="Reverse image search: DATA (every image in it) is the gallery; edited copies of --queries of its images "
    "(each --edits type, seeded) are searched for their original. Reports recall@1, recall@10 and mAP per edit.",
)
@click.option(
    "--queries",
    "n_originals",
    type=click.IntRange(1),
    default=300,
    show_default=True,
    help="With --copy-detection: originals that get edited copies (the other images are distractors).",
)
@click.option(
    "--edits",
    default="all",
    show_default=True,
    help="With --copy-detection: comma-separated edit types: ours (crop, resize, jpeg, rotate, flip, color, "
    "grayscale, blur, text, border, combined; 'all'), and AugLy's image augmentations written to its specification "
    "('augly': screenshot, meme, pad_canvas, crop_corner, perspective, emoji, overlay_text, pixelize, aspect_ratio, "
    "opacity), at strengths beyond what the encoders trained on.",
)
@click.option(
    "--reframe",
    type=click.Choice(["pad", "shift", "scale", "tight", "mixed"]),
    default=None,
    help="Few-shot and verification: re-frame every measured image first (seeded): pad = on a plain canvas twice "
    "its size, shift = moved 15-30% of each side, scale = 0.5-2x its size, tight = the middle 50-60% of each side, "
    "mixed = one of them at random. How much an encoder depends on the framing it trained on.",
)
@click.option(
    "--open-set",
    is_flag=True,
    help="Open-set 1:N identification: galleries of --sizes classes (--shot images each), each calibrated on "
    "itself as an index is, probed with images of its classes and of classes it lacks; reports nearest-class "
    "accuracy, FNIR at FPIR 1%/10%, and FPIR stated against observed. With --copy-detection each photo is its "
    "own class and the probes are edited copies.",
)
@click.option(
    "--sizes",
    type=INT_LIST,
    default="20,100,1000",
    show_default=True,
    help="With --open-set: gallery sizes, in classes.",
)
@click.option(
    "--runs",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="With --open-set or --lake: galleries a size.",
)
@click.option(
    "--roc",
    "roc_png",
    type=click.Path(path_type=Path),
    default=None,
    help="With --open-set or --lake: draw the DET curves (FNIR against FPIR, one per gallery size) into this PNG.",
)
@click.option(
    "--lake",
    is_flag=True,
    help="Lake et al.'s within-alphabet 20-way one-shot runs on an Omniglot zip (one drawer's drawings as the "
    "gallery, another's as probes; unknown probes from other alphabets), closed-set and open-set.",
)
@DEVICE
@JSON
def evaluate_cmd(data: Path, model: str | None, compare: tuple[str, ...], as_json: bool, **opts: Any) -> None:
    """Measure an encoder on DATA: N-way K-shot accuracy with a 95% interval, and verification ROC AUC / EER.

    \b
    simsearch evaluate ../shared/data/omniglot/images_evaluation.zip --table --episodes 2000 --seed 0
    simsearch evaluate sigcomp2011-processed.zip --signatures --model signatures --compare raw-pixels
    """
    from simsearch.evaluate.reports import evaluate

    report = evaluate(data, model, compare, progress=not as_json, **opts)
    if as_json:
        echo_json(report.to_dict())
    else:
        for line in report.lines():
            click.echo(line)
    if opts.get("roc_png") is not None:
        click.echo(f"wrote {opts['roc_png']}", err=True)
