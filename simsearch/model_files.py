"""Where encoder checkpoints are on disk: built-in names, checkpoint folders, and their model.json read as a
bounded regular file. Torch-free, so that commands which only need an encoder's recorded facts (its
thresholds) start at once; checkpoint.py loads the weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simsearch.errors import ModelError
from simsearch.files import NotReadable, read_regular

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_MODEL",
    "WEIGHTS_FILE",
    "builtin_models",
    "model_summaries",
    "read_model_json",
    "recorded_meta",
    "resolve_model",
]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"
DEFAULT_MODEL = "characters"
_PRETRAINED = Path(__file__).resolve().parent / "pretrained"
_MAX_CONFIG = 16 << 20  # model.json is a few kilobytes


def builtin_models() -> dict[str, Path]:
    """Built-in encoder names mapped to their folders inside the package."""
    if not _PRETRAINED.is_dir():
        return {}
    return {
        p.name: p for p in sorted(_PRETRAINED.iterdir()) if (p / WEIGHTS_FILE).is_file() and (p / CONFIG_FILE).is_file()
    }


def resolve_model(name_or_path: str | None) -> tuple[Path, str]:
    """(checkpoint folder, source string) for a built-in name, a folder, or None for the default."""
    name = name_or_path or DEFAULT_MODEL
    builtins = builtin_models()
    if name in builtins:
        return builtins[name], name
    path = Path(name)
    if path.is_file() and path.name in (WEIGHTS_FILE, CONFIG_FILE):
        path = path.parent
    if path.is_dir():
        return path, str(path.resolve())
    known = ", ".join(builtins) or "none installed"
    raise ModelError(f"{name}: not a built-in encoder ({known}) nor a checkpoint folder")


def read_model_json(folder: Path) -> dict[str, Any]:
    """A checkpoint folder's model.json, read as a regular file of bounded size. Raises ModelError when it is
    not an object; FileNotFoundError, NotReadable, OSError, ValueError or RecursionError when it cannot be
    read or parsed (load_checkpoint words each)."""
    meta = json.loads(read_regular(folder / CONFIG_FILE, _MAX_CONFIG))
    if not isinstance(meta, dict):
        raise ModelError(f"{folder}: {CONFIG_FILE} is a {type(meta).__name__}, not an object")
    return meta


def recorded_meta(source: str | None) -> dict[str, Any]:
    """The model.json of a built-in encoder or checkpoint folder, {} when it cannot be found or read (or no
    source is recorded)."""
    if not source:
        return {}
    try:
        return read_model_json(resolve_model(source)[0])
    except (ModelError, NotReadable, OSError, ValueError, RecursionError):
        return {}


def model_summaries() -> list[dict[str, Any]]:
    """One row per built-in encoder, read from its model.json alone (no weights loaded): name,
    default, arch, input (CxSxS), dim, parameters, fingerprint (12 hex digits), description."""
    rows = []
    for name, folder in builtin_models().items():
        meta = read_model_json(folder)
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
    return rows
