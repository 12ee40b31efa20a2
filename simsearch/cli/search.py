"""`simsearch query`, `identify` and `verify`: asking an index (or an encoder) about images."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from simsearch.cli.answers import (
    EVERY_FACE,
    answer,
    answer_text,
    show_hits,
    show_identification,
)
from simsearch.cli.common import (
    DEVICE,
    INDEX,
    JSON,
    MODEL_FOR_INDEX,
    MONTAGE,
    OUT,
    echo_json,
)
from simsearch.cli.root import cli


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
        return answer_text(texts, index_path, k=k, offset=offset, labels=list(labels) or None, under=under, **opts)
    if not images:
        raise click.UsageError("give query images (files or folders) or --text")
    return answer(
        images,
        index_path,
        ask="query",
        show=show_hits,
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
    return answer(
        images, index_path, ask="identify", show=show_identification, point=point, every_face=every_face, **opts
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
        echo_json(v.to_dict())
    else:
        click.echo(
            f"{'same' if v.same else 'different'}  (score {v.score:+.4f}, threshold {v.threshold:.4f} "
            f"[{v.threshold_source}], encoder {v.encoder})"
        )
    return 0 if v.same else 1
