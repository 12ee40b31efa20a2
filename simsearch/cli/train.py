"""`simsearch train`: its options, declared once in simsearch.config, become click options here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from simsearch.cli.common import (
    DEVICE,
    JSON,
    SectionedCommand,
    echo_json,
)
from simsearch.cli.declared import options_from, sections_from
from simsearch.cli.root import cli
from simsearch.config.train import (
    SECTIONS,
    CaptionConfig,
    EncoderOptions,
    SelfSupConfig,
    TrainConfig,
    TrainRun,
)

_REQUEST = (TrainRun, EncoderOptions, TrainConfig, SelfSupConfig, CaptionConfig)


@cli.command("train", cls=SectionedCommand, sections=sections_from(SECTIONS, *_REQUEST))
@click.argument("data", type=click.Path(path_type=Path))
@options_from(*_REQUEST)
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
