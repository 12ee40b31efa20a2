"""An index's manifest (manifest.json, the commit point: which generation is current and what it holds),
read with every field's type checked, and the consistency check's report."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from index.errors import IndexCorruptError, IndexNotFoundError
from index.vector_index import IndexKind, KindParams, Metric

__all__ = ["CATALOG", "FORMAT_VERSION", "MANIFEST", "VECTORS", "CheckReport", "Manifest", "now", "read_manifest"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
CATALOG = "catalog.sqlite"
_MAX_MANIFEST = 64 << 20  # a manifest holds two thinned score curves: well under a megabyte


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Manifest:
    """What an index directory holds. `encoder` is opaque to this layer (the engine fills it)."""

    dim: int
    encoder: dict[str, Any]
    generation: int = 0
    count: int = 0
    next_id: int = 0
    metric: Metric = Metric.COSINE
    kind: IndexKind = IndexKind.FLAT
    params: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None
    calibration: dict[str, Any] | None = None
    gallery_calibration: dict[str, Any] | None = None  # the gallery measured on itself at each commit
    checksums: dict[str, str] = field(default_factory=dict)  # file of the generation -> "sha256:<hex>"
    gallery: str | None = None  # the folder the index was last built or synced from (absolute)
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    format_version: int = FORMAT_VERSION

    @property
    def gen_dir(self) -> str:
        return f"gen-{self.generation:06d}"

    @property
    def kind_params(self) -> KindParams:
        return KindParams.from_dict(self.params)

    @property
    def requested_kind(self) -> str:
        """What the user asked for: 'auto' or a kind name (the kind field is what it resolved to)."""
        return str(self.params.get("requested", self.kind.value))

    def to_json(self) -> str:
        d = asdict(self)
        d["metric"], d["kind"] = self.metric.value, self.kind.value
        d["files"] = {"vectors": f"{self.gen_dir}/{VECTORS}", "catalog": f"{self.gen_dir}/{CATALOG}"}
        return json.dumps(d, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse manifest.json. Raises IndexCorruptError naming the field that is missing or of the wrong
        shape (a list for the whole, a string for the encoder, a generation that is not a number ...)."""
        d = json.loads(text)
        if not isinstance(d, dict):
            raise IndexCorruptError(f"{MANIFEST} is a {type(d).__name__}, not an object")
        if d.get("format_version") != FORMAT_VERSION:
            raise IndexCorruptError(f"unsupported index format version {d.get('format_version')!r}")
        d.pop("files", None)
        for key, kinds in _FIELD_TYPES.items():
            if key in d and not (isinstance(d[key], kinds) and not isinstance(d[key], bool)):
                raise IndexCorruptError(f"{MANIFEST}: {key} is {d[key]!r}, not {_TYPE_NAMES[key]}")
        for key in ("dim", "encoder", "metric", "kind"):
            if key not in d:
                raise IndexCorruptError(f"{MANIFEST}: {key} is missing")
        if d["dim"] < 1 or min(d.get(k, 0) for k in ("generation", "count", "next_id")) < 0:
            raise IndexCorruptError(f"{MANIFEST}: dim, generation, count or next_id out of range")
        threshold = d.get("threshold")
        if threshold is not None and not (isinstance(threshold, (int, float)) and -2.0 <= threshold <= 2.0):
            raise IndexCorruptError(f"{MANIFEST}: threshold is {threshold!r}, not a cosine score")
        d["metric"], d["kind"] = Metric.parse(d["metric"]), IndexKind.parse(d["kind"])
        return cls(**d)


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "dim": int,
    "encoder": dict,
    "generation": int,
    "count": int,
    "next_id": int,
    "metric": str,
    "kind": str,
    "params": dict,
    "threshold": (int, float, type(None)),
    "calibration": (dict, type(None)),
    "gallery_calibration": (dict, type(None)),
    "checksums": dict,
    "gallery": (str, type(None)),
    "created": str,
    "updated": str,
}
_TYPE_NAMES = {
    k: " or ".join("null" if t is type(None) else t.__name__ for t in (v if isinstance(v, tuple) else (v,)))
    for k, v in _FIELD_TYPES.items()
}


@dataclass(frozen=True)
class CheckReport:
    """Result of a consistency check: `problems` is empty when the index is sound."""

    count: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def read_manifest(path: Path) -> Manifest:
    mpath = path / MANIFEST
    if not path.exists():
        raise IndexNotFoundError(
            f"{path}: no such index (build one with `simsearch index build FOLDER --index {path}`)"
        )
    if not mpath.is_file():
        raise IndexNotFoundError(f"{path}: not a simsearch index (no {MANIFEST})")
    try:
        st = os.stat(mpath)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_MANIFEST:
            raise IndexCorruptError(f"{path}: {MANIFEST} is not a regular file of at most {_MAX_MANIFEST:,} bytes")
        return Manifest.from_json(mpath.read_text())
    except IndexCorruptError as err:
        raise IndexCorruptError(f"{path}: {err}" if str(path) not in str(err) else str(err)) from None
    except (OSError, ValueError, TypeError, KeyError, RecursionError) as err:
        raise IndexCorruptError(f"{path}: {MANIFEST} is unreadable ({err})") from None
