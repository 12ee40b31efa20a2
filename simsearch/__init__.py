"""simsearch: similarity search for images with a Siamese encoder and a FAISS index.

The public Python API (see docs/api.md). Importing the package is cheap: names load their module
(and torch or faiss with it) on first use.

    import simsearch
    simsearch.build_index("photos/", "photos.idx", model="photos")
    with simsearch.Searcher("photos.idx") as s:
        hits = s.query("holiday.jpg", k=5)[0].results
        who = s.identify(["probe.png"])[0]
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from simsearch.errors import (
    ConfigError,
    DataError,
    EncoderMismatchError,
    ImageError,
    ModelError,
    SimSearchError,
)

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first use)
_LAZY = {
    # the index: build, sync, add, remove, inspect
    "build_index": "simsearch.engine",
    "add_files": "simsearch.engine",
    "remove_entries": "simsearch.engine",
    "index_info": "simsearch.engine",
    "BuildReport": "simsearch.engine",
    # answering: query, identify, verify, calibrate, duplicates
    "Searcher": "simsearch.engine",
    "OperatingPoint": "simsearch.engine",
    "QueryResult": "simsearch.engine",
    "Hit": "simsearch.engine",
    "Identification": "simsearch.engine",
    "verify": "simsearch.engine",
    "Verdict": "simsearch.engine",
    "calibrate": "simsearch.engine",
    "Calibration": "simsearch.engine",
    "find_duplicates": "simsearch.engine",
    "export_embeddings": "simsearch.engine",
    "import_embeddings": "simsearch.engine",
    # encoders: load and embed
    "Embedder": "simsearch.embed",
    "load_checkpoint": "simsearch.checkpoint",
    "builtin_models": "simsearch.checkpoint",
    "Preprocess": "simsearch.preprocess",
    "import_backbone": "simsearch.models_import",
    # training
    "TrainConfig": "simsearch.train",
    "SelfSupConfig": "simsearch.train",
    "CaptionConfig": "simsearch.train",
    "TrainRequest": "simsearch.train",
    "run_training": "simsearch.train",
}

__all__ = [
    "BuildReport",
    "Calibration",
    "CaptionConfig",
    "ConfigError",
    "DataError",
    "Embedder",
    "EncoderMismatchError",
    "Hit",
    "Identification",
    "ImageError",
    "ModelError",
    "OperatingPoint",
    "Preprocess",
    "QueryResult",
    "Searcher",
    "SelfSupConfig",
    "SimSearchError",
    "TrainConfig",
    "TrainRequest",
    "Verdict",
    "__version__",
    "add_files",
    "build_index",
    "builtin_models",
    "calibrate",
    "export_embeddings",
    "find_duplicates",
    "import_backbone",
    "import_embeddings",
    "index_info",
    "load_checkpoint",
    "load_encoder",
    "remove_entries",
    "run_training",
    "verify",
]

if TYPE_CHECKING:
    from simsearch.checkpoint import builtin_models, load_checkpoint
    from simsearch.embed import Embedder
    from simsearch.engine import (
        BuildReport,
        Calibration,
        Hit,
        Identification,
        OperatingPoint,
        QueryResult,
        Searcher,
        Verdict,
        add_files,
        build_index,
        calibrate,
        export_embeddings,
        find_duplicates,
        import_embeddings,
        index_info,
        remove_entries,
        verify,
    )
    from simsearch.models_import import import_backbone
    from simsearch.preprocess import Preprocess
    from simsearch.train import CaptionConfig, SelfSupConfig, TrainConfig, TrainRequest, run_training


def load_encoder(model: str | None = None, device: str = "auto") -> Embedder:
    """An Embedder for a built-in encoder name ("characters", "photos", "faces", "objects", "signatures") or a
    checkpoint folder; None loads the default. embed_paths / embed_images / embed_arrays give
    (N, D) float32 unit rows."""
    from simsearch.embed import Embedder

    return Embedder.load(model, device)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'simsearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
