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
from simsearch.cli.declared import options_from, take
from simsearch.cli.root import cli
from simsearch.config.search import IdentifyOptions, QueryOptions


@cli.command("query")
@click.argument("images", nargs=-1)
@options_from(QueryOptions, only=["texts"])
@INDEX
@options_from(QueryOptions, skip=["texts"])
@EVERY_FACE
@MODEL_FOR_INDEX
@DEVICE
@OUT
@MONTAGE
@JSON
def query_cmd(images: tuple[str, ...], index_path: Path, every_face: bool, **opts: Any) -> int:
    """Find the gallery images most similar to each query image (files or folders), or to each --text,
    best first.

    Scores are cosine similarities in [-1, 1]. --label and --under search a part of the gallery;
    --offset pages on. Exit 1 if any query image could not be read.
    """
    q = take(QueryOptions, opts)
    labels = list(q.labels) or None
    if q.texts:
        if images:
            raise click.UsageError("give query images or --text, not both")
        if every_face or opts.get("montage") is not None:
            raise click.UsageError("--every-face and --montage are for query images, not --text")
        return answer_text(q.texts, index_path, k=q.k, offset=q.offset, labels=labels, under=q.under, **opts)
    if not images:
        raise click.UsageError("give query images (files or folders) or --text")
    return answer(
        images,
        index_path,
        ask="query",
        show=show_hits,
        k=q.k,
        offset=q.offset,
        every_face=every_face,
        labels=labels,
        under=q.under,
        **opts,
    )


@cli.command("identify")
@click.argument("images", nargs=-1, required=True)
@INDEX
@options_from(IdentifyOptions, only=["fpir", "fnir"])
@EVERY_FACE
@options_from(IdentifyOptions, only=["closed_set", "threshold"])
@MODEL_FOR_INDEX
@DEVICE
@OUT
@MONTAGE
@JSON
def identify_cmd(images: tuple[str, ...], index_path: Path, every_face: bool, **opts: Any) -> int:
    """Say which gallery class (first-level subfolder) each image shows, or "unknown".

    Classes are scored as wholes: the best match in the class decides, the mean of its best
    three and the margin over the runner-up class are reported with it. The threshold is fitted
    on this gallery (an index measures itself at every build and sync; `calibrate` measures it
    with labelled probes) for a target FPIR, 1% unless told otherwise; every answer names the
    threshold, its source and the FPIR/FNIR it stands for. Exit 1 if any image could not be read.
    """
    from simsearch.engine import OperatingPoint

    asked = take(IdentifyOptions, opts)
    point = OperatingPoint(threshold=asked.threshold, fpir=asked.fpir, fnir=asked.fnir, closed_set=asked.closed_set)
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
