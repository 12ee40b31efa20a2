"""`simsearch evaluate`: measuring encoders on a labelled set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from simsearch.cli.common import DEVICE, JSON, echo_json
from simsearch.cli.declared import options_from, take
from simsearch.cli.root import cli
from simsearch.config.evaluate import (
    EVALUATE_ORDER,
    PROTOCOLS,
    CopyDetectionOptions,
    EvaluateTarget,
    FewShotOptions,
    OpenSetOptions,
    ReframeOptions,
    SignatureOptions,
    VerificationOptions,
)


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

    open_set = take(OpenSetOptions, opts)
    report = evaluate(
        data, take(EvaluateTarget, opts), few_shot=take(FewShotOptions, opts),
        verification=take(VerificationOptions, opts), signature=take(SignatureOptions, opts),
        copies=take(CopyDetectionOptions, opts), reframing=take(ReframeOptions, opts), open_set=open_set,
        progress=not as_json, **opts,
    )  # fmt: skip
    if as_json:
        echo_json(report.to_dict())
    else:
        for line in report.lines():
            click.echo(line)
    if open_set.roc_png is not None:
        click.echo(f"wrote {open_set.roc_png}", err=True)
