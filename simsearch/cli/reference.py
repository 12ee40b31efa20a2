"""The CLI reference (docs/cli.md), generated from the same declarations the commands are built from:
`python -m simsearch.cli.reference > docs/cli.md`. A test checks the file is current."""

from __future__ import annotations

import inspect

import click

from simsearch.cli import cli

__all__ = ["reference"]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _option_row(ctx: click.Context, p: click.Option) -> str:
    flags = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
    kind = "" if p.is_flag else p.make_metavar(ctx)
    default = p.get_default(ctx, call=False)
    if p.required:
        shown = "required"
    elif default is None or (p.is_flag and not default) or type(default).__name__ == "Sentinel":
        shown = ""
    else:
        shown = f"`{default}`"
    return f"| {flags} | {_cell(kind)} | {shown} | {_cell(p.help or '')} |"


def _command(path: str, cmd: click.Command, parent: click.Context | None) -> list[str]:
    ctx = click.Context(cmd, info_name=path.rsplit(" ", 1)[-1], parent=parent)
    lines = [f"## `{path}`", "", f"```\n{path} {' '.join(cmd.collect_usage_pieces(ctx))}\n```", ""]
    text = inspect.cleandoc(cmd.help or "")
    lines += ["\n".join("" if ln.strip() == "\b" else ln for ln in text.splitlines()), ""]
    options = [p for p in cmd.params if isinstance(p, click.Option) and not p.hidden]
    if options:
        lines += ["| option | value | default | meaning |", "|---|---|---|---|"]
        lines += [_option_row(ctx, p) for p in options]
        lines.append("")
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            lines += _command(f"{path} {name}", cmd.commands[name], ctx)
    return lines


def reference() -> str:
    """docs/cli.md's text: every command and option, as --help would show them."""
    head = [
        "# The `simsearch` command: reference",
        "",
        "Generated from the commands' declarations by `python -m simsearch.cli.reference > docs/cli.md`;",
        "do not edit by hand. `simsearch COMMAND --help` says the same.",
        "",
    ]
    return "\n".join(head + _command("simsearch", cli, None)).rstrip() + "\n"


if __name__ == "__main__":
    print(reference(), end="")
