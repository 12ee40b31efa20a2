"""Option types and the options several commands share, JSON and one-line output, sectioned --help."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click


class _Duration(click.ParamType):
    """'90' / '90s' / '80m' / '1.5h' -> seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_duration(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise ValueError(f"{text!r} is not a duration like 300, 300s, 80m or 1.5h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


class _IntList(click.ParamType):
    """'64,96,128' -> (64, 96, 128)."""

    name = "integers"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return tuple(int(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers", param, ctx)


DURATION, INT_LIST = _Duration(), _IntList()


DEVICE = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where the encoder runs: a CUDA GPU when present (auto), or as chosen. Search always runs on the CPU.",
)


INDEX = click.option(
    "--index", "index_path", required=True, type=click.Path(path_type=Path), help="The index directory."
)


JSON = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON (one object per line for queries)."
)


QUIET = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")


MODEL_FOR_INDEX = click.option(
    "--model",
    default=None,
    help="Encoder to check against the index (a built-in name or checkpoint folder). By default the index's own encoder is used; a different one is refused.",
)


OUT = click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write all answers to this file: .jsonl (one JSON object per query) or .csv.",
)


MONTAGE = click.option(
    "--montage",
    type=click.Path(path_type=Path),
    default=None,
    help="Draw a contact sheet PNG: one row per query, at most 16 taken in turn from each folder of queries, with "
    "file names. Frames are green/red when the query's folder name is a gallery class.",
)


def echo_json(obj: Any) -> None:
    # a file name that is not valid UTF-8 is written with its odd bytes escaped, still valid JSON
    click.echo(json.dumps(obj, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8"))


def one_line(text: str) -> str:
    """A path shown on one line: line breaks, other control characters and undecodable bytes escaped."""
    return text if text.isprintable() else repr(text)[1:-1]


class SectionedCommand(click.Command):
    """A command whose --help lists its options under headings (train has forty of them)."""

    def __init__(self, *args: Any, sections: Sequence[tuple[str, Sequence[str]]] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sections = sections

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = {p.name: p.get_help_record(ctx) for p in self.get_params(ctx)}
        placed: set[str | None] = set()
        for title, names in self.sections:
            records = [rows[n] for n in names if rows.get(n)]
            placed.update(names)
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)  # type: ignore[arg-type]
        rest = [r for n, r in rows.items() if n not in placed and r]
        if rest:
            with formatter.section("Other options"):
                formatter.write_dl(rest)  # type: ignore[arg-type]


def print_skipped(skipped: Sequence[Any]) -> None:
    for s in skipped:
        click.echo(f"skipped: {one_line(s.path)}: {s.reason}", err=True)
