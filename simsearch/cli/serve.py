"""`simsearch serve`: the HTTP service over one index."""

from __future__ import annotations

import sys
from typing import Any

import click

from simsearch.cli.common import (
    DEVICE,
)
from simsearch.cli.declared import options_from
from simsearch.cli.root import cli
from simsearch.config.serve import ServeOptions


@cli.command("serve")
@options_from(ServeOptions)
@DEVICE
def serve_cmd(device: str, **options: Any) -> None:
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

    o = ServeOptions(**options)

    logging.basicConfig(
        level=o.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    local = is_loopback(o.host)
    if o.token is not None and not o.token.strip():
        raise click.BadParameter("the access token is empty", param_hint="--token")
    app = create_app(
        o.index_path,
        device=device,
        max_upload=int(o.max_upload_mb * 2**20),
        timeout_s=o.timeout_s,
        allowed_hosts=LOOPBACK_NAMES if local else None,
        decode_pixels=int(o.decode_megapixels * 1_000_000),
        decode_threads=o.decode_threads,
        token=o.token,
        absolute_paths=o.absolute_paths,
        body_timeout_s=o.body_timeout_s,
    )
    if not local:
        click.echo(
            f"warning: serving on {o.host}: anyone who can reach this machine can search the index and fetch every "
            "gallery image"
            + ("" if o.token else "; no --token is set, so nothing asks who they are (bind 127.0.0.1, or set --token)"),
            err=True,
        )
    try:
        sock = serving.bind(o.host, o.port)
    except OSError as err:
        raise click.ClickException(f"cannot listen on {o.host}:{o.port}: {err.strerror or err}") from None
    bound = sock.getsockname()[1]  # --port 0: the port the system chose, so the printed address works
    shown_host = f"[{o.host.strip('[]')}]" if ":" in o.host else o.host
    click.echo(
        f"serving {o.index_path} ({app.state.searcher.count:,} images) on http://{shown_host}:{bound}/"
        + (" (access token required)" if o.token else ""),
        err=True,
    )
    serving.run(app, sock, o.log_level, o.header_timeout_s, o.max_connections)
