"""`simsearch models` (the built-in encoders, read without loading torch) and `models import`."""

from __future__ import annotations

from pathlib import Path

import click

from simsearch.cli.common import (
    JSON,
    echo_json,
)
from simsearch.cli.root import cli


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
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder for the checkpoint.")
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    default=None,
    help="The network's weights from a file you have (.safetensors, or a PyTorch .pth/.pt/.bin state dict, read "
    "without running code). The classifier's weights, if any, are dropped.",
)
@click.option(
    "--pretrained",
    is_flag=False,
    flag_value="default",
    default=None,
    metavar="[TAG]",
    help="Let the library download its pretrained weights (needs the network): alone, timm's or torchvision's "
    "default; or a tag (OpenCLIP needs one: e.g. openai, laion2b_s34b_b79k; torchvision: IMAGENET1K_V1; timm: a "
    "pretrained tag such as in1k).",
)
@click.option("--random-init", is_flag=True, help="Random weights: for trying the pipeline, or training from scratch.")
@click.option(
    "--size",
    type=click.IntRange(8, 512),
    default=None,
    help="Input side in pixels (default: the network's own, e.g. 224). Networks that pool their last map take "
    "any size; smaller is faster.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="OpenCLIP only: a model config JSON (embed_dim, vision_cfg, text_cfg) for a model the library does not name.",
)
@JSON
def models_import_cmd(
    spec: str,
    out: Path,
    weights: Path | None,
    pretrained: str | None,
    random_init: bool,
    size: int | None,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Make a simsearch encoder (model.safetensors + model.json) from a timm, torchvision or OpenCLIP network.

    LIBRARY:MODEL is timm:NAME, torchvision:NAME or openclip:NAME (e.g. timm:resnet18,
    torchvision:efficientnet_b0, openclip:ViT-B-32). The result is an ordinary checkpoint:
    give --model DIR to index build, or fine-tune it with train --init DIR. OpenCLIP encoders
    also embed text (query --text). Needs the extras: pip install 'simsearch[backbones]'
    (timm, torchvision) or 'simsearch[clip]' (OpenCLIP).
    """
    from simsearch.models_import import import_backbone

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise click.UsageError(
            f"{out} already exists and is not empty; give a new or empty --out (nothing is overwritten)"
        )
    tag = None if pretrained is None else ("" if pretrained.lower() in ("", "default") else pretrained)
    res = import_backbone(
        spec, out, weights=weights, pretrained=tag, random_init=random_init, size=size, config=config_path
    )
    if as_json:
        echo_json(res.to_dict())
        return
    text = "; embeds text too" if res.text else ""
    click.echo(
        f"imported {res.spec} ({res.parameters:,} parameters, {res.size}-pixel input, {res.embedding_dim}-d{text}) "
        f"from {res.weights} into {res.out}; fingerprint {res.fingerprint[:12]}"
    )
