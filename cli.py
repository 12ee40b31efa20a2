"""The `simsearch` command: click commands that parse, call one library function, and print."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from index.errors import IndexStoreError
from simsearch.errors import SimSearchError

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
MODEL_FOR_INDEX = click.option(
    "--model",
    default=None,
    help="Encoder to check against the index (a built-in name or checkpoint folder). By default the index's own encoder is used; a different one is refused.",
)


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


def _parse_duration(text: str | None) -> float | None:
    """'90' / '90s' / '80m' / '1.5h' -> seconds."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration like 300, 300s, 80m or 1.5h", param_hint="--time-budget")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="simsearch")
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
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@JSON
def index_build(
    folder: Path,
    index_path: Path,
    model: str | None,
    device: str,
    batch_size: int,
    strict: bool,
    overwrite: bool,
    kind: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Embed every image under FOLDER into the index (labels = first-level subfolders).

    Run again on the same index, it syncs: new and changed files are embedded, deleted ones
    removed, moved ones re-pathed. Unreadable files are skipped with their reason and listed at
    the end. The index is replaced in one atomic step: interrupting a build loses nothing.
    """
    from simsearch.engine import StrictModeError, build_index

    try:
        report = build_index(
            folder,
            index_path,
            model=model,
            device=device,
            batch_size=batch_size,
            strict=strict,
            overwrite=overwrite,
            progress=not (quiet or as_json),
            kind=kind,
        )
    except StrictModeError as err:
        for s in err.skipped:
            click.echo(f"skipped: {s.path}: {s.reason}", err=True)
        raise
    _print_report(report, as_json)


def _print_report(report: Any, as_json: bool) -> None:
    """A BuildReport as JSON, or as the skipped list (stderr) and the "N indexed, M skipped" summary."""
    if as_json:
        _echo_json(report.to_dict())
        return
    for s in report.skipped:
        click.echo(f"skipped: {s.path}: {s.reason}", err=True)
    parts = [f"{report.indexed:,} indexed", f"{len(report.skipped):,} skipped"]
    if not report.created:
        parts += [f"{report.unchanged:,} unchanged", f"{report.moved:,} moved", f"{report.removed:,} removed"]
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
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@JSON
def index_add(
    images: tuple[str, ...], index_path: Path, label: str | None, device: str, strict: bool, quiet: bool, as_json: bool
) -> None:
    """Add image files or folders to an existing index (with the index's own encoder)."""
    from simsearch.engine import add_files

    _print_report(
        add_files(index_path, list(images), label=label, device=device, strict=strict, progress=not (quiet or as_json)),
        as_json,
    )


@index_group.command("remove")
@click.argument("targets", nargs=-1, required=True)
@INDEX
@JSON
def index_remove(targets: tuple[str, ...], index_path: Path, as_json: bool) -> None:
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
            click.echo(f"Error: {t}: not in the index", err=True)
    if unmatched:
        sys.exit(1)


@index_group.command("info")
@INDEX
@JSON
def index_info(index_path: Path, as_json: bool) -> None:
    """Counts, classes, encoder, index kind, size on disk and threshold of an index."""
    from simsearch.engine import open_index

    with open_index(index_path) as store:
        m = store.manifest
        labels = store.catalog.labels()
        info = {
            "index": str(index_path),
            "count": m.count,
            "classes": len([k for k in labels if k is not None]),
            "unlabelled": labels.get(None, 0),
            "dim": m.dim,
            "metric": m.metric.value,
            "kind": m.kind.value,
            "encoder": m.encoder.get("source"),
            "fingerprint": m.encoder.get("fingerprint"),
            "threshold": m.threshold,
            "size_bytes": store.size_on_disk(),
            "generation": m.generation,
            "updated": m.updated,
        }
    if as_json:
        _echo_json(info)
    else:
        for k, v in info.items():
            click.echo(f"{k:12s} {v}")


@index_group.command("check")
@INDEX
def index_check(index_path: Path) -> None:
    """Check that catalog, vectors and manifest agree (exit 1 if not)."""
    from simsearch.engine import open_index

    with open_index(index_path) as store:
        report = store.check()
    if report.ok:
        click.echo(f"ok: {report.count:,} images, catalog and vectors agree")
        return
    for p in report.problems:
        click.echo(f"problem: {p}", err=True)
    sys.exit(1)


# ---------------------------------------------------------------- query / identify / verify
def _queries(images: tuple[str, ...]) -> tuple[list[str], list[tuple[str, str]]]:
    from simsearch.engine import expand_queries

    paths, failed = expand_queries(list(images))
    if not paths and not failed:
        raise click.UsageError("no query images found in the given paths")
    return paths, failed


def _report_failed(failed: list[tuple[str, str]], as_json: bool) -> None:
    for path, reason in failed:
        if as_json:
            _echo_json({"query": path, "error": reason})
        click.echo(f"Error: cannot read query {path}: {reason}", err=True)


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
    help="Draw a contact sheet PNG: one row per query (first 50). Frames are green/red when the query's folder name is a gallery class.",
)


@cli.command("query")
@click.argument("images", nargs=-1, required=True)
@INDEX
@click.option(
    "-k",
    "k",
    default=5,
    show_default=True,
    type=click.IntRange(1, 10000),
    help="How many nearest gallery images to list.",
)
@MODEL_FOR_INDEX
@DEVICE
@OUT
@MONTAGE
@JSON
def query_cmd(
    images: tuple[str, ...],
    index_path: Path,
    k: int,
    model: str | None,
    device: str,
    out: Path | None,
    montage: Path | None,
    as_json: bool,
) -> None:
    """Find the gallery images most similar to each query image (files or folders), best first.

    Scores are cosine similarities in [-1, 1]. Exit 1 if any query image could not be read.
    """
    from simsearch.engine import Searcher
    from simsearch.pictures import query_sheet
    from simsearch.results import write_rows

    paths, failed = _queries(images)
    with Searcher(index_path, model=model, device=device) as searcher:
        vecs, unreadable = searcher.embed_paths(paths)
        failed += unreadable
        bad = {p for p, _ in unreadable}
        results = searcher.search_vectors(vecs, [p for p in paths if p not in bad], k)
        classes = {c for c in searcher.store.catalog.labels() if c is not None}
    for res in results:
        if as_json:
            _echo_json(res.to_dict())
            continue
        click.echo(f"query: {res.query}")
        for h in res.results:
            click.echo(f"  {h.rank:3d}  {h.score:+.4f}  {h.label or '-':20s}  {h.path}")
    if out is not None:
        click.echo(f"wrote {write_rows([r.to_dict() for r in results], out, flatten='results')}", err=True)
    if montage is not None and results:
        click.echo(f"wrote {query_sheet(results, montage, classes)}", err=True)
    _report_failed(failed, as_json)
    if failed:
        sys.exit(1)


@cli.command("identify")
@click.argument("images", nargs=-1, required=True)
@INDEX
@click.option(
    "--threshold",
    type=click.FloatRange(-1.0, 1.0),
    default=None,
    help="Cosine score below which the answer is \"unknown\". Default: the index's calibrated threshold, else the encoder's.",
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
    model: str | None,
    device: str,
    out: Path | None,
    montage: Path | None,
    as_json: bool,
) -> None:
    """Say which gallery class (first-level subfolder) each image shows, or "unknown".

    Classes are scored as wholes: the best match in the class decides, the mean of its best
    three and the margin over the runner-up class are reported with it.
    """
    from simsearch.engine import Searcher
    from simsearch.pictures import identify_sheet
    from simsearch.results import write_rows

    paths, failed = _queries(images)
    with Searcher(index_path, model=model, device=device) as searcher:
        vecs, unreadable = searcher.embed_paths(paths)
        failed += unreadable
        bad = {p for p, _ in unreadable}
        results = searcher.identify_vectors(vecs, [p for p in paths if p not in bad], threshold)
        classes = {c for c in searcher.store.catalog.labels() if c is not None}
    for r in results:
        if as_json:
            _echo_json(r.to_dict())
        elif r.known:
            click.echo(
                f"{r.query}: {r.label}  (score {r.score:+.4f}, margin {r.margin:.4f} over {r.runner_up or '-'}; match {r.match})"
            )
        else:
            click.echo(
                f"{r.query}: unknown  (closest {r.label or '-'} at {r.score:+.4f} < threshold {r.threshold:.4f})"
            )
    if out is not None:
        click.echo(f"wrote {write_rows([r.to_dict() for r in results], out)}", err=True)
    if montage is not None and results:
        click.echo(f"wrote {identify_sheet(results, montage, classes)}", err=True)
    _report_failed(failed, as_json)
    if failed:
        sys.exit(1)


@cli.command("verify")
@click.argument("a")
@click.argument("b")
@click.option(
    "--index",
    "index_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Use this index's encoder and calibrated threshold.",
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
def verify_cmd(
    a: str, b: str, index_path: Path | None, model: str | None, threshold: float | None, device: str, as_json: bool
) -> None:
    """Are images A and B the same (person, character, signature, object)?

    Exit code 0 = same, 1 = different, 2 or more = error, for scripts.
    """
    from simsearch.verification import verify

    try:
        v = verify(a, b, index=str(index_path) if index_path else None, model=model, threshold=threshold, device=device)
    except (SimSearchError, IndexStoreError) as err:
        click.echo(f"Error: {err}", err=True)
        sys.exit(2)
    if as_json:
        _echo_json(v.to_dict())
    else:
        click.echo(
            f"{'same' if v.same else 'different'}  (score {v.score:+.4f}, threshold {v.threshold:.4f}, encoder {v.encoder})"
        )
    sys.exit(0 if v.same else 1)


@cli.command("calibrate")
@click.argument("labelled", type=click.Path(path_type=Path))
@INDEX
@click.option(
    "--far",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=0.01,
    show_default=True,
    help="False-accept rate the threshold should allow.",
)
@click.option("--roc", type=click.Path(path_type=Path), default=None, help="Write the ROC curve as a PNG here.")
@click.option("--dry-run", is_flag=True, help="Measure and report, but do not save the threshold into the index.")
@DEVICE
@JSON
def calibrate_cmd(
    labelled: Path, index_path: Path, far: float, roc: Path | None, dry_run: bool, device: str, as_json: bool
) -> None:
    """Measure genuine and impostor scores on LABELLED (a folder-per-class set, ideally not the
    gallery itself) and save the threshold at the requested false-accept rate into the index;
    identify and verify then use it by default."""
    from simsearch.verification import calibrate

    c = calibrate(labelled, index_path, far=far, roc_png=roc, device=device, save=not dry_run, progress=not as_json)
    if as_json:
        _echo_json(c.to_dict())
        return
    for s in c.skipped:
        click.echo(f"skipped: {s.path}: {s.reason}", err=True)
    click.echo(
        f"{c.images:,} images, {c.classes:,} classes: {c.genuine_pairs:,} genuine and {c.impostor_pairs:,} impostor pairs"
    )
    click.echo(f"ROC AUC {c.auc:.4f}; EER {c.eer:.4f} at threshold {c.eer_threshold:.4f}")
    click.echo(f"threshold {c.threshold:.4f} at FAR {c.far:g} accepts {100 * c.tar_at_threshold:.1f}% of genuine pairs")
    click.echo(
        ("not saved (--dry-run)" if dry_run else f"saved into {index_path}")
        + (f"; ROC curve: {c.roc_png}" if c.roc_png else "")
    )


@cli.command("duplicates")
@INDEX
@click.option(
    "--threshold",
    type=click.FloatRange(-1.0, 1.0),
    required=True,
    help="Cosine score at or above which two images count as near-duplicates.",
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the groups to .jsonl or .csv.")
@click.option(
    "--montage-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Write one contact sheet PNG per group into this folder.",
)
@JSON
def duplicates_cmd(
    index_path: Path, threshold: float, out: Path | None, montage_dir: Path | None, as_json: bool
) -> None:
    """Groups of near-duplicate gallery images: connected components of "score >= threshold"."""
    from simsearch.duplicates import find_duplicates
    from simsearch.pictures import Tile, contact_sheet
    from simsearch.results import write_rows

    groups = find_duplicates(index_path, threshold)
    rows = [
        {
            "group": g,
            "size": len(members),
            "members": [{"id": r.id, "path": r.path, "label": r.label, "best_score": round(s, 6)} for r, s in members],
        }
        for g, members in enumerate(groups, 1)
    ]
    if as_json:
        for row in rows:
            _echo_json(row)
    else:
        for row, members in zip(rows, groups, strict=True):
            click.echo(f"group {row['group']} ({len(members)} images)")
            for r, score in members:
                click.echo(f"  {score:+.4f}  {r.path}")
        click.echo(f"{len(groups)} group(s) at threshold {threshold}")
    if out is not None:
        click.echo(f"wrote {write_rows(rows, out, flatten='members')}", err=True)
    if montage_dir is not None:
        for row, members in zip(rows, groups, strict=True):
            contact_sheet(
                [[Tile(r.path, f"{s:+.3f}", r.label or "") for r, s in members[:12]]],
                montage_dir / f"group-{row['group']:04d}.png",
            )


# ---------------------------------------------------------------- models / train / evaluate
@cli.command("models")
@JSON
def models_cmd(as_json: bool) -> None:
    """List the built-in encoders."""
    from simsearch.checkpoint import DEFAULT_MODEL, builtin_models

    rows = []
    for name, folder in builtin_models().items():
        meta = json.loads((folder / "model.json").read_text())
        cfg = meta["config"]
        rows.append(
            {
                "name": name,
                "default": name == DEFAULT_MODEL,
                "arch": cfg["arch"],
                "input": f"{cfg['preprocess']['channels']}x{cfg['preprocess']['size']}x{cfg['preprocess']['size']}",
                "dim": cfg["embedding_dim"],
                "parameters": meta.get("parameters"),
                "fingerprint": meta["fingerprint"][:12],
                "description": meta.get("description", ""),
            }
        )
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        click.echo(
            f"{r['name']:12s} {'(default) ' if r['default'] else ''}{r['arch']} {r['input']} -> {r['dim']}-d, {r['parameters']:,} params, {r['fingerprint']}  {r['description']}"
        )


@cli.command("train")
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
    "class_glob",
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
@click.option("--widths", default="64,96,128,256", show_default=True, help="Channels per stage, comma-separated.")
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
    help="Self-supervised: images per step (each gives two views).",
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
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Self-supervised: chance that a view loses its colour (lower lets the encoder lean on colour and miss "
    "grayscale copies).",
)
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=2000,
    show_default=True,
    help="Optimizer steps (an upper bound when --time-budget is given).",
)
@click.option(
    "--time-budget", default=None, help="Stop after this long, e.g. 80m; the learning-rate schedule follows the clock."
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
    "--init",
    "init_model",
    default=None,
    metavar="MODEL",
    help="Fine-tune: start from the weights of a built-in encoder (e.g. photos) or a checkpoint folder. Its "
    "architecture is kept, so --arch, --channels, --widths, --embedding-dim and --pool must not be given; so is its "
    "preprocessing, except what --size, --invert/--no-invert, --crop, --autocontrast/--no-autocontrast or "
    "--fit-ink/--no-fit-ink say "
    "(networks that average their last map take any input size; --pool flatten ones keep theirs).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@DEVICE
@JSON
@click.pass_context
def train_cmd(
    ctx: click.Context,
    data: Path,
    out: Path,
    loss: str,
    margin: float | None,
    mining: str,
    class_glob: str | None,
    group_batches: bool,
    arch: str,
    channels: str,
    size: int,
    widths: str,
    embedding_dim: int | None,
    pool: str,
    invert: bool | None,
    self_supervised: bool,
    batch: int,
    temperature: float,
    grayscale_views: float,
    steps: int,
    time_budget: str | None,
    classes_per_batch: int,
    per_class: int,
    shot: int,
    lr: float,
    rotations: bool,
    jitter: float,
    elastic: float,
    flips: bool,
    color_jitter: float,
    ema: float,
    crop: float,
    autocontrast: bool,
    fit_ink: bool,
    val_fraction: float,
    val_fold: int,
    val_every: int,
    seed: int,
    resume: bool,
    init_model: str | None,
    quiet: bool,
    device: str,
    as_json: bool,
) -> None:
    """Train a Siamese encoder on DATA: a folder-per-class tree or a zip of one (Omniglot's zips work as they are).

    Classes are the folders holding the images; whole top-level groups (alphabets) are held out
    for validation, and the checkpoint with the best validation accuracy is kept (N-way K-shot;
    for signature data laid out as genuine/<writer> and forgery/<writer>: one-reference
    verification against the held-out writers' forgeries, 1 - EER). With --self-supervised DATA
    is any folder of images, no labels (see that option); with --init MODEL training starts from
    an existing encoder (fine-tuning).
    """
    from simsearch.datasets import load_labelled
    from simsearch.encoder import Arch, EncoderConfig, Pool, Preprocess
    from simsearch.losses import Loss, Mining
    from simsearch.train import TrainConfig, train

    try:
        width_list = tuple(int(w) for w in widths.split(","))
    except ValueError:
        raise click.BadParameter("widths must be comma-separated integers", param_hint="--widths") from None
    ch = int(channels)
    mean, std = ((0.0,), (1.0,)) if ch == 1 else ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    enc = EncoderConfig(
        arch=Arch.parse(arch),
        preprocess=Preprocess(
            channels=ch,
            size=size,
            invert=(ch == 1) if invert is None else invert,
            mean=mean,
            std=std,
            crop=crop,
            autocontrast=autocontrast,
            fit_ink=fit_ink,
        ),
        widths=width_list,
        embedding_dim=embedding_dim or 1,
        pool=Pool.parse(pool),
    )
    if embedding_dim is None:  # no head: the pooled features are the embedding
        enc = dataclasses.replace(enc, embedding_dim=enc.feature_dim)
    # options one kind of run uses and the other would silently ignore
    labelled_only = "loss margin mining group_batches classes_per_batch per_class shot rotations jitter elastic flips"
    labelled_only += " color_jitter ema val_fold"
    unlabelled_only = "batch temperature grayscale_views"
    stray = _given(ctx, (labelled_only if self_supervised else unlabelled_only).split())
    if stray:
        kind = "labelled training (without --self-supervised)" if self_supervised else "--self-supervised training"
        raise click.UsageError(f"{_flags(stray)}: only for {kind}")
    init = None
    weight_shape = ("arch", "channels", "widths", "embedding_dim", "pool")
    input_opts = ("size", "invert", "crop", "autocontrast", "fit_ink")
    given = _given(ctx, weight_shape + input_opts)
    source = str(data) if class_glob is None else f"{data} (classes {class_glob})"
    if init_model is not None:
        from simsearch.checkpoint import load_checkpoint

        refused = [n for n in given if n in weight_shape]
        if refused:
            raise click.UsageError(f"--init keeps the starting model's architecture; drop {_flags(refused)}")
        if resume:
            raise click.UsageError("--init starts a new run; --resume continues one: give one of them")
        loaded = load_checkpoint(init_model)
        init = loaded.encoder.state_dict()
        # the weights fix the architecture; the input options given here replace the starting model's
        pre = dataclasses.replace(
            loaded.config.preprocess, **{n: getattr(enc.preprocess, n) for n in given if n in input_opts}
        )
        enc = dataclasses.replace(loaded.config, preprocess=pre)
        if enc.feature_dim != loaded.config.feature_dim:
            raise click.UsageError(
                f"{init_model} flattens its last {loaded.config.preprocess.size}-pixel map, so it cannot take "
                f"--size {enc.preprocess.size}; keep its size {loaded.config.preprocess.size}"
            )
        source += f", fine-tuned from {init_model}"
    elif resume and (out / "model.json").exists():
        # the interrupted run's checkpoint knows its architecture: no need to repeat the options
        from simsearch.checkpoint import load_checkpoint

        saved = load_checkpoint(str(out))
        if given and saved.config != enc:
            raise click.UsageError(
                f"--resume continues the run in {out} with its own architecture and preprocessing; drop {_flags(given)}"
            )
        enc = saved.config
        source = str(saved.meta.get("training", {}).get("data", source))
    if self_supervised:
        _train_self_supervised(
            data,
            out,
            enc,
            class_glob,
            batch,
            temperature,
            grayscale_views,
            steps,
            time_budget,
            lr,
            val_fraction,
            val_every,
            seed,
            resume,
            quiet,
            device,
            as_json,
            source,
            init,
        )
        return
    cfg = TrainConfig(
        loss=Loss.parse(loss),
        classes_per_batch=classes_per_batch,
        group_batches=group_batches,
        per_class=per_class,
        shot=shot,
        margin=margin,
        mining=Mining.parse(mining),
        steps=steps,
        time_budget_s=_parse_duration(time_budget),
        lr=lr,
        rotations=rotations,
        jitter=jitter,
        elastic=elastic,
        flips=flips,
        color_jitter=color_jitter,
        ema=ema,
        val_fraction=val_fraction,
        val_fold=val_fold,
        val_every=val_every,
        seed=seed,
        device=device,
    )
    pre = enc.preprocess  # the input the encoder will see, from the options, --init or the resumed run
    labelled = load_labelled(
        data, pre.channels, pre.size, progress=not (quiet or as_json), classes=class_glob, crop=pre.crop, ink=pre.ink
    )
    result = train(labelled, enc, cfg, out, resume=resume, progress=not (quiet or as_json), source=source, init=init)
    _report_training(result, as_json)


def _given(ctx: click.Context, names: Sequence[str]) -> list[str]:
    """The parameters among `names` that the command line set (not left at their defaults)."""
    return [n for n in names if ctx.get_parameter_source(n) is not click.core.ParameterSource.DEFAULT]


def _flags(names: Sequence[str]) -> str:
    """Parameter names as the options a user types: 'val_fold' -> '--val-fold'."""
    return ", ".join("--" + n.replace("_", "-") for n in names)


def _train_self_supervised(
    data: Path,
    out: Path,
    enc: Any,
    class_glob: str | None,
    batch: int,
    temperature: float,
    grayscale_views: float,
    steps: int,
    time_budget: str | None,
    lr: float,
    val_fraction: float,
    val_every: int,
    seed: int,
    resume: bool,
    quiet: bool,
    device: str,
    as_json: bool,
    source: str,
    init: Any = None,
) -> None:
    from simsearch.datasets import load_pictures
    from simsearch.selfsup import SelfSupConfig, train_self_supervised

    cfg = SelfSupConfig(
        batch=batch,
        temperature=temperature,
        grayscale=grayscale_views,
        steps=steps,
        time_budget_s=_parse_duration(time_budget),
        lr=lr,
        val_fraction=val_fraction,
        val_every=val_every,
        seed=seed,
        device=device,
    )
    side = max(96, 2 * enc.preprocess.size)
    pictures, _ = load_pictures(data, max_side=side, classes=class_glob, progress=not (quiet or as_json))
    result = train_self_supervised(
        pictures, enc, cfg, out, progress=not (quiet or as_json), source=source, init=init, resume=resume
    )
    _report_training(result, as_json)


def _report_training(result: Any, as_json: bool) -> None:
    summary = {
        "out": str(result.out_dir),
        "fingerprint": result.fingerprint,
        "steps": result.steps,
        "elapsed_s": round(result.elapsed_s, 1),
        "best_val_accuracy": result.best_val_accuracy,
    }
    if as_json:
        _echo_json(summary)
    else:
        best = f"{result.best_val_accuracy:.4f}" if result.best_val_accuracy is not None else "n/a"
        click.echo(
            f"trained {result.steps} steps in {result.elapsed_s:.0f}s; best {result.val_measure} {best}; checkpoint in {result.out_dir}"
        )


RAW_PIXELS = "raw-pixels"
HELD_OUT = "held-out"  # evaluate --fit-classes: the classes the model's training held out


def _fit_classes(value: str, model: str | None, dev: Any) -> str | list[str]:
    """The --fit-classes glob as given, or for 'held-out' the class names --model's training held out."""
    if value != HELD_OUT:
        return value
    from simsearch.checkpoint import DEFAULT_MODEL, load_checkpoint

    if model == RAW_PIXELS:
        raise click.BadParameter(f"{HELD_OUT!r} needs a trained --model, not raw pixels", param_hint="--fit-classes")
    held = load_checkpoint(model, device=dev).meta.get("training", {}).get("held_out_classes")
    if not held:
        raise click.BadParameter(
            f"model {model or DEFAULT_MODEL} does not record the classes its training held out (trained before "
            "simsearch recorded them, or with --val-fraction 0): give a glob",
            param_hint="--fit-classes",
        )
    return [str(c) for c in held]


def _embed_labelled(
    model: str | None, data: Path, classes: str | list[str] | None, dev: Any, progress: bool, like: Any = None
) -> tuple[str, Any, Any]:
    """(model name, LabelledSet, embeddings) of DATA under an encoder, or under raw pixels
    (`raw-pixels`: 32x32 at the channels of `like`, another model's preprocessing)."""
    from simsearch.checkpoint import load_checkpoint
    from simsearch.datasets import load_labelled
    from simsearch.embed import embed_arrays_with
    from simsearch.evaluate import raw_pixel_embeddings

    if model == RAW_PIXELS:
        channels = like.channels if like is not None else 1
        crop, ink = (like.crop, like.ink) if like is not None else (1.0, None)
        labelled = load_labelled(
            data, channels=channels, size=64, progress=progress, classes=classes, crop=crop, ink=ink
        )
        return RAW_PIXELS, labelled, raw_pixel_embeddings(labelled.images, 32)
    loaded = load_checkpoint(model, device=dev)
    pre = loaded.config.preprocess
    labelled = load_labelled(
        data, channels=pre.channels, size=pre.size, progress=progress, classes=classes, crop=pre.crop, ink=pre.ink
    )
    return loaded.source, labelled, embed_arrays_with(loaded.encoder, labelled.images, dev)


@cli.command("evaluate")
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--model",
    default=None,
    help=f"Encoder: built-in name or checkpoint folder (default: the shipped one), or {RAW_PIXELS!r}.",
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
@click.option("--refs", default="1,5", show_default=True, help="With --signatures: reference counts to measure.")
@click.option(
    "--fit-classes",
    default=None,
    metavar="GLOB",
    help="Classes the verification threshold is chosen on (the best-accuracy threshold over their pairs), e.g. "
    "'[A-J]*' (LFW's training people); accuracy is then reported on the measured classes at that threshold. "
    f"With --signatures the default is 'train/*' (its EER threshold). {HELD_OUT!r}: the classes of DATA that "
    "--model's training run held out for validation (recorded in its model.json): classes it never trained on, "
    "like the measured ones.",
)
@click.option(
    "--compare",
    multiple=True,
    metavar="MODEL",
    help=f"Also measure this encoder (or {RAW_PIXELS!r}; with --copy-detection also 'phash' or 'dhash') in the "
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
    help="With --copy-detection: comma-separated edit types (crop, resize, jpeg, rotate, flip, color, grayscale, "
    "blur, text, border, combined).",
)
@DEVICE
@JSON
def evaluate_cmd(
    data: Path,
    model: str | None,
    way: int,
    shot: int,
    episodes: int,
    seed: int,
    table: bool,
    pairs: int,
    classes: str | None,
    signatures: bool,
    refs: str,
    fit_classes: str | None,
    compare: tuple[str, ...],
    copy_detection: bool,
    n_originals: int,
    edits: str,
    device: str,
    as_json: bool,
) -> None:
    """Measure an encoder on DATA: N-way K-shot accuracy with a 95% interval, and verification ROC AUC / EER.

    \b
    simsearch evaluate ../shared/data/omniglot/images_evaluation.zip --table --episodes 2000 --seed 0
    simsearch evaluate sigcomp2011-processed.zip --signatures --model signatures --compare raw-pixels
    """
    from simsearch.checkpoint import load_checkpoint
    from simsearch.device import resolve_device
    from simsearch.evaluate import best_accuracy_threshold, few_shot_accuracy, pair_scores, verification

    dev = resolve_device(device)
    if copy_detection:
        _evaluate_copy_detection(data, model, classes, compare, n_originals, edits, seed, dev, as_json)
        return
    if signatures:
        _evaluate_signatures(
            data, model, classes or "test/*", fit_classes or "train/*", refs, compare, seed, dev, as_json
        )
        return
    fit = None if fit_classes is None else _fit_classes(fit_classes, model, dev)
    rows = []
    like = None if model == RAW_PIXELS else load_checkpoint(model, device=dev).config.preprocess
    for m in (model, *compare):
        name, labelled, emb = _embed_labelled(m, data, classes, dev, progress=not as_json, like=like)
        settings = [(w, s) for w in (5, 20) for s in (1, 5)] if table else [(way, shot)]
        try:
            results = [few_shot_accuracy(emb, labelled.labels, w, s, episodes, seed=seed) for w, s in settings]
        except ValueError as err:
            raise SimSearchError(str(err)) from None
        threshold = None
        if pairs and fit is not None:
            _, fitted, fit_emb = _embed_labelled(m, data, fit, dev, progress=not as_json, like=like)
            threshold = best_accuracy_threshold(*pair_scores(fit_emb, fitted.labels, pairs, seed=seed))
        ver = verification(emb, labelled.labels, n_pairs=pairs, seed=seed, threshold=threshold) if pairs else None
        rows.append((name, labelled, emb, results, ver))
    if as_json:
        objs = []
        for name, labelled, emb, results, ver in rows:
            obj: dict[str, Any] = (
                dict(results[0].to_dict()) if not table else {"results": [r.to_dict() for r in results]}
            )
            obj.update({"model": name, "images": len(emb), "classes": len(labelled.classes)})
            if ver:
                obj["verification"] = ver.to_dict()
            objs.append(obj)
        _echo_json(objs[0] if not compare else {"models": objs})
        return
    for name, labelled, emb, results, ver in rows:
        click.echo(f"{name} on {data}: {len(emb):,} images, {len(labelled.classes):,} classes, seed {seed}")
        for r in results:
            click.echo(
                f"{r.way:3d}-way {r.shot}-shot: {100 * r.accuracy:6.2f}% ± {100 * r.ci95:.2f}  ({r.episodes} episodes)"
            )
        if ver:
            click.echo(
                f"verification: ROC AUC {ver.auc:.4f}, EER {ver.eer:.4f} (threshold {ver.eer_threshold:.4f}), "
                f"{ver.pairs:,} pairs"
            )
            if fit_classes is not None:
                click.echo(
                    f"verification accuracy {ver.accuracy:.4f} at threshold {ver.threshold:.4f} "
                    f"(the best on {fit_classes!r})"
                )


def _evaluate_copy_detection(
    data: Path,
    model: str | None,
    classes: str | None,
    compare: tuple[str, ...],
    n_originals: int,
    edits: str,
    seed: int,
    dev: Any,
    as_json: bool,
) -> None:
    from simsearch.checkpoint import load_checkpoint
    from simsearch.copydetect import (
        HASHES,
        copy_detection_table,
        make_copy_queries,
        ranks_of_truth,
        represent,
    )
    from simsearch.datasets import load_pictures
    from simsearch.edits import EDITS

    edit_names = list(EDITS) if edits.strip() == "all" else [e.strip() for e in edits.split(",") if e.strip()]
    unknown = [e for e in edit_names if e not in EDITS]
    if unknown or not edit_names:
        raise click.BadParameter(
            f"unknown edit {unknown[0] if unknown else edits!r}; known: {', '.join(EDITS)}", param_hint="--edits"
        )
    progress = not as_json
    gallery, _ = load_pictures(data, classes=classes, progress=progress)
    queries = make_copy_queries(gallery, n_originals, edit_names, seed=seed)
    results: list[dict[str, Any]] = []
    for m in (model, *compare):
        method: Any = m if m in (RAW_PIXELS, *HASHES) else load_checkpoint(m, device=dev).encoder
        label = m if isinstance(method, str) else (m or "default")
        g, metric = represent(method, gallery, dev)
        q, _ = represent(method, queries.images, dev)
        ranks = ranks_of_truth(g, q, queries.truth, metric, seed=seed)
        results.append({"model": label, "metric": metric, "rows": copy_detection_table(ranks, queries.edits)})
    if as_json:
        _echo_json(
            {
                "data": str(data),
                "gallery": len(gallery),
                "originals_queried": len(set(queries.truth.tolist())),
                "queries": len(queries.images),
                "seed": seed,
                "results": results,
            }
        )
        return
    click.echo(
        f"copy detection on {data}: gallery {len(gallery):,} images, {len(queries.images):,} edited copies of "
        f"{len(set(queries.truth.tolist())):,} of them, seed {seed}"
    )
    header = f"{'edit':10s}" + "".join(f" {str(r['model'])[:22]:>22s}" for r in results)
    click.echo("recall@1 / recall@10 / mAP")
    click.echo(header)
    for i, row in enumerate(results[0]["rows"]):
        cells = []
        for r in results:
            x = r["rows"][i]
            cells.append(f" {x['recall@1']:.3f} / {x['recall@10']:.3f} / {x['mAP']:.3f}".rjust(23))
        click.echo(f"{row['edit']:10s}" + "".join(cells))


def _evaluate_signatures(
    data: Path,
    model: str | None,
    classes: str,
    fit_classes: str,
    refs: str,
    compare: tuple[str, ...],
    seed: int,
    dev: Any,
    as_json: bool,
) -> None:
    from simsearch.checkpoint import load_checkpoint
    from simsearch.signatures import signature_verification

    try:
        ref_counts = sorted({int(r) for r in refs.split(",") if r.strip()})
    except ValueError:
        raise click.BadParameter(f"not a list of integers: {refs!r}", param_hint="--refs") from None
    if not ref_counts or min(ref_counts) < 1:
        raise click.BadParameter("reference counts must be at least 1", param_hint="--refs")
    fit = _fit_classes(fit_classes, model, dev)
    like = None if model == RAW_PIXELS else load_checkpoint(model, device=dev).config.preprocess
    out: list[dict[str, Any]] = []
    for m in (model, *compare):
        name, fit_set, fit_emb = _embed_labelled(m, data, fit, dev, progress=not as_json, like=like)
        _, test, test_emb = _embed_labelled(m, data, classes, dev, progress=not as_json, like=like)
        for r in ref_counts:
            fitted = signature_verification(fit_emb, fit_set, r, seed=seed)
            res = signature_verification(test_emb, test, r, threshold=fitted.eer_threshold, seed=seed)
            out.append({"model": name, **res.to_dict(), "fit_eer": fitted.eer})
    if as_json:
        _echo_json({"data": str(data), "classes": classes, "fit_classes": fit_classes, "seed": seed, "results": out})
        return
    fit_name = repr(fit) if isinstance(fit, str) else f"the {len(fit)} classes the model's training held out"
    click.echo(
        f"signature verification on {data}: measured on {classes!r}, threshold from {fit_name} (its EER), seed {seed}"
    )
    click.echo(f"{'model':28s} refs  writers  genuine  forgeries   EER     AUC    accuracy  FAR    FRR    threshold")
    for o in out:
        click.echo(
            f"{str(o['model'])[:28]:28s} {o['refs']:4d}  {o['writers']:7d}  {o['genuine']:7d}  {o['forgeries']:9d}  "
            f"{o['eer']:.4f}  {o['auc']:.4f}  {o['accuracy']:.4f}    {o['false_accept']:.3f}  "
            f"{o['false_reject']:.3f}  {o['threshold']:.4f}"
        )


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

    r = run_demo(workdir, data=data, device=device, progress=False)
    click.echo(f"gallery:  {r.gallery} ({r.build.total} images)")
    click.echo(
        f"index:    {r.index}  ({r.build.indexed} indexed, {len(r.build.skipped)} skipped, {r.build.elapsed_s:.1f}s)"
    )
    click.echo(f"\nquery {r.query.query}: top {len(r.query.results)}")
    for h in r.query.results:
        click.echo(f"  {h.rank}  {h.score:+.4f}  {h.label or '-':10s} {h.path}")
    if r.identifications:
        click.echo("\nidentify:")
    from simsearch.demo import GALLERY_CLASSES

    for ident in r.identifications:
        answer = ident.label if ident.known else "unknown"
        stem = Path(ident.query).stem
        verdict = ""
        if data is None and stem.startswith("new_"):  # drawn probes: say what the right answer was
            expected = stem[4:] if stem[4:] in GALLERY_CLASSES else "unknown"
            verdict = "  right" if answer == expected else f"  WRONG (expected {expected})"
        click.echo(
            f"  {ident.query}: {answer}  (best {ident.label} at {ident.score:+.4f}, threshold {ident.threshold:.4f}){verdict}"
        )
    click.echo(
        f"\nTry it yourself:\n  simsearch query {r.query.query} --index {r.index} -k 3\n  simsearch identify {r.workdir / 'queries'} --index {r.index}"
    )


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
    help="Seconds a query may take before it is answered 504.",
)
@DEVICE
def serve_cmd(index_path: Path, host: str, port: int, max_upload_mb: float, timeout_s: float, device: str) -> None:
    """Serve an index over HTTP, with a web page at / for drag-and-drop search.

    \b
    POST /search?k=5    multipart field `file`: the same JSON as `query --json`
    POST /identify      multipart field `file`: the same JSON as `identify --json`
    GET  /images/ID, /thumbnails/ID   gallery images by catalog id only
    GET  /health, /stats, /docs (OpenAPI)
    The encoder loads once; queries never write to the index or the gallery.
    """
    import uvicorn

    from simsearch.service import create_app

    app = create_app(index_path, device=device, max_upload=int(max_upload_mb * 2**20), timeout_s=timeout_s)
    click.echo(
        f"serving {index_path} ({len(app.state.searcher.store.vectors):,} images) on http://{host}:{port}/", err=True
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


def main() -> NoReturn:
    """Entry point: runs the click group and turns library errors into one line and an exit code."""
    try:
        rv = cli.main(standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("\nInterrupted: nothing was changed.", err=True)
        sys.exit(130)
    except (SimSearchError, IndexStoreError) as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
    except ValueError as e:  # configuration values validated in dataclasses
        click.echo(f"Error: {e}", err=True)
        sys.exit(2)
    except OSError as e:
        click.echo(f"Error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
