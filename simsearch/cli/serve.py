"""`simsearch serve`: the HTTP service over one index."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from simsearch.cli.common import (
    DEVICE,
)
from simsearch.cli.root import cli


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
        f"serving {index_path} ({app.state.searcher.count:,} images) on http://{shown_host}:{bound}/"
        + (" (access token required)" if token else ""),
        err=True,
    )
    serving.run(app, sock, log_level, header_timeout_s, max_connections)
