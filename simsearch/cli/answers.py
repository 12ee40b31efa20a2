"""How query and identify answers are printed: text, JSON lines, --out files, montages."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from simsearch.cli.common import (
    echo_json,
    one_line,
)


def answer(
    images: tuple[str, ...],
    index_path: Path,
    model: str | None,
    device: str,
    ask: str,
    out: Path | None,
    montage: Path | None,
    as_json: bool,
    show: Any,
    **how: Any,
) -> int:
    """query and identify: expand the arguments, answer every readable image, print each answer
    (JSON or `show(answer)`), write --out and --montage, list the unreadable; exit 1 if any was."""
    from simsearch.engine import Searcher, expand_queries
    from simsearch.pictures import MONTAGE_ROWS, identify_sheet, query_sheet

    paths, failed = expand_queries(list(images))
    if not paths and not failed:
        raise click.UsageError("no query images found in the given paths")
    with Searcher(index_path, model=model, device=device) as searcher:
        classes = searcher.classes()
        layout = searcher.layout_warning() if ask == "identify" else None
        if layout:
            click.echo(f"warning: {layout}", err=True)
        asking = searcher.query_paths if ask == "query" else searcher.identify_paths
        answers, unreadable = asking(paths, **how)  # an unknown --label: ValueError, exit 2
    if ask == "identify" and not as_json:
        for line in identify_header(answers):
            click.echo(line)
    print_answers(answers, show, as_json, out, flatten="results" if ask == "query" else None)
    if ask == "identify" and not as_json and answers:
        click.echo(identify_tally(answers))
    if montage is not None and answers:
        sheet = query_sheet if ask == "query" else identify_sheet
        shown = min(len(answers), MONTAGE_ROWS)
        part = f"{shown} of {len(answers)} queries, sampled across their folders" if shown < len(answers) else ""
        click.echo(f"wrote {sheet(answers, montage, classes)}" + (f" ({part})" if part else ""), err=True)
    for path, reason in failed + unreadable:
        if as_json:
            echo_json({"query": path, "error": reason})
        click.echo(f"Error: cannot read query {one_line(path)}: {reason}", err=True)
    return 1 if failed or unreadable else 0


def answer_text(
    texts: tuple[str, ...],
    index_path: Path,
    model: str | None,
    device: str,
    out: Path | None,
    montage: Path | None,
    as_json: bool,
    **how: Any,
) -> int:
    """query --text: the gallery images nearest to each text, printed as query prints its answers."""
    from simsearch.engine import Searcher

    with Searcher(index_path, model=model, device=device) as searcher:
        answers = searcher.query_text(list(texts), **how)
    print_answers(answers, show_hits, as_json, out, flatten="results")
    return 0


def print_answers(answers: Sequence[Any], show: Any, as_json: bool, out: Path | None, flatten: str | None) -> None:
    """Each answer as JSON or `show(answer)`, and all of them into --out (a query's hits one a row)."""
    from simsearch.results import write_rows

    for a in answers:
        if as_json:
            echo_json(a.to_dict())
        else:
            click.echo(show(a))
    if out is not None:
        click.echo(f"wrote {write_rows([a.to_dict() for a in answers], out, flatten=flatten)}", err=True)


def show_hits(res: Any) -> str:
    hits = [
        f"  {h.rank:3d}  {h.score:+.4f}  {one_line(h.label or '-'):20s}  {one_line(h.path)}"
        + ("  (the same picture: its DCT structure matches)" if getattr(h, "same_picture", False) else "")
        for h in res.results
    ]
    return "\n".join([f"query: {one_line(res.query)}", *hits])


def show_identification(r: Any) -> str:
    """One short line per probe; the threshold is said once, above them (identify_header)."""
    query, label = one_line(r.query), one_line(r.label or "-")
    if r.label is None:
        return f"{query}: unknown  (no labelled gallery image near)"
    if not r.known:
        return f"{query}: unknown  (closest {label} {r.score:+.4f})"
    status, why = r.status
    over = f", margin {r.margin:.4f} over {one_line(r.runner_up)}" if r.runner_up is not None else ""
    because = f" ({why})" if status == "uncertain" else ""
    return f"{query}: {label}  {status}  {r.score:+.4f}{over}{because}"


def identify_header(answers: Sequence[Any]) -> list[str]:
    """The threshold in force, said once before the answers (and its warning when no score can reach it)."""
    if not answers:
        return []
    decision = answers[0].decision
    lines = [f"threshold {decision.describe()}"]
    if decision.warning:
        lines.append(f"warning: {decision.warning}")
    return lines


def identify_tally(answers: Sequence[Any]) -> str:
    counts = {"identified": 0, "uncertain": 0, "unknown": 0}
    for r in answers:
        counts[r.status[0] if r.label is not None else "unknown"] += 1
    return f"{len(answers)} probe(s): " + ", ".join(f"{n} {k}" for k, n in counts.items())


EVERY_FACE = click.option(
    "--every-face",
    is_flag=True,
    help="Photos of people, with an encoder that frames faces (faces): answer for each face a photo shows "
    "(a group photo), largest first, named photo.jpg#faceN@x,y,WxH; without it, the largest face only.",
)
