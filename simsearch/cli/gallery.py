"""`simsearch calibrate` and `duplicates`: measuring a gallery and finding its copies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from simsearch.cli.common import (
    DEVICE,
    INDEX,
    JSON,
    echo_json,
    one_line,
    print_skipped,
)
from simsearch.cli.declared import options_from, take
from simsearch.cli.root import cli
from simsearch.config.gallery import CalibrateOptions, DuplicatesOptions


@cli.command("calibrate")
@click.argument("labelled", type=click.Path(path_type=Path))
@options_from(CalibrateOptions)
@DEVICE
@JSON
def calibrate_cmd(labelled: Path, as_json: bool, **opts: Any) -> None:
    """Measure identify's FPIR and FNIR against the index's gallery, at its real size, with the labelled
    probes in LABELLED (a folder per class; images the gallery does not hold), and save the threshold for
    the target into the index; identify and the service then use it by default.

    \b
    A probe of a gallery class is a known probe, and also an unknown one with its own class left
    out of the gallery; probes of other classes are unknown probes as they are. FPIR: the share of
    unknown probes accepted as some class. FNIR: the share of known probes not given their class.
    """
    asked = take(CalibrateOptions, opts)
    index_path, encoder, dry_run = asked.index_path, asked.encoder, asked.dry_run
    if (index_path is None) == (encoder is None):
        raise click.UsageError("give --index (calibrate a gallery) or --encoder (measure an encoder's prior)")
    if encoder is not None:
        _encoder_prior(encoder, labelled, as_json)
        return
    from simsearch.engine import calibrate

    assert index_path is not None
    c = calibrate(
        labelled,
        index_path,
        fpir=asked.fpir,
        fnir=asked.fnir,
        far=asked.far,
        roc_png=asked.roc_png,
        save=not dry_run,
        progress=not as_json,
        **opts,
    )
    if as_json:
        echo_json(c.to_dict())
        return
    print_skipped(c.skipped)
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


def _encoder_prior(encoder: str, labelled: Path, as_json: bool) -> None:
    from simsearch.encoder_prior import measure_encoder_prior

    prior = measure_encoder_prior(encoder, labelled, progress=not as_json)
    rows = [(s, prior.threshold_at_fpir(s, 0.01)) for s in prior.sizes]
    if as_json:
        echo_json(
            {
                "encoder": encoder,
                "measured_on": prior.measured_on,
                "queries": prior.queries or None,
                "sizes": list(prior.sizes),
                "threshold_at_fpir_0.01": {str(s): None if t is None else round(t.value, 6) for s, t in rows},
            }
        )
        return
    click.echo(f"open-set prior of {encoder} on {prior.described}")
    for s, t in rows:
        click.echo(f"  {s:5d} classes: FPIR 0.01 at {'-' if t is None else f'{t.value:+.4f}'}")
    click.echo(f"recorded in {encoder}'s model.json")


@cli.command("duplicates")
@INDEX
@options_from(DuplicatesOptions)
@JSON
def duplicates_cmd(index_path: Path, as_json: bool, **opts: Any) -> None:
    """Groups of duplicate gallery images: files with identical bytes, then near-duplicates.

    Every member of a group scores at least the threshold against the group's first image (its
    centre), so unrelated images are never chained together through intermediate ones. In each
    group the largest file is marked "keep" and the others "remove"; nothing is deleted.
    """
    from simsearch.engine import duplicate_rows, find_duplicates, index_duplicate_threshold
    from simsearch.files import write_atomic
    from simsearch.pictures import group_sheets
    from simsearch.results import write_rows

    asked = take(DuplicatesOptions, opts)
    threshold, out, remove_list, montage_dir = asked.threshold, asked.out, asked.remove_list, asked.montage_dir
    source = "given"
    if threshold is None:
        threshold, source = index_duplicate_threshold(index_path)
    rows = duplicate_rows(find_duplicates(index_path, threshold))
    for row in rows:
        if as_json:
            echo_json(row)
        else:
            click.echo(f"group {row['group']} ({row['size']} images)")
            for m in row["members"]:
                click.echo(
                    f"  {'keep  ' if m['keep'] else 'remove' if m['remove'] else 'same  '}  {m['score']:+.4f} "
                    f"{m['match']:6s}  {one_line(m['path'])}"
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
