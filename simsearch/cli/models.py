"""`simsearch models` (the built-in encoders, read without loading torch) and `models import`."""

from __future__ import annotations

from typing import Any

import click

from simsearch.cli.common import (
    JSON,
    echo_json,
)
from simsearch.cli.declared import options_from
from simsearch.cli.root import cli
from simsearch.config.models import ImportOptions


@cli.group("models", invoke_without_command=True)
@JSON
@click.pass_context
def models_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the built-in encoders; `models import` makes an encoder from a model library's network."""
    if ctx.invoked_subcommand is not None:
        return
    from simsearch.model_files import model_summaries

    rows = model_summaries()
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(
            f"{r['name']:12s} {'(default) ' if r['default'] else ''}{r['arch']} {r['input']} -> {r['dim']}-d, {r['parameters']:,} params, {r['fingerprint']}  {r['description']}"
        )


@models_cmd.command("import")
@click.argument("spec", metavar="LIBRARY:MODEL")
@options_from(ImportOptions)
@JSON
def models_import_cmd(spec: str, as_json: bool, **opts: Any) -> None:
    """Make a simsearch encoder (model.safetensors + model.json) from a timm, torchvision or OpenCLIP network.

    LIBRARY:MODEL is timm:NAME, torchvision:NAME or openclip:NAME (e.g. timm:resnet18,
    torchvision:efficientnet_b0, openclip:ViT-B-32). The result is an ordinary checkpoint:
    give --model DIR to index build, or fine-tune it with train --init DIR. OpenCLIP encoders
    also embed text (query --text). Needs the extras: pip install 'simsearch[backbones]'
    (timm, torchvision) or 'simsearch[clip]' (OpenCLIP).
    """
    from simsearch.models_import import import_backbone

    asked = ImportOptions(**opts)
    out, pretrained = asked.out, asked.pretrained
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise click.UsageError(
            f"{out} already exists and is not empty; give a new or empty --out (nothing is overwritten)"
        )
    tag = None if pretrained is None else ("" if pretrained.lower() in ("", "default") else pretrained)
    res = import_backbone(
        spec,
        out,
        weights=asked.weights,
        pretrained=tag,
        random_init=asked.random_init,
        size=asked.size,
        config=asked.config_path,
    )
    if as_json:
        echo_json(res.to_dict())
        return
    text = "; embeds text too" if res.text else ""
    click.echo(
        f"imported {res.spec} ({res.parameters:,} parameters, {res.size}-pixel input, {res.embedding_dim}-d{text}) "
        f"from {res.weights} into {res.out}; fingerprint {res.fingerprint[:12]}"
    )
