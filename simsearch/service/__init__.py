"""The search service: reverse image search and identification over HTTP, and the page at `/`.

The encoder and the index are loaded once when the app is made (app.py). Uploads are decoded in the
request's worker thread (in parallel, bounded in count and pixels); embedding and searching share one
lock, because the SQLite catalog and the encoder are used by one caller at a time (state.py). Nothing a
request does writes to the gallery or the index. Gallery files are served by catalog id only: no request
names a path (routes/gallery.py). The guard (guard.py) checks host, token and body before any route.
"""

from simsearch.service.app import DEFAULT_DECODE_PIXELS, DEFAULT_MAX_UPLOAD, DEFAULT_TIMEOUT_S, create_app
from simsearch.service.guard import BODY_TIMEOUT_S, LOOPBACK_NAMES, is_loopback

__all__ = [
    "BODY_TIMEOUT_S",
    "DEFAULT_DECODE_PIXELS",
    "DEFAULT_MAX_UPLOAD",
    "DEFAULT_TIMEOUT_S",
    "LOOPBACK_NAMES",
    "create_app",
    "is_loopback",
]
