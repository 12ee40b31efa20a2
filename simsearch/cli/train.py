"""`simsearch train`: its options, declared once in simsearch.config, become click options here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from simsearch.cli.common import (
    DEVICE,
    DURATION,
    INT_LIST,
    JSON,
    SectionedCommand,
    echo_json,
)
from simsearch.cli.root import cli

_TRAIN_SECTIONS = (
    ("Data and output", ("out", "classes", "group_batches", "resume", "overwrite", "init_model")),
    ("Encoder", ("arch", "channels", "size", "widths", "embedding_dim", "pool")),
    ("Input framing (kept in the model's preprocessing)", ("invert", "crop", "autocontrast", "fit_ink", "face")),
    ("Labelled objective", ("loss", "margin", "mining", "classes_per_batch", "per_class", "shot")),
    ("Augmentation (labelled)", ("rotations", "jitter", "elastic", "flips", "color_jitter")),
    ("Self-supervised (no labels)", ("self_supervised", "batch", "temperature", "grayscale", "views")),
    ("Image-text (captions: text queries)", ("captions", "text_width", "text_layers")),
    ("Fine-tuning a backbone (with --init)", ("train_blocks", "head")),
    ("Schedule", ("steps", "time_budget_s", "lr", "ema", "seed")),
    ("Validation", ("val_fraction", "val_fold", "val_every")),
)


@cli.command("train", cls=SectionedCommand, sections=_TRAIN_SECTIONS)
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for model.safetensors + model.json (and resume state).",
)
@click.option(
    "--loss",
    type=click.Choice(["episodic", "triplet", "contrastive"]),
    default="episodic",
    show_default=True,
    help="Training objective.",
)
@click.option(
    "--margin", type=float, default=None, help="Margin for contrastive (default 0.5) or triplet (default 0.2) loss."
)
@click.option(
    "--mining",
    type=click.Choice(["batch-hard", "semi-hard", "all"]),
    default="batch-hard",
    show_default=True,
    help="Triplet mining.",
)
@click.option(
    "--classes",
    "classes",
    default=None,
    metavar="GLOB",
    help="Train only on classes whose name matches, e.g. '[A-J]*' (LFW people A to J) or 'train/*'.",
)
@click.option(
    "--group-batches",
    is_flag=True,
    help="Fill each batch with whole groups (an alphabet's characters; a writer's genuine signatures and "
    "forgeries) so that classes meet their hardest negatives.",
)
@click.option(
    "--arch", type=click.Choice(["conv4", "resnet"]), default="conv4", show_default=True, help="Encoder architecture."
)
@click.option(
    "--channels", type=click.Choice(["1", "3"]), default="1", show_default=True, help="1 = grayscale input, 3 = RGB."
)
@click.option("--size", type=click.IntRange(8, 512), default=28, show_default=True, help="Input side in pixels.")
@click.option(
    "--widths", type=INT_LIST, default="64,96,128,256", show_default=True, help="Channels per stage, comma-separated."
)
@click.option(
    "--embedding-dim",
    type=click.IntRange(2, 4096),
    default=None,
    help="Embedding size (default: the length of the pooled features, which a linear head then maps to it otherwise).",
)
@click.option(
    "--pool",
    type=click.Choice(["avg", "flatten"]),
    default="avg",
    show_default=True,
    help="How the last stage's map becomes a vector: averaged over its positions, or flattened so that where "
    "each part sits counts (last width x positions left, e.g. 256 x 2 x 2 from 32 pixels and 4 stages).",
)
@click.option(
    "--invert/--no-invert",
    default=None,
    help="Invert intensities (dark strokes on light paper become the signal). Default: on for grayscale, off for RGB.",
)
@click.option(
    "--self-supervised",
    is_flag=True,
    help="No labels: DATA is any folder (or zip) of images; two random edits of each image (crop, flip, colour, "
    "grayscale, blur, JPEG, rotation, text, border) are pulled together, other images pushed apart (NT-Xent). "
    "Validation searches edited copies of held-out images (recall@1).",
)
@click.option(
    "--batch",
    type=click.IntRange(2),
    default=128,
    show_default=True,
    help="Self-supervised: images per step (each gives two views); --captions: (picture, caption) pairs per step.",
)
@click.option(
    "--captions",
    is_flag=True,
    help="Image-text training, CLIP-style: DATA is a folder of pictures, each with its caption in a text file of "
    "the same name (photo.jpg + photo.txt). A text tower learns to put each caption beside its pictures, so the "
    "encoder answers query --text. Validation: held-out captions as text queries (recall@5).",
)
@click.option(
    "--text-width", type=click.IntRange(8, 1024), default=128, show_default=True, help="--captions: text tower width."
)
@click.option(
    "--text-layers", type=click.IntRange(1, 12), default=2, show_default=True, help="--captions: transformer layers."
)
@click.option(
    "--train-blocks",
    type=click.IntRange(0),
    default=None,
    help="Train only the last N blocks of the image network (a ResNet's residual blocks, a ViT's transformer "
    "blocks) and the head; the rest stays frozen, batch norm included. 0: the head alone. Default: everything. "
    "Far faster on a CPU, and safer on little data.",
)
@click.option(
    "--head",
    type=click.IntRange(2, 4096),
    default=None,
    metavar="DIM",
    help="With --init: put a new linear projection head of DIM on the starting model's features (for an OpenCLIP "
    "encoder the head maps text too, so text queries still work).",
)
@click.option(
    "--temperature",
    type=click.FloatRange(0.01, 10),
    default=0.1,
    show_default=True,
    help="Self-supervised: NT-Xent softmax temperature.",
)
@click.option(
    "--grayscale-views",
    "grayscale",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Self-supervised: chance that a view loses its colour (lower lets the encoder lean on colour and miss "
    "grayscale copies).",
)
@click.option(
    "--views",
    type=click.Choice(["classic", "wide"]),
    default="classic",
    show_default=True,
    help="Self-supervised: the edits of a training view. classic: crops, flips, turns, borders up to 25%, colour, "
    "text, blur, shrinking, JPEG. wide: those plus what people do to photos beyond them: the photo small on a "
    "canvas, a corner crop, a page or app around it, fading, stickers, a changed aspect ratio, pixelation, a "
    "perspective warp.",
)
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=2000,
    show_default=True,
    help="Optimizer steps (an upper bound when --time-budget is given).",
)
@click.option(
    "--time-budget",
    "time_budget_s",
    type=DURATION,
    default=None,
    help="Stop after this long, e.g. 80m; the learning-rate schedule follows the clock.",
)
@click.option(
    "--classes-per-batch", type=click.IntRange(2), default=60, show_default=True, help="P: classes per batch."
)
@click.option(
    "--per-class", type=click.IntRange(2), default=6, show_default=True, help="K: images per class per batch."
)
@click.option(
    "--shot",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Episodic loss: support images per class (the rest are queries).",
)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Peak learning rate (AdamW, cosine schedule).")
@click.option(
    "--rotations",
    is_flag=True,
    help="Add 90/180/270-degree rotations of each class as new classes (usual on Omniglot).",
)
@click.option(
    "--jitter",
    type=click.FloatRange(0, 3),
    default=1.0,
    show_default=True,
    help="Strength of random affine jitter (0 = off).",
)
@click.option(
    "--elastic",
    type=click.FloatRange(0, 3),
    default=0.0,
    show_default=True,
    help="Strength of a random smooth local warp that bends strokes as handwriting varies "
    "(characters, signatures; 0 = off).",
)
@click.option("--flips", is_flag=True, help="Random horizontal flips.")
@click.option(
    "--color-jitter",
    type=click.FloatRange(0, 2),
    default=0.0,
    show_default=True,
    help="Strength of random brightness/contrast/saturation changes (photos, faces; 0 = off).",
)
@click.option(
    "--ema",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Validate and keep an exponential moving average of the weights with this decay (e.g. 0.98: about "
    "the last 50 steps) instead of the last step's weights. 0 = off.",
)
@click.option(
    "--crop",
    type=click.FloatRange(0.1, 1.0),
    default=1.0,
    show_default=True,
    help="Keep this centred share of each side before resizing (0.5 on LFW's 250x250 portraits keeps the face).",
)
@click.option(
    "--autocontrast/--no-autocontrast",
    default=False,
    show_default=True,
    help="Stretch each image's contrast to the full range inside the encoder, so thin or faint pen lines "
    "(grey once shrunk) look like any other stroke; kept in the model's preprocessing.",
)
@click.option(
    "--fit-ink/--no-fit-ink",
    default=False,
    show_default=True,
    help="Drawings (one channel): frame each image by the square around its strokes before resizing, so a "
    "character drawn small, large or off-centre fills the input alike; the ink is dark unless --no-invert. "
    "Kept in the model's preprocessing.",
)
@click.option(
    "--face/--no-face",
    default=False,
    show_default=True,
    help="Photos of people: find the largest face in each image (OpenCV's Haar cascades), level it by its eyes "
    "and cut out a square 1.1 times the detector's box before resizing, so any framing (a portrait, a tight crop, "
    "a group photo) gives the encoder the same view; images without a face are skipped. Replaces --crop; kept in "
    "the model's preprocessing.",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 0.9),
    default=0.15,
    show_default=True,
    help="Share of groups (alphabets) held out for validation; 0 = none.",
)
@click.option(
    "--val-fold",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Which block of --val-fraction of the (seeded, shuffled) groups to hold out: folds 0, 1, ... are "
    "disjoint, so running one command with each fold cross-validates a recipe on few classes (45 signature "
    "writers make folds 0 to 5 at 0.15). The held-out classes are recorded in model.json.",
)
@click.option(
    "--val-every",
    type=click.IntRange(1),
    default=250,
    show_default=True,
    help="Validate (and keep the best checkpoint) every N steps.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for sampling, augmentation and initialization."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run (labelled or --self-supervised) from the state saved in --out at its last "
    "validation; the architecture comes from there, the other options must be the run's own.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the trained encoder (or unfinished run) already in --out; without it an occupied --out is "
    "refused, since indexes built with the old encoder stop answering once it is replaced.",
)
@click.option(
    "--init",
    "init_model",
    default=None,
    metavar="MODEL",
    help="Fine-tune: start from the weights of a built-in encoder (e.g. photos) or a checkpoint folder. Its "
    "architecture is kept, so --arch, --channels, --widths, --embedding-dim and --pool must not be given; so is its "
    "preprocessing, except what --size, --invert/--no-invert, --crop, --autocontrast/--no-autocontrast, "
    "--fit-ink/--no-fit-ink or --face/--no-face say "
    "(networks that average their last map take any input size; --pool flatten ones keep theirs).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@DEVICE
@JSON
@click.pass_context
def train_cmd(ctx: click.Context, data: Path, out: Path, quiet: bool, as_json: bool, **opts: Any) -> None:
    """Train a Siamese encoder on DATA: a folder-per-class tree or a zip of one (Omniglot's zips work as they are).

    Classes are the folders holding the images; whole top-level groups (alphabets) are held out
    for validation, and the checkpoint with the best validation accuracy is kept (N-way K-shot;
    for signature data laid out as genuine/<writer> and forgery/<writer>: one-reference
    verification against the held-out writers' forgeries, 1 - EER). With --self-supervised DATA
    is any folder of images, no labels (see that option); with --init MODEL training starts from
    an existing encoder (fine-tuning).
    """
    from simsearch.train import TrainRequest, run_training

    given = [n for n in opts if ctx.get_parameter_source(n) is not click.core.ParameterSource.DEFAULT]
    result = run_training(TrainRequest.from_options(data, out, opts, given), progress=not (quiet or as_json))
    if as_json:
        echo_json(result.to_dict())
        return
    best = f"{result.best_val_accuracy:.4f}" if result.best_val_accuracy is not None else "n/a"
    click.echo(
        f"trained {result.steps} steps in {result.elapsed_s:.0f}s ({result.step_s:.3f}s a step); best "
        f"{result.val_measure} {best}; checkpoint in {result.out_dir}"
    )
