"""`simsearch demo`: the whole path offline on a drawn gallery."""

from __future__ import annotations

from pathlib import Path

import click

from simsearch.cli.common import (
    DEVICE,
)
from simsearch.cli.root import cli


@cli.command("demo")
@click.option(
    "--out",
    "workdir",
    default="simsearch-demo",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Folder for the demo's gallery, queries and index.",
)
@click.option(
    "--data",
    default=None,
    type=click.Path(path_type=Path),
    help="Use this folder-per-class set as the gallery instead of drawing one.",
)
@DEVICE
def demo_cmd(workdir: Path, data: Path | None, device: str) -> None:
    """Run the whole path offline: draw a small gallery of symbols, index it, query, identify."""
    from simsearch.demo import run_demo

    for line in run_demo(workdir, data=data, device=device, progress=False).lines():
        click.echo(line)
