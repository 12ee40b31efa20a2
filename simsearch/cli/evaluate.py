"""`simsearch evaluate`: measuring encoders on a labelled set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from simsearch.cli.common import DEVICE, JSON, echo_json
from simsearch.cli.declared import options_from, take
from simsearch.cli.root import cli
from simsearch.config.evaluate import EVALUATE_ORDER, PROTOCOLS, EvaluateTarget


@cli.command("evaluate")
@click.argument("data", type=click.Path(path_type=Path))
@options_from(*PROTOCOLS, order=EVALUATE_ORDER)
@DEVICE
@JSON
def evaluate_cmd(data: Path, as_json: bool, **opts: Any) -> None:
    """Measure an encoder on DATA: N-way K-shot accuracy with a 95% interval, and verification ROC AUC / EER.

    \b
    simsearch evaluate ../shared/data/omniglot/images_evaluation.zip --table --episodes 2000 --seed 0
    simsearch evaluate sigcomp2011-processed.zip --signatures --model signatures --compare raw-pixels
    """
    from simsearch.evaluate.reports import evaluate

    target = take(EvaluateTarget, opts)
    asked = {k: v for cls in PROTOCOLS[1:] for k, v in vars(take(cls, opts)).items()}
    report = evaluate(
        data, target.model, target.compare, classes=target.classes, seed=target.seed, progress=not as_json,
        **asked, **opts,
    )  # fmt: skip
    if as_json:
        echo_json(report.to_dict())
    else:
        for line in report.lines():
            click.echo(line)
    if asked["roc_png"] is not None:
        click.echo(f"wrote {asked['roc_png']}", err=True)
