"""The `simsearch` command: click only. Each command builds a config, calls one library function and
prints; main() is the one place that turns errors into a line and an exit code."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from simsearch import __version__

# ---------------------------------------------------------------- option types and shared options


class _Duration(click.ParamType):
    """'90' / '90s' / '80m' / '1.5h' -> seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return _parse_duration(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


def _parse_duration(text: str) -> float:
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


_DURATION, _INT_LIST = _Duration(), _IntList()

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


def _echo_json(obj: Any) -> None:
    # a file name that is not valid UTF-8 is written with its odd bytes escaped, still valid JSON
    click.echo(json.dumps(obj, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8"))


def _one_line(text: str) -> str:
    """A path shown on one line: line breaks, other control characters and undecodable bytes escaped."""
    return text if text.isprintable() else repr(text)[1:-1]


class _SectionedCommand(click.Command):
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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, package_name="simsearch")
def cli() -> None:
    """Similarity search for images with a Siamese encoder and a FAISS index.

    \b
    Typical use:
      simsearch index build PHOTOS/ --index my.idx    embed a folder into an index
      simsearch query some.jpg --index my.idx -k 5    nearest gallery images
      simsearch identify probe.png --index my.idx     which class, or "unknown"
      simsearch demo                                  everything above on a drawn gallery, offline
    """


# ---------------------------------------------------------------- index
@cli.group("index")
def index_group() -> None:
    """Build, sync and inspect index directories."""


@index_group.command("build")
@click.argument("folder", type=click.Path(path_type=Path))
@INDEX
@click.option(
    "--model",
    default=None,
    help="Encoder: a built-in name (see `simsearch models`) or a checkpoint folder. Default: the shipped character encoder.",
)
@DEVICE
@click.option(
    "--batch-size",
    default=256,
    show_default=True,
    type=click.IntRange(1, 65536),
    help="Images embedded per forward pass.",
)
@click.option(
    "--strict", is_flag=True, help="Fail (exit 1, nothing written) if any file cannot be read, instead of skipping it."
)
@click.option(
    "--overwrite", is_flag=True, help="Replace an existing index instead of syncing it (needed to change encoder)."
)
@click.option(
    "--kind",
    type=click.Choice(["auto", "flat", "hnsw", "ivfpq"]),
    default=None,
    help="Index structure: flat (exact), hnsw (fast, approximate), ivfpq (16x smaller in memory; exact vectors stay on disk for re-ranking), or auto: flat below 50,000 images, hnsw above. Default: auto for a new index, unchanged for an existing one.",
)
@click.option(
    "--cluster",
    default=None,
    help="Embed on a Dask cluster: 'local' starts --workers processes here (on 127.0.0.1), or give a "
    "scheduler address (tcp://host:8786) whose workers see FOLDER at the same path. Makes a new index "
    "(with --overwrite over an old one); the same index a local build makes. Needs simsearch[distributed].",
)
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Worker processes of --cluster local (the cores are shared between them).",
)
@click.option(
    "--shard-files",
    default=512,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Files a --cluster worker embeds per task (larger for millions of files: fewer, bigger tasks).",
)
@QUIET
@JSON
def index_build(
    folder: Path,
    index_path: Path,
    quiet: bool,
    as_json: bool,
    cluster: str | None,
    workers: int,
    shard_files: int,
    **opts: Any,
) -> None:
    """Embed every image under FOLDER into the index (labels = first-level subfolders).

    Run again on the same index, it syncs: new and changed files are embedded, deleted ones
    removed, moved ones re-pathed; every image under FOLDER is indexed again (an `index remove`
    of a file still there lasts until the next sync), and entries `index add` brought from
    outside FOLDER are kept. Unreadable files are skipped with their reason and listed at the
    end. The index is replaced in one atomic step: interrupting a build loses nothing.
    """
    from simsearch.engine import StrictModeError, build_index

    ctx = click.get_current_context()
    for name in ("workers", "shard_files"):
        given = ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        if given and cluster is None:
            raise click.UsageError(f"--{name.replace('_', '-')} needs --cluster")
    try:
        if cluster is not None:
            from simsearch.engine.distributed import build_distributed

            report = build_distributed(
                folder,
                index_path,
                cluster=cluster,
                workers=workers,
                shard_files=shard_files,
                progress=not (quiet or as_json),
                **opts,
            )
        else:
            report = build_index(folder, index_path, progress=not (quiet or as_json), **opts)
    except StrictModeError as err:
        _print_skipped(err.skipped)
        raise
    _print_report(report, as_json)


def _print_skipped(skipped: Sequence[Any]) -> None:
    for s in skipped:
        click.echo(f"skipped: {_one_line(s.path)}: {s.reason}", err=True)


def _print_report(report: Any, as_json: bool) -> None:
    """A BuildReport as JSON, or as the skipped list (stderr) and the "N indexed, M skipped" summary."""
    if as_json:
        _echo_json(report.to_dict())
        return
    _print_skipped(report.skipped)
    for warning in getattr(report, "warnings", []):
        click.echo(f"warning: {warning}", err=True)
    parts = [f"{report.indexed:,} indexed", f"{len(report.skipped):,} skipped"]
    if not report.created:
        parts += [f"{report.unchanged:,} unchanged", f"{report.moved:,} moved", f"{report.removed:,} removed"]
        if report.outside:
            parts.append(f"{report.outside:,} kept from outside the folder")
    click.echo(f"{', '.join(parts)}; {report.total:,} images in {report.index} ({report.elapsed_s:.1f}s)")


@index_group.command("add")
@click.argument("images", nargs=-1, required=True)
@INDEX
@click.option(
    "--label",
    default=None,
    help="Class of the added images (default: their first-level subfolder for folders, none for files).",
)
@DEVICE
@click.option("--strict", is_flag=True, help="Fail with nothing written if any file cannot be read.")
@QUIET
@JSON
def index_add(images: tuple[str, ...], index_path: Path, quiet: bool, as_json: bool, **opts: Any) -> None:
    """Add image files or folders to an existing index (with the index's own encoder)."""
    from simsearch.engine import add_files

    _print_report(add_files(index_path, list(images), progress=not (quiet or as_json), **opts), as_json)


@index_group.command("remove")
@click.argument("targets", nargs=-1, required=True)
@INDEX
@JSON
def index_remove(targets: tuple[str, ...], index_path: Path, as_json: bool) -> int:
    """Remove entries by path (a file, or everything under a folder) or by id. Files are not touched.

    Exit 1 if some target matched nothing (the others are still removed).
    """
    from simsearch.engine import remove_entries

    removed, unmatched = remove_entries(index_path, list(targets))
    if as_json:
        _echo_json({"removed": removed, "unmatched": unmatched})
    else:
        click.echo(f"{removed:,} removed from {index_path}")
        for t in unmatched:
            click.echo(f"Error: {_one_line(t)}: not in the index", err=True)
    return 1 if unmatched else 0


@index_group.command("info")
@INDEX
@JSON
def index_info(index_path: Path, as_json: bool) -> None:
    """Counts, classes, encoder, index kind, size on disk and threshold of an index."""
    from simsearch.engine import index_info

    info = index_info(index_path)
    if as_json:
        _echo_json(info)
        return
    for k, v in info.items():
        if k == "class_sizes":
            shown = ", ".join(f"{_one_line(str(c))} {n}" for c, n in list(v.items())[:50])
            more = f" ... and {len(v) - 50:,} more (--json lists every class)" if len(v) > 50 else ""
            click.echo(f"{k:16s} {shown}{more}")
        elif k == "calibrations":
            for name, rec in v.items():
                shown = "; ".join(f"{a} {b}" for a, b in rec.items() if b is not None)
                click.echo(f"{'calibration':16s} {name}: {shown}")
        else:
            click.echo(f"{k:16s} {'-' if v is None else v}")


@index_group.command("export")
@click.argument("out", type=click.Path(path_type=Path))
@INDEX
@JSON
def index_export(out: Path, index_path: Path, as_json: bool) -> None:
    """Write the index's embeddings to OUT (.parquet, or .npy with a .json beside it): one row per image
    with id, path, label, size, mtime, sha256 and the embedding; the encoder's record (source,
    fingerprint, preprocessing) goes in the file's metadata. Parquet needs pyarrow (simsearch[parquet])."""
    from simsearch.engine import export_embeddings

    done = export_embeddings(index_path, out)
    summary = {
        "out": str(out),
        "count": len(done),
        "dim": done.meta["dim"],
        "encoder": done.meta["encoder"].get("source"),
    }
    if as_json:
        _echo_json(summary)
    else:
        click.echo(f"wrote {len(done):,} embeddings of width {done.meta['dim']} to {out}")


@index_group.command("import")
@click.argument("src", type=click.Path(path_type=Path))
@INDEX
@click.option(
    "--model",
    default=None,
    help="Where the encoder that made the embeddings is here (default: the source they record). Its "
    "fingerprint must match theirs: queries are embedded by it.",
)
@click.option(
    "--kind",
    type=click.Choice(["auto", "flat", "hnsw", "ivfpq"]),
    default="auto",
    show_default=True,
    help="Index structure (see `index build --help`).",
)
@click.option("--overwrite", is_flag=True, help="Replace an index already at --index.")
@JSON
def index_import(src: Path, index_path: Path, model: str | None, kind: str, overwrite: bool, as_json: bool) -> None:
    """Build a new index from exported embeddings (SRC: .parquet, or .npy with its .json), keeping their ids,
    paths and labels, without embedding anything again."""
    from simsearch.engine import import_embeddings

    count = import_embeddings(src, index_path, model=model, kind=kind, overwrite=overwrite)
    if as_json:
        _echo_json({"index": str(index_path), "count": count})
    else:
        click.echo(f"imported {count:,} embeddings into {index_path}")


@index_group.command("check")
@INDEX
def index_check(index_path: Path) -> int:
    """Check that catalog, vectors and manifest agree (exit 1 if not)."""
    from simsearch.engine import open_index

    with open_index(index_path) as store:
        report = store.check()
    if report.ok:
        click.echo(f"ok: {report.count:,} images, catalog and vectors agree")
        return 0
    for p in report.problems:
        click.echo(f"problem: {p}", err=True)
    return 1


# ---------------------------------------------------------------- query / identify / verify
def _answer(
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
        answers, unreadable = getattr(searcher, f"{ask}_paths")(paths, **how)  # an unknown --label: ValueError, exit 2
    _print_answers(answers, show, as_json, out, flatten="results" if ask == "query" else None)
    if montage is not None and answers:
        sheet = query_sheet if ask == "query" else identify_sheet
        shown = min(len(answers), MONTAGE_ROWS)
        part = f"{shown} of {len(answers)} queries, sampled across their folders" if shown < len(answers) else ""
        click.echo(f"wrote {sheet(answers, montage, classes)}" + (f" ({part})" if part else ""), err=True)
    for path, reason in failed + unreadable:
        if as_json:
            _echo_json({"query": path, "error": reason})
        click.echo(f"Error: cannot read query {_one_line(path)}: {reason}", err=True)
    return 1 if failed or unreadable else 0


def _answer_text(
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
    _print_answers(answers, _show_hits, as_json, out, flatten="results")
    return 0


def _print_answers(answers: Sequence[Any], show: Any, as_json: bool, out: Path | None, flatten: str | None) -> None:
    """Each answer as JSON or `show(answer)`, and all of them into --out (a query's hits one a row)."""
    from simsearch.results import write_rows

    for a in answers:
        if as_json:
            _echo_json(a.to_dict())
        else:
            click.echo(show(a))
    if out is not None:
        click.echo(f"wrote {write_rows([a.to_dict() for a in answers], out, flatten=flatten)}", err=True)


def _show_hits(res: Any) -> str:
    hits = [f"  {h.rank:3d}  {h.score:+.4f}  {_one_line(h.label or '-'):20s}  {_one_line(h.path)}" for h in res.results]
    return "\n".join([f"query: {_one_line(res.query)}", *hits])


def _show_identification(r: Any) -> str:
    where = f"threshold {r.decision.describe()}"
    query, label = _one_line(r.query), _one_line(r.label or "-")
    if r.label is None:
        return f"{query}: unknown  (no labelled gallery image near; {where})"
    if r.known:
        status, why = r.status
        flag = f"{status}: {why}; " if status == "uncertain" else ""
        return (
            f"{query}: {label}  ({flag}score {r.score:+.4f}, margin {r.margin:.4f} over {_one_line(r.runner_up or '-')}; "
            f"match {_one_line(r.match or '-')}; {where})"
        )
    return f"{query}: unknown  (closest {label} at {r.score:+.4f} < {where})"


EVERY_FACE = click.option(
    "--every-face",
    is_flag=True,
    help="Photos of people, with an encoder that frames faces (faces): answer for each face a photo shows "
    "(a group photo), largest first, named photo.jpg#faceN@x,y,WxH; without it, the largest face only.",
)


@cli.command("query")
@click.argument("images", nargs=-1)
@click.option(
    "--text",
    "texts",
    multiple=True,
    metavar="TEXT",
    help='Search by words instead of an image ("a red dress"); repeat for several. Needs an index built with a '
    "CLIP-family encoder: an OpenCLIP import (simsearch models import openclip:...) or one trained with --captions.",
)
@INDEX
@click.option(
    "-k",
    "k",
    default=5,
    show_default=True,
    type=click.IntRange(1, 10000),
    help="How many nearest gallery images to list.",
)
@click.option(
    "--offset",
    default=0,
    show_default=True,
    type=click.IntRange(0, 100_000),
    help="Skip this many best results first (the next page: --offset 5 -k 5 lists ranks 6-10).",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    help="Only gallery images of this class (first-level subfolder); repeat for several.",
)
@click.option(
    "--under",
    type=click.Path(path_type=Path),
    default=None,
    help="Only gallery images under this folder.",
)
@EVERY_FACE
@MODEL_FOR_INDEX
@DEVICE
@OUT
@MONTAGE
@JSON
def query_cmd(
    images: tuple[str, ...],
    texts: tuple[str, ...],
    index_path: Path,
    k: int,
    offset: int,
    labels: tuple[str, ...],
    under: Path | None,
    every_face: bool,
    **opts: Any,
) -> int:
    """Find the gallery images most similar to each query image (files or folders), or to each --text,
    best first.

    Scores are cosine similarities in [-1, 1]. --label and --under search a part of the gallery;
    --offset pages on. Exit 1 if any query image could not be read.
    """
    if texts:
        if images:
            raise click.UsageError("give query images or --text, not both")
        if every_face or opts.get("montage") is not None:
            raise click.UsageError("--every-face and --montage are for query images, not --text")
        return _answer_text(texts, index_path, k=k, offset=offset, labels=list(labels) or None, under=under, **opts)
    if not images:
        raise click.UsageError("give query images (files or folders) or --text")
    return _answer(
        images,
        index_path,
        ask="query",
        show=_show_hits,
        k=k,
        offset=offset,
        every_face=every_face,
        labels=list(labels) or None,
        under=under,
        **opts,
    )


@cli.command("identify")
@click.argument("images", nargs=-1, required=True)
@INDEX
@click.option(
    "--fpir",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=None,
    help="Target FPIR: the share of images of classes NOT in the gallery that may be accepted as some class. "
    "Default: the target `calibrate` saved, else 0.01 (1%), fitted on this gallery at its size.",
)
@click.option(
    "--fnir",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=None,
    help="Target FNIR instead: the share of images of gallery classes that may come back unknown or wrong "
    "(needs classes with two images, or calibrate).",
)
@EVERY_FACE
@click.option("--closed-set", is_flag=True, help="Never say unknown: always the nearest class (every probe is known).")
@click.option(
    "--threshold",
    type=click.FloatRange(-1.0, 1.0),
    default=None,
    help='Cosine score below which the answer is "unknown", instead of a target.',
)
@MODEL_FOR_INDEX
@DEVICE
@OUT
@MONTAGE
@JSON
def identify_cmd(
    images: tuple[str, ...],
    index_path: Path,
    threshold: float | None,
    fpir: float | None,
    fnir: float | None,
    closed_set: bool,
    every_face: bool,
    **opts: Any,
) -> int:
    """Say which gallery class (first-level subfolder) each image shows, or "unknown".

    Classes are scored as wholes: the best match in the class decides, the mean of its best
    three and the margin over the runner-up class are reported with it. The threshold is fitted
    on this gallery (an index measures itself at every build and sync; `calibrate` measures it
    with labelled probes) for a target FPIR, 1% unless told otherwise; every answer names the
    threshold, its source and the FPIR/FNIR it stands for. Exit 1 if any image could not be read.
    """
    from simsearch.engine import OperatingPoint

    point = OperatingPoint(threshold=threshold, fpir=fpir, fnir=fnir, closed_set=closed_set)
    return _answer(
        images, index_path, ask="identify", show=_show_identification, point=point, every_face=every_face, **opts
    )


@cli.command("verify")
@click.argument("a")
@click.argument("b")
@click.option(
    "--index",
    "index_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Use this index's encoder and its pair threshold (1% of pairs of different classes accepted: "
    "from calibrate's probes, else the gallery's own pairs, else the encoder's).",
)
@click.option("--model", default=None, help="Encoder (built-in name or checkpoint folder) when no --index is given.")
@click.option(
    "--threshold",
    type=click.FloatRange(-1.0, 1.0),
    default=None,
    help="Cosine score at or above which the two are the same.",
)
@DEVICE
@JSON
@click.pass_obj
def verify_cmd(state: dict[str, Any], a: str, b: str, index_path: Path | None, as_json: bool, **opts: Any) -> int:
    """Are images A and B the same (person, character, signature, object)?

    Exit code 0 = same, 1 = different, 2 or more = error, for scripts.
    """
    from simsearch.engine import verify

    state["error_exit"] = 2  # 1 means "different" here
    v = verify(a, b, index=index_path, **opts)
    if as_json:
        _echo_json(v.to_dict())
    else:
        click.echo(
            f"{'same' if v.same else 'different'}  (score {v.score:+.4f}, threshold {v.threshold:.4f} "
            f"[{v.threshold_source}], encoder {v.encoder})"
        )
    return 0 if v.same else 1


@cli.command("calibrate")
@click.argument("labelled", type=click.Path(path_type=Path))
@INDEX
@click.option(
    "--fpir",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=None,
    help="Target FPIR (default 0.01): the share of probes of classes absent from the gallery that identify may accept.",
)
@click.option(
    "--fnir",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=None,
    help="Target FNIR instead: the share of probes of gallery classes that may come back unknown or wrong.",
)
@click.option(
    "--far",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=None,
    hidden=True,
    help="Old name of --fpir.",
)
@click.option(
    "--roc",
    "roc_png",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the open-set ROC (1-FNIR against FPIR) as a PNG here.",
)
@click.option("--dry-run", is_flag=True, help="Measure and report, but do not save anything into the index.")
@DEVICE
@JSON
def calibrate_cmd(labelled: Path, index_path: Path, dry_run: bool, as_json: bool, **opts: Any) -> None:
    """Measure identify's FPIR and FNIR against the index's gallery, at its real size, with the labelled
    probes in LABELLED (a folder per class; images the gallery does not hold), and save the threshold for
    the target into the index; identify and the service then use it by default.

    \b
    A probe of a gallery class is a known probe, and also an unknown one with its own class left
    out of the gallery; probes of other classes are unknown probes as they are. FPIR: the share of
    unknown probes accepted as some class. FNIR: the share of known probes not given their class.
    """
    from simsearch.engine import calibrate

    c = calibrate(labelled, index_path, save=not dry_run, progress=not as_json, **opts)
    if as_json:
        _echo_json(c.to_dict())
        return
    _print_skipped(c.skipped)
    click.echo(
        f"{c.probes:,} probes: {c.known_probes:,} of gallery classes, {c.unknown_probes:,} of other classes, "
        f"{c.derived_unknown:,} more unknown ones with their own class left out; gallery {c.gallery_images:,} images "
        f"in {c.gallery_classes:,} classes"
    )
    if c.nearest_class_accuracy is not None:
        click.echo(f"nearest class right for {100 * c.nearest_class_accuracy:.1f}% of known probes (closed-set)")
    click.echo("   FPIR  threshold   FNIR")
    for row in c.rows:
        fnir = "-" if row["fnir"] is None else f"{row['fnir']:.4f}"
        click.echo(f"  {row['fpir']:5.3f}  {row['threshold']:+.4f}   {fnir}")
    click.echo(f"threshold {c.decision.describe()}")
    if c.observed_fpir is not None:
        fnir = "-" if c.observed_fnir is None else f"{c.observed_fnir:.4f}"
        click.echo(f"on these probes at it: FPIR {c.observed_fpir:.4f}, FNIR {fnir}")
    click.echo(
        ("not saved (--dry-run)" if dry_run else f"saved into {index_path}")
        + (f"; ROC curve: {c.roc_png}" if c.roc_png else "")
    )


@cli.command("duplicates")
@INDEX
@click.option(
    "--threshold",
    type=click.FloatRange(-1.0, 1.0),
    default=None,
    help="Cosine score at or above which two images count as near-duplicates. Default: the encoder's duplicate "
    "threshold (distinct pictures of its reference set exceed it at a false-match rate of 1e-5 a pair, so about N x 1e-5 false matches for each picture in a folder of N), else 0.95.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the groups to .jsonl (one group a line) or .csv (one member a row).",
)
@click.option(
    "--remove-list",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the files to remove (every member of a group but the one kept, the largest file), one path a "
    "line, for a script to act on. Nothing is deleted by simsearch.",
)
@click.option(
    "--montage-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Write one contact sheet PNG per group into this folder.",
)
@JSON
def duplicates_cmd(
    index_path: Path,
    threshold: float | None,
    out: Path | None,
    remove_list: Path | None,
    montage_dir: Path | None,
    as_json: bool,
) -> None:
    """Groups of duplicate gallery images: files with identical bytes, then near-duplicates.

    Every member of a group scores at least the threshold against the group's first image (its
    centre), so unrelated images are never chained together through intermediate ones. In each
    group the largest file is marked "keep" and the others "remove"; nothing is deleted.
    """
    from simsearch.engine import duplicate_rows, duplicate_threshold, find_duplicates, open_index
    from simsearch.files import write_atomic
    from simsearch.model_files import recorded_meta
    from simsearch.pictures import group_sheets
    from simsearch.results import write_rows

    source = "given"
    if threshold is None:
        with open_index(index_path) as store:
            encoder = store.manifest.encoder
        threshold, source = duplicate_threshold(encoder, recorded_meta(encoder.get("source")))
    rows = duplicate_rows(find_duplicates(index_path, threshold))
    for row in rows:
        if as_json:
            _echo_json(row)
        else:
            click.echo(f"group {row['group']} ({row['size']} images)")
            for m in row["members"]:
                click.echo(
                    f"  {'keep  ' if m['keep'] else 'remove' if m['remove'] else 'same  '}  {m['score']:+.4f} "
                    f"{m['match']:6s}  {_one_line(m['path'])}"
                )
    if not as_json:
        removable = sum(len(r["remove"]) for r in rows)
        click.echo(f"{len(rows)} group(s), {removable} file(s) to remove, at threshold {threshold:.4f} ({source})")
    if out is not None:
        click.echo(f"wrote {write_rows(rows, out, flatten='members')}", err=True)
    if remove_list is not None:
        doomed = [p for r in rows for p in r["remove"]]
        odd = [p for p in doomed if "\n" in p or "\r" in p]
        for p in odd:
            click.echo(f"warning: not in the remove list (its name holds a line break): {p!r}", err=True)
        text = "".join(f"{p}\n" for p in doomed if p not in odd)
        write_atomic(remove_list, text.encode("utf-8", "surrogateescape"))
        click.echo(f"wrote {remove_list} ({len(doomed) - len(odd)} paths)", err=True)
    if montage_dir is not None:
        drawn = group_sheets(rows, montage_dir)
        more = f" (the first {len(drawn)} of {len(rows)} groups)" if len(drawn) < len(rows) else ""
        click.echo(f"wrote {len(drawn)} group sheet(s) to {montage_dir}{more}", err=True)


# ---------------------------------------------------------------- models / train / evaluate
@cli.group("models", invoke_without_command=True)
@JSON
@click.pass_context
def models_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the built-in encoders; `models import` makes an encoder from a model library's network."""
    if ctx.invoked_subcommand is not None:
        return
    from simsearch.checkpoint import model_summaries

    rows = model_summaries()
    if as_json:
        _echo_json(rows)
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
        _echo_json(res.to_dict())
        return
    text = "; embeds text too" if res.text else ""
    click.echo(
        f"imported {res.spec} ({res.parameters:,} parameters, {res.size}-pixel input, {res.embedding_dim}-d{text}) "
        f"from {res.weights} into {res.out}; fingerprint {res.fingerprint[:12]}"
    )


_TRAIN_SECTIONS = (
    ("Data and output", ("out", "classes", "group_batches", "resume", "overwrite", "init_model")),
    ("Encoder", ("arch", "channels", "size", "widths", "embedding_dim", "pool")),
    ("Input framing (kept in the model's preprocessing)", ("invert", "crop", "autocontrast", "fit_ink", "face")),
    ("Labelled objective", ("loss", "margin", "mining", "classes_per_batch", "per_class", "shot")),
    ("Augmentation (labelled)", ("rotations", "jitter", "elastic", "flips", "color_jitter")),
    ("Self-supervised (no labels)", ("self_supervised", "batch", "temperature", "grayscale", "views")),
    ("Image-text (captions: text queries)", ("captions", "text_width", "text_layers")),
    ("Fine-tuning a backbone (with --init)", ("train_blocks", "head")),
    ("Schedule", ("steps", "time_budget_s", "lr", "ema", "seed")),
    ("Validation", ("val_fraction", "val_fold", "val_every")),
)


@cli.command("train", cls=_SectionedCommand, sections=_TRAIN_SECTIONS)
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for model.safetensors + model.json (and resume state).",
)
@click.option(
    "--loss",
    type=click.Choice(["episodic", "triplet", "contrastive"]),
    default="episodic",
    show_default=True,
    help="Training objective.",
)
@click.option(
    "--margin", type=float, default=None, help="Margin for contrastive (default 0.5) or triplet (default 0.2) loss."
)
@click.option(
    "--mining",
    type=click.Choice(["batch-hard", "semi-hard", "all"]),
    default="batch-hard",
    show_default=True,
    help="Triplet mining.",
)
@click.option(
    "--classes",
    "classes",
    default=None,
    metavar="GLOB",
    help="Train only on classes whose name matches, e.g. '[A-J]*' (LFW people A to J) or 'train/*'.",
)
@click.option(
    "--group-batches",
    is_flag=True,
    help="Fill each batch with whole groups (an alphabet's characters; a writer's genuine signatures and "
    "forgeries) so that classes meet their hardest negatives.",
)
@click.option(
    "--arch", type=click.Choice(["conv4", "resnet"]), default="conv4", show_default=True, help="Encoder architecture."
)
@click.option(
    "--channels", type=click.Choice(["1", "3"]), default="1", show_default=True, help="1 = grayscale input, 3 = RGB."
)
@click.option("--size", type=click.IntRange(8, 512), default=28, show_default=True, help="Input side in pixels.")
@click.option(
    "--widths", type=_INT_LIST, default="64,96,128,256", show_default=True, help="Channels per stage, comma-separated."
)
@click.option(
    "--embedding-dim",
    type=click.IntRange(2, 4096),
    default=None,
    help="Embedding size (default: the length of the pooled features, which a linear head then maps to it otherwise).",
)
@click.option(
    "--pool",
    type=click.Choice(["avg", "flatten"]),
    default="avg",
    show_default=True,
    help="How the last stage's map becomes a vector: averaged over its positions, or flattened so that where "
    "each part sits counts (last width x positions left, e.g. 256 x 2 x 2 from 32 pixels and 4 stages).",
)
@click.option(
    "--invert/--no-invert",
    default=None,
    help="Invert intensities (dark strokes on light paper become the signal). Default: on for grayscale, off for RGB.",
)
@click.option(
    "--self-supervised",
    is_flag=True,
    help="No labels: DATA is any folder (or zip) of images; two random edits of each image (crop, flip, colour, "
    "grayscale, blur, JPEG, rotation, text, border) are pulled together, other images pushed apart (NT-Xent). "
    "Validation searches edited copies of held-out images (recall@1).",
)
@click.option(
    "--batch",
    type=click.IntRange(2),
    default=128,
    show_default=True,
    help="Self-supervised: images per step (each gives two views); --captions: (picture, caption) pairs per step.",
)
@click.option(
    "--captions",
    is_flag=True,
    help="Image-text training, CLIP-style: DATA is a folder of pictures, each with its caption in a text file of "
    "the same name (photo.jpg + photo.txt). A text tower learns to put each caption beside its pictures, so the "
    "encoder answers query --text. Validation: held-out captions as text queries (recall@5).",
)
@click.option(
    "--text-width", type=click.IntRange(8, 1024), default=128, show_default=True, help="--captions: text tower width."
)
@click.option(
    "--text-layers", type=click.IntRange(1, 12), default=2, show_default=True, help="--captions: transformer layers."
)
@click.option(
    "--train-blocks",
    type=click.IntRange(0),
    default=None,
    help="Train only the last N blocks of the image network (a ResNet's residual blocks, a ViT's transformer "
    "blocks) and the head; the rest stays frozen, batch norm included. 0: the head alone. Default: everything. "
    "Far faster on a CPU, and safer on little data.",
)
@click.option(
    "--head",
    type=click.IntRange(2, 4096),
    default=None,
    metavar="DIM",
    help="With --init: put a new linear projection head of DIM on the starting model's features (for an OpenCLIP "
    "encoder the head maps text too, so text queries still work).",
)
@click.option(
    "--temperature",
    type=click.FloatRange(0.01, 10),
    default=0.1,
    show_default=True,
    help="Self-supervised: NT-Xent softmax temperature.",
)
@click.option(
    "--grayscale-views",
    "grayscale",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Self-supervised: chance that a view loses its colour (lower lets the encoder lean on colour and miss "
    "grayscale copies).",
)
@click.option(
    "--views",
    type=click.Choice(["classic", "wide"]),
    default="classic",
    show_default=True,
    help="Self-supervised: the edits of a training view. classic: crops, flips, turns, borders up to 25%, colour, "
    "text, blur, shrinking, JPEG. wide: those plus what people do to photos beyond them: the photo small on a "
    "canvas, a corner crop, a page or app around it, fading, stickers, a changed aspect ratio, pixelation, a "
    "perspective warp.",
)
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=2000,
    show_default=True,
    help="Optimizer steps (an upper bound when --time-budget is given).",
)
@click.option(
    "--time-budget",
    "time_budget_s",
    type=_DURATION,
    default=None,
    help="Stop after this long, e.g. 80m; the learning-rate schedule follows the clock.",
)
@click.option(
    "--classes-per-batch", type=click.IntRange(2), default=60, show_default=True, help="P: classes per batch."
)
@click.option(
    "--per-class", type=click.IntRange(2), default=6, show_default=True, help="K: images per class per batch."
)
@click.option(
    "--shot",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Episodic loss: support images per class (the rest are queries).",
)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Peak learning rate (AdamW, cosine schedule).")
@click.option(
    "--rotations",
    is_flag=True,
    help="Add 90/180/270-degree rotations of each class as new classes (usual on Omniglot).",
)
@click.option(
    "--jitter",
    type=click.FloatRange(0, 3),
    default=1.0,
    show_default=True,
    help="Strength of random affine jitter (0 = off).",
)
@click.option(
    "--elastic",
    type=click.FloatRange(0, 3),
    default=0.0,
    show_default=True,
    help="Strength of a random smooth local warp that bends strokes as handwriting varies "
    "(characters, signatures; 0 = off).",
)
@click.option("--flips", is_flag=True, help="Random horizontal flips.")
@click.option(
    "--color-jitter",
    type=click.FloatRange(0, 2),
    default=0.0,
    show_default=True,
    help="Strength of random brightness/contrast/saturation changes (photos, faces; 0 = off).",
)
@click.option(
    "--ema",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="Validate and keep an exponential moving average of the weights with this decay (e.g. 0.98: about "
    "the last 50 steps) instead of the last step's weights. 0 = off.",
)
@click.option(
    "--crop",
    type=click.FloatRange(0.1, 1.0),
    default=1.0,
    show_default=True,
    help="Keep this centred share of each side before resizing (0.5 on LFW's 250x250 portraits keeps the face).",
)
@click.option(
    "--autocontrast/--no-autocontrast",
    default=False,
    show_default=True,
    help="Stretch each image's contrast to the full range inside the encoder, so thin or faint pen lines "
    "(grey once shrunk) look like any other stroke; kept in the model's preprocessing.",
)
@click.option(
    "--fit-ink/--no-fit-ink",
    default=False,
    show_default=True,
    help="Drawings (one channel): frame each image by the square around its strokes before resizing, so a "
    "character drawn small, large or off-centre fills the input alike; the ink is dark unless --no-invert. "
    "Kept in the model's preprocessing.",
)
@click.option(
    "--face/--no-face",
    default=False,
    show_default=True,
    help="Photos of people: find the largest face in each image (OpenCV's Haar cascades), level it by its eyes "
    "and cut out a square 1.1 times the detector's box before resizing, so any framing (a portrait, a tight crop, "
    "a group photo) gives the encoder the same view; images without a face are skipped. Replaces --crop; kept in "
    "the model's preprocessing.",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 0.9),
    default=0.15,
    show_default=True,
    help="Share of groups (alphabets) held out for validation; 0 = none.",
)
@click.option(
    "--val-fold",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Which block of --val-fraction of the (seeded, shuffled) groups to hold out: folds 0, 1, ... are "
    "disjoint, so running one command with each fold cross-validates a recipe on few classes (45 signature "
    "writers make folds 0 to 5 at 0.15). The held-out classes are recorded in model.json.",
)
@click.option(
    "--val-every",
    type=click.IntRange(1),
    default=250,
    show_default=True,
    help="Validate (and keep the best checkpoint) every N steps.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for sampling, augmentation and initialization."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an interrupted run (labelled or --self-supervised) from the state saved in --out at its last "
    "validation; the architecture comes from there, the other options must be the run's own.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the trained encoder (or unfinished run) already in --out; without it an occupied --out is "
    "refused, since indexes built with the old encoder stop answering once it is replaced.",
)
@click.option(
    "--init",
    "init_model",
    default=None,
    metavar="MODEL",
    help="Fine-tune: start from the weights of a built-in encoder (e.g. photos) or a checkpoint folder. Its "
    "architecture is kept, so --arch, --channels, --widths, --embedding-dim and --pool must not be given; so is its "
    "preprocessing, except what --size, --invert/--no-invert, --crop, --autocontrast/--no-autocontrast, "
    "--fit-ink/--no-fit-ink or --face/--no-face say "
    "(networks that average their last map take any input size; --pool flatten ones keep theirs).",
)
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
        _echo_json(result.to_dict())
        return
    best = f"{result.best_val_accuracy:.4f}" if result.best_val_accuracy is not None else "n/a"
    click.echo(
        f"trained {result.steps} steps in {result.elapsed_s:.0f}s ({result.step_s:.3f}s a step); best "
        f"{result.val_measure} {best}; checkpoint in {result.out_dir}"
    )


@cli.command("evaluate")
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--model",
    default=None,
    help="Encoder: built-in name or checkpoint folder (default: the shipped one), or 'raw-pixels'.",
)
@click.option("--way", type=click.IntRange(2), default=20, show_default=True)
@click.option("--shot", type=click.IntRange(1), default=1, show_default=True)
@click.option("--episodes", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--table", is_flag=True, help="Report 5- and 20-way, 1- and 5-shot in one table (ignores --way/--shot).")
@click.option(
    "--pairs",
    type=click.IntRange(0),
    default=3000,
    show_default=True,
    help="Same/different pairs of each kind for verification AUC/EER (0 = skip).",
)
@click.option(
    "--classes",
    default=None,
    metavar="GLOB",
    help="Only classes whose name matches, e.g. '[K-Z]*' (LFW people K to Z) or 'test/*'. "
    "With --signatures the default is 'test/*'.",
)
@click.option(
    "--signatures",
    is_flag=True,
    help="Signature verification with skilled forgeries (classes genuine/<writer>, forgery/<writer>): per writer, "
    "--refs genuine references against the writer's other genuine signatures and its forgeries; the threshold "
    "is chosen at the EER on the --fit-classes writers and applied to the measured ones.",
)
@click.option(
    "--refs", type=_INT_LIST, default="1,5", show_default=True, help="With --signatures: reference counts to measure."
)
@click.option(
    "--fit-classes",
    default=None,
    metavar="GLOB",
    help="Classes the verification threshold is chosen on (the best-accuracy threshold over their pairs), e.g. "
    "'[A-J]*' (LFW's training people); accuracy is then reported on the measured classes at that threshold. "
    "With --signatures the default is 'train/*' (its EER threshold). 'held-out': the classes of DATA that "
    "--model's training run held out for validation (recorded in its model.json): classes it never trained on, "
    "like the measured ones.",
)
@click.option(
    "--compare",
    multiple=True,
    metavar="MODEL",
    help="Also measure this encoder (or 'raw-pixels'; with --copy-detection also 'phash', 'dhash' or 'pdq') in the "
    "same run; repeatable.",
)
@click.option(
    "--copy-detection",
    is_flag=True,
    help="Reverse image search: DATA (every image in it) is the gallery; edited copies of --queries of its images "
    "(each --edits type, seeded) are searched for their original. Reports recall@1, recall@10 and mAP per edit.",
)
@click.option(
    "--queries",
    "n_originals",
    type=click.IntRange(1),
    default=300,
    show_default=True,
    help="With --copy-detection: originals that get edited copies (the other images are distractors).",
)
@click.option(
    "--edits",
    default="all",
    show_default=True,
    help="With --copy-detection: comma-separated edit types: ours (crop, resize, jpeg, rotate, flip, color, "
    "grayscale, blur, text, border, combined; 'all'), and AugLy's image augmentations written to its specification "
    "('augly': screenshot, meme, pad_canvas, crop_corner, perspective, emoji, overlay_text, pixelize, aspect_ratio, "
    "opacity), at strengths beyond what the encoders trained on.",
)
@click.option(
    "--reframe",
    type=click.Choice(["pad", "shift", "scale", "tight", "mixed"]),
    default=None,
    help="Few-shot and verification: re-frame every measured image first (seeded): pad = on a plain canvas twice "
    "its size, shift = moved 15-30% of each side, scale = 0.5-2x its size, tight = the middle 50-60% of each side, "
    "mixed = one of them at random. How much an encoder depends on the framing it trained on.",
)
@click.option(
    "--open-set",
    is_flag=True,
    help="Open-set 1:N identification: galleries of --sizes classes (--shot images each), each calibrated on "
    "itself as an index is, probed with images of its classes and of classes it lacks; reports nearest-class "
    "accuracy, FNIR at FPIR 1%/10%, and FPIR stated against observed. With --copy-detection each photo is its "
    "own class and the probes are edited copies.",
)
@click.option(
    "--sizes",
    type=_INT_LIST,
    default="20,100,1000",
    show_default=True,
    help="With --open-set: gallery sizes, in classes.",
)
@click.option(
    "--runs",
    type=click.IntRange(1),
    default=100,
    show_default=True,
    help="With --open-set or --lake: galleries a size.",
)
@click.option(
    "--roc",
    "roc_png",
    type=click.Path(path_type=Path),
    default=None,
    help="With --open-set or --lake: draw the DET curves (FNIR against FPIR, one per gallery size) into this PNG.",
)
@click.option(
    "--lake",
    is_flag=True,
    help="Lake et al.'s within-alphabet 20-way one-shot runs on an Omniglot zip (one drawer's drawings as the "
    "gallery, another's as probes; unknown probes from other alphabets), closed-set and open-set.",
)
@DEVICE
@JSON
def evaluate_cmd(data: Path, model: str | None, compare: tuple[str, ...], as_json: bool, **opts: Any) -> None:
    """Measure an encoder on DATA: N-way K-shot accuracy with a 95% interval, and verification ROC AUC / EER.

    \b
    simsearch evaluate ../shared/data/omniglot/images_evaluation.zip --table --episodes 2000 --seed 0
    simsearch evaluate sigcomp2011-processed.zip --signatures --model signatures --compare raw-pixels
    """
    from simsearch.evaluate.reports import evaluate

    report = evaluate(data, model, compare, progress=not as_json, **opts)
    if as_json:
        _echo_json(report.to_dict())
    else:
        for line in report.lines():
            click.echo(line)
    if opts.get("roc_png") is not None:
        click.echo(f"wrote {opts['roc_png']}", err=True)


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


@cli.command("serve")
@click.option("--index", "index_path", required=True, type=click.Path(path_type=Path), help="Index directory to serve.")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless you say otherwise)."
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option(
    "--max-upload-mb",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0.001),
    help="Largest accepted upload, in MiB (413 above it).",
)
@click.option(
    "--timeout",
    "timeout_s",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds a query may take before it is answered 504 (its work then stops at its next step).",
)
@click.option(
    "--decode-threads",
    default=None,
    type=click.IntRange(1, 256),
    help="Uploads decoded at once (default: the CPU count).",
)
@click.option(
    "--decode-megapixels",
    default=128.0,
    show_default=True,
    type=click.FloatRange(min=1.0),
    help="Megapixels decoded at once across all requests: bounds memory (about 6 bytes a pixel) whatever the load.",
)
@click.option(
    "--token",
    envvar="SIMSEARCH_TOKEN",
    default=None,
    help="Ask every request for this access token (Authorization: Bearer TOKEN; the page: open /?token=TOKEN "
    "once). Also read from SIMSEARCH_TOKEN. Use it whenever the server is reachable beyond this machine.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="What the server logs to stderr: info includes one access-log line per request "
    "(method, path, status, milliseconds).",
)
@click.option(
    "--absolute-paths",
    is_flag=True,
    help="Answer with the server's full paths of gallery images (default: paths relative to the gallery folder).",
)
@click.option(
    "--header-timeout",
    "header_timeout_s",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds a connection has to send its request's headers before it is closed (slow clients).",
)
@click.option(
    "--body-timeout",
    "body_timeout_s",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds an upload may stall between two of its parts before it is answered 408.",
)
@click.option(
    "--max-connections",
    default=256,
    show_default=True,
    type=click.IntRange(1, 65536),
    help="Connections held at once; more are closed on arrival (each holds a file descriptor).",
)
@DEVICE
def serve_cmd(
    index_path: Path,
    host: str,
    port: int,
    max_upload_mb: float,
    timeout_s: float,
    decode_threads: int | None,
    decode_megapixels: float,
    token: str | None,
    log_level: str,
    absolute_paths: bool,
    header_timeout_s: float,
    body_timeout_s: float,
    max_connections: int,
    device: str,
) -> None:
    """Serve an index over HTTP, with a web page at / for drag-and-drop search.

    \b
    POST /search?k=5&offset=0&label=L&under=DIR   multipart field `file`: as `query --json`
    POST /identify      multipart field `file`: as `identify --json`
    GET  /images/ID, /thumbnails/ID   gallery images by catalog id only
    GET  /classes, /health, /stats, /metrics (Prometheus), /docs (OpenAPI, offline)
    Answers give gallery paths relative to the gallery folder. The encoder loads once; queries never
    write to the index or the gallery.
    """
    import logging

    from simsearch import serving
    from simsearch.service import LOOPBACK_NAMES, create_app, is_loopback

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    local = is_loopback(host)
    if token is not None and not token.strip():
        raise click.BadParameter("the access token is empty", param_hint="--token")
    app = create_app(
        index_path,
        device=device,
        max_upload=int(max_upload_mb * 2**20),
        timeout_s=timeout_s,
        allowed_hosts=LOOPBACK_NAMES if local else None,
        decode_pixels=int(decode_megapixels * 1_000_000),
        decode_threads=decode_threads,
        token=token,
        absolute_paths=absolute_paths,
        body_timeout_s=body_timeout_s,
    )
    if not local:
        click.echo(
            f"warning: serving on {host}: anyone who can reach this machine can search the index and fetch every "
            "gallery image"
            + ("" if token else "; no --token is set, so nothing asks who they are (bind 127.0.0.1, or set --token)"),
            err=True,
        )
    try:
        sock = serving.bind(host, port)
    except OSError as err:
        raise click.ClickException(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    bound = sock.getsockname()[1]  # --port 0: the port the system chose, so the printed address works
    shown_host = f"[{host.strip('[]')}]" if ":" in host else host
    click.echo(
        f"serving {index_path} ({len(app.state.searcher.store.vectors):,} images) on http://{shown_host}:{bound}/"
        + (" (access token required)" if token else ""),
        err=True,
    )
    serving.run(app, sock, log_level, header_timeout_s, max_connections)


def _flag_names() -> dict[str, str]:
    """Every option's parameter name -> the flag a user types (its longest spelling)."""
    names: dict[str, str] = {}

    def walk(cmd: click.Command) -> None:
        for p in cmd.params:
            if isinstance(p, click.Option) and p.name:
                names.setdefault(p.name, max(p.opts, key=len))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(cli)
    return names


def _flag(field: str) -> str:
    return _flag_names().get(field, "--" + field.replace("_", "-"))


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point: runs the click group and turns errors into one line and an exit code:
    1 bad input or data (2 for verify, whose 1 means "different"), 2 usage, 130 interrupted."""
    from simsearch.errors import ConfigError, SimSearchError

    state: dict[str, Any] = {"error_exit": 1}
    try:
        rv = cli.main(args=argv, prog_name="simsearch", standalone_mode=False, obj=state)
        sys.exit(rv if isinstance(rv, int) else 0)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.UsageError as e:  # one line, as every error: what is wrong and where help is
        where = f"{e.ctx.command_path} --help" if e.ctx is not None else "simsearch --help"
        click.echo(f"Error: {_one_line(e.format_message())} (see '{where}')", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"Error: {_one_line(e.format_message())}", err=True)
        sys.exit(e.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("\nInterrupted: nothing was changed.", err=True)
        sys.exit(130)
    except ConfigError as e:  # settings that do not go together: a usage error, in flags
        click.echo(f"Error: {_one_line(e.render(_flag))}", err=True)
        sys.exit(2)
    except SimSearchError as e:
        click.echo(f"Error: {_one_line(str(e))}", err=True)
        sys.exit(state["error_exit"])
    except ValueError as e:  # configuration values validated in dataclasses
        click.echo(f"Error: {_one_line(str(e))}", err=True)
        sys.exit(2)
    except OSError as e:
        click.echo(_one_line(f"Error: {e.strerror or e}: {e.filename or ''}".rstrip(": ")), err=True)
        sys.exit(state["error_exit"])
    except Exception as e:
        import sqlite3

        if isinstance(e, sqlite3.DatabaseError):  # a damaged page met while reading the catalog
            click.echo(f"Error: the index catalog is damaged ({_one_line(str(e))}); rebuild with --overwrite", err=True)
            sys.exit(state["error_exit"])
        if "simsearch.engine" in sys.modules:  # an index's own errors (missing, locked, corrupt) come through it
            from simsearch.engine import IndexStoreError

            if isinstance(e, IndexStoreError):
                click.echo(f"Error: {_one_line(str(e))}", err=True)
                sys.exit(state["error_exit"])
        raise


if __name__ == "__main__":
    main()
