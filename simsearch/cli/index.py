"""`simsearch index ...`: build, add, remove, info, export, import, check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from simsearch.cli.common import (
    DEVICE,
    INDEX,
    JSON,
    QUIET,
    echo_json,
    one_line,
    print_skipped,
)
from simsearch.cli.declared import options_from
from simsearch.cli.root import cli
from simsearch.config.build import BuildOptions


@cli.group("index")
def index_group() -> None:
    """Build, sync and inspect index directories."""


@index_group.command("build")
@click.argument("folder", type=click.Path(path_type=Path))
@INDEX
@options_from(BuildOptions)
@DEVICE
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
        print_skipped(err.skipped)
        raise
    print_report(report, as_json)


def print_report(report: Any, as_json: bool) -> None:
    """A BuildReport as JSON, or as the skipped list (stderr) and the "N indexed, M skipped" summary."""
    if as_json:
        echo_json(report.to_dict())
        return
    print_skipped(report.skipped)
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

    print_report(add_files(index_path, list(images), progress=not (quiet or as_json), **opts), as_json)


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
        echo_json({"removed": removed, "unmatched": unmatched})
    else:
        click.echo(f"{removed:,} removed from {index_path}")
        for t in unmatched:
            click.echo(f"Error: {one_line(t)}: not in the index", err=True)
    return 1 if unmatched else 0


@index_group.command("info")
@INDEX
@JSON
def index_info(index_path: Path, as_json: bool) -> None:
    """Counts, classes, encoder, index kind, size on disk and threshold of an index."""
    from simsearch.engine import index_info

    info = index_info(index_path)
    if as_json:
        echo_json(info)
        return
    for k, v in info.items():
        if k == "class_sizes":
            shown = ", ".join(f"{one_line(str(c))} {n}" for c, n in list(v.items())[:50])
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
        echo_json(summary)
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
        echo_json({"index": str(index_path), "count": count})
    else:
        click.echo(f"imported {count:,} embeddings into {index_path}")


@index_group.command("check")
@INDEX
def index_check(index_path: Path) -> int:
    """Check that catalog, vectors and manifest agree (exit 1 if not)."""
    from simsearch.engine import check_index

    report = check_index(index_path)
    if report.ok:
        click.echo(f"ok: {report.count:,} images, catalog and vectors agree")
        return 0
    for p in report.problems:
        click.echo(f"problem: {p}", err=True)
    return 1
