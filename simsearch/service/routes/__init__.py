"""The service's routes, one module per area: search (search, identify), gallery (images, thumbnails,
classes), ops (the page, health, stats, metrics). Each is an APIRouter whose handlers get the app's
Service as a dependency."""

from simsearch.service.routes import gallery, ops, search

__all__ = ["gallery", "ops", "search"]
