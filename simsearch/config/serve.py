"""`simsearch serve`'s settings, each declared once with its default and help text: where to listen, what
a request may send and take, how the service logs and names gallery images. The service's own defaults
(simsearch.service, simsearch.serving) are these. Free of torch, faiss and click."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simsearch.config.options import option

__all__ = ["BODY_TIMEOUT_S", "HEADER_TIMEOUT_S", "MAX_CONNECTIONS", "ServeOptions"]

HEADER_TIMEOUT_S = 10.0  # a connection must deliver its request's headers within this time
BODY_TIMEOUT_S = 30.0  # the longest wait for the next part of a request body
MAX_CONNECTIONS = 256  # connections held at once (each holds a file descriptor)


@dataclass(frozen=True)
class ServeOptions:
    index_path: Path = option(help="Index directory to serve.", flag="--index", kind="path")
    host: str = option("127.0.0.1", "Address to bind (loopback unless you say otherwise).")
    port: int = option(8000, "Port to listen on.", bounds=(0, 65535))
    max_upload_mb: float = option(20.0, "Largest accepted upload, in MiB (413 above it).", bounds=(0.001, None))
    timeout_s: float = option(
        30.0,
        "Seconds a query may take before it is answered 504 (its work then stops at its next step).",
        flag="--timeout",
        bounds=(0.1, None),
    )
    decode_threads: int | None = option(None, "Uploads decoded at once (default: the CPU count).", bounds=(1, 256))
    decode_megapixels: float = option(
        128.0,
        "Megapixels decoded at once across all requests: bounds memory (about 6 bytes a pixel) whatever the load.",
        bounds=(1.0, None),
    )
    token: str | None = option(
        None,
        "Ask every request for this access token (Authorization: Bearer TOKEN; the page: open /?token=TOKEN "
        "once). Also read from SIMSEARCH_TOKEN. Use it whenever the server is reachable beyond this machine.",
        envvar="SIMSEARCH_TOKEN",
    )
    log_level: str = option(
        "info",
        "What the server logs to stderr: info includes one access-log line per request "
        "(method, path, status, milliseconds).",
        values=("debug", "info", "warning", "error"),
    )
    absolute_paths: bool = option(
        False,
        "Answer with the server's full paths of gallery images (default: paths relative to the gallery folder).",
    )
    header_timeout_s: float = option(
        HEADER_TIMEOUT_S,
        "Seconds a connection has to send its request's headers before it is closed (slow clients).",
        flag="--header-timeout",
        bounds=(0.1, None),
    )
    body_timeout_s: float = option(
        BODY_TIMEOUT_S,
        "Seconds an upload may stall between two of its parts before it is answered 408.",
        flag="--body-timeout",
        bounds=(0.1, None),
    )
    max_connections: int = option(
        MAX_CONNECTIONS,
        "Connections held at once; more are closed on arrival (each holds a file descriptor).",
        bounds=(1, 65536),
    )
