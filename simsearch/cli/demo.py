"""`simsearch demo`: the whole path offline on a drawn gallery."""

from __future__ import annotations

from typing import Any

import click

from simsearch.cli.common import (
    DEVICE,
)
from simsearch.cli.declared import options_from
from simsearch.cli.root import cli
from simsearch.config.models import DemoOptions


@cli.command("demo")
@options_from(DemoOptions)
@DEVICE
def demo_cmd(device: str, **opts: Any) -> None:
    """Run the whole path offline: draw a small gallery of symbols, index it, query, identify."""
    from simsearch.demo import run_demo

    asked = DemoOptions(**opts)
    for line in run_demo(asked.workdir, data=asked.data, device=device, progress=False).lines():
        click.echo(line)
