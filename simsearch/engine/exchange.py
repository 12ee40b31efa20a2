"""Embeddings in and out of an index: Parquet (pyarrow) or .npy with a JSON sidecar, with ids, paths,
labels, file facts and the encoder's record, so other systems can read them and an index can be rebuilt
from them without embedding again (the encoder's fingerprint is checked on the way in)."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index.catalog import Record
from index.store import IndexStore, Transaction
from simsearch.engine.sync import commit_measured
from simsearch.errors import DataError
from simsearch.files import file_mode

__all__ = ["FORMAT", "Exported", "export_embeddings", "import_embeddings", "read_embeddings"]

FORMAT = "simsearch-embeddings"
VERSION = 2  # 2: the .npy sidecar records the vectors' sha256 (`vectors_sha256`), checked on import
_COLUMNS = ("id", "path", "label", "size", "mtime", "sha256")


@dataclass
class Exported:
    """Embeddings with their rows: vectors (N, D) float32 and, per row, id, path, label, size, mtime,
    sha256; `meta`: format, version, encoder record, dim, metric, gallery folder."""

    vectors: np.ndarray
    rows: dict[str, list[Any]]
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.vectors)


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise DataError("Parquet needs pyarrow: pip install 'simsearch[parquet]' (or export to .npy)") from None
    return pyarrow


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".npy":
        return "npy"
    raise DataError(f"{path}: unknown embeddings format {suffix or '(none)'!r}; use .parquet or .npy")


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def export_embeddings(index: str | os.PathLike[str], out: str | os.PathLike[str]) -> Exported:
    """Write every embedding of the index with its catalog row to `out` (.parquet, or .npy plus a .json
    sidecar of the same name), in id order, atomically. Returns what was written."""
    out = Path(out)
    kind = _kind(out)
    with IndexStore.open(index) as store:
        ids, vecs = store.vectors.vectors()
        order = np.argsort(ids, kind="stable")
        ids, vecs = ids[order], vecs[order]
        records = store.catalog.get(ids.tolist())
        m = store.manifest
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "encoder": m.encoder,
            "dim": m.dim,
            "metric": m.metric.value,
            "gallery": m.gallery,
            "count": len(ids),
            "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    rows = {c: [getattr(records[int(i)], c) for i in ids] for c in _COLUMNS}
    exported = Exported(np.ascontiguousarray(vecs, dtype=np.float32), rows, meta)
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        _write_parquet(exported, out)
    else:
        _write_npy_pair(exported, out)
    return exported


def _write_npy_pair(exported: Exported, out: Path) -> None:
    """The .npy and its .json sidecar, each written whole to a temporary file before either is renamed into
    place; the sidecar records the .npy's sha256, so a pair left mismatched by a failure between the two
    renames (or by hand) is refused on import instead of pairing one export's vectors with another's rows."""
    import hashlib
    import io

    buf = io.BytesIO()
    np.save(buf, exported.vectors, allow_pickle=False)
    data = buf.getvalue()
    doc = {**exported.meta, "vectors_sha256": hashlib.sha256(data).hexdigest(), "rows": exported.rows}
    side = (json.dumps(doc, ensure_ascii=False) + "\n").encode()
    temps: list[Path] = []
    try:
        for target, body in ((out, data), (_sidecar(out), side)):
            fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{target.name}.", suffix=".tmp")
            temps.append(Path(name))
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fchmod(f.fileno(), file_mode())
                os.fsync(f.fileno())
        os.replace(temps[0], out)
        os.replace(temps[1], _sidecar(out))
    finally:
        for left in temps:
            left.unlink(missing_ok=True)


def embedding_column(vectors: np.ndarray) -> Any:
    """(N, D) float32 rows as an Arrow column of fixed-size lists of D floats (the Parquet layout of
    exports and of the distributed build's shards)."""
    pa = _pyarrow()
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])


def embeddings_of(column: Any) -> np.ndarray:
    """The (N, D) float32 rows of an Arrow fixed-size-list column (what embedding_column made)."""
    emb = column.combine_chunks()
    return emb.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(emb), emb.type.list_size)


def _write_parquet(exported: Exported, out: Path) -> None:
    pa = _pyarrow()
    table = pa.table(
        {
            "id": pa.array(exported.rows["id"], type=pa.int64()),
            "path": pa.array(exported.rows["path"], type=pa.string()),
            "label": pa.array(exported.rows["label"], type=pa.string()),
            "size": pa.array(exported.rows["size"], type=pa.int64()),
            "mtime": pa.array(exported.rows["mtime"], type=pa.float64()),
            "sha256": pa.array(exported.rows["sha256"], type=pa.string()),
            "embedding": embedding_column(exported.vectors),
        }
    ).replace_schema_metadata({"simsearch": json.dumps(exported.meta)})
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pa.parquet.write_table(table, tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_embeddings(src: str | os.PathLike[str]) -> Exported:
    """Read what export_embeddings wrote (or the same layout from another system). Raises DataError
    naming what is missing or of the wrong shape."""
    src = Path(src)
    kind = _kind(src)
    if not src.is_file():
        raise DataError(f"{src}: no such file")
    if kind == "parquet":
        pa = _pyarrow()
        try:
            table = pa.parquet.read_table(src)
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"{src}: not a readable Parquet file ({err})") from None
        raw = (table.schema.metadata or {}).get(b"simsearch")
        meta = _meta(raw, src)
        missing = [c for c in (*_COLUMNS, "embedding") if c not in table.column_names]
        if missing:
            raise DataError(f"{src}: no column {', '.join(missing)}")
        column = table.column("embedding")
        if not pa.types.is_fixed_size_list(column.type):
            raise DataError(f"{src}: the embedding column is {column.type}, not a fixed-size list of floats")
        vectors = embeddings_of(column)
        rows = {c: table.column(c).to_pylist() for c in _COLUMNS}
    else:
        side = _sidecar(src)
        if not side.is_file():
            raise DataError(f"{src}: its metadata file {side.name} is missing")
        try:
            raw_npy = src.read_bytes()
            vectors = np.load(io.BytesIO(raw_npy), allow_pickle=False)
            doc = json.loads(side.read_text(encoding="utf-8"))
        except RecursionError:
            raise DataError(f"{side}: JSON nested too deeply to be a simsearch sidecar") from None
        except (OSError, ValueError) as err:
            raise DataError(f"{src}: cannot read the embeddings ({err})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("rows"), dict):
            raise DataError(f"{side}: not a simsearch embeddings sidecar (no rows)")
        recorded = doc.pop("vectors_sha256", None)
        if recorded is None and isinstance(doc.get("version"), int) and doc["version"] >= 2:
            raise DataError(f"{side}: records no vectors_sha256 for {src.name}; export again")
        if recorded is not None and recorded != hashlib.sha256(raw_npy).hexdigest():
            raise DataError(
                f"{src}: its vectors are not the ones {side.name} was written with (sha256 differs): the pair is "
                "from two exports or a broken write; export again"
            )
        rows = doc.pop("rows")
        meta = _meta(json.dumps(doc).encode(), side)
        missing = [c for c in _COLUMNS if c not in rows]
        if missing:
            raise DataError(f"{side}: no column {', '.join(missing)}")
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
            raise DataError(f"{src}: embeddings of shape {vectors.shape} and type {vectors.dtype}, not (N, D) floats")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    _check_rows(rows, n, src)
    if vectors.shape[1:] != (meta["dim"],):
        raise DataError(f"{src}: embeddings of width {vectors.shape[1]}, but the encoder record says {meta['dim']}")
    return Exported(vectors, rows, meta)


# the largest id an import may bring: later adds take ids above it, and ids are int64 (with room to spare)
MAX_ID = 2**53


def _check_rows(rows: dict[str, Any], n: int, src: Path) -> None:
    """Every column a list of n values of its type: ids distinct integers in [0, 2**53], paths distinct
    non-empty strings without NUL, labels strings or null, sizes non-negative integers, mtimes finite
    numbers, sha256 strings. Raises DataError naming the column and the first bad row."""
    for c in _COLUMNS:
        if not isinstance(rows[c], list):
            raise DataError(f"{src}: column {c} is a {type(rows[c]).__name__}, not a list of {n} values")
        if len(rows[c]) != n:
            raise DataError(f"{src}: {n} embeddings but column {c} has {len(rows[c])} values")

    def bad(column: str, row: int, why: str) -> DataError:
        return DataError(f"{src}: row {row} of column {column}: {why}")

    for r, (i, p, lbl, sz, mt, h) in enumerate(
        zip(rows["id"], rows["path"], rows["label"], rows["size"], rows["mtime"], rows["sha256"], strict=True)
    ):
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i <= MAX_ID:
            raise bad("id", r, f"{i!r} is not an integer in [0, 2**53]")
        if not isinstance(p, str) or not p or "\x00" in p:
            raise bad("path", r, f"{p!r} is not a file path (a non-empty string without NUL)")
        if lbl is not None and (not isinstance(lbl, str) or "\x00" in lbl):
            raise bad("label", r, f"{lbl!r} is not a class name (a string without NUL) or null")
        if isinstance(sz, bool) or not isinstance(sz, int) or sz < 0:
            raise bad("size", r, f"{sz!r} is not a byte count")
        if isinstance(mt, bool) or not isinstance(mt, (int, float)) or not math.isfinite(mt):
            raise bad("mtime", r, f"{mt!r} is not a finite time")
        if not isinstance(h, str):
            raise bad("sha256", r, f"{h!r} is not a string")
    if len(set(rows["id"])) != n:
        raise DataError(f"{src}: ids must be distinct")
    if len(set(rows["path"])) != n:
        seen: set[str] = set()
        dup = next(p for p in rows["path"] if p in seen or seen.add(p))  # type: ignore[func-returns-value]
        raise DataError(f"{src}: path {dup!r} is given twice; each image may be in the index once")


def _meta(raw: bytes | None, where: Path) -> dict[str, Any]:
    if raw is None:
        raise DataError(f"{where}: no simsearch metadata (the encoder record that made the embeddings)")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        raise DataError(f"{where}: its simsearch metadata is not JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{where}: not {FORMAT} metadata")
    if not isinstance(meta.get("encoder"), dict) or not isinstance(meta.get("dim"), int) or meta["dim"] < 1:
        raise DataError(f"{where}: the metadata has no encoder record or dim")
    return meta


def _check_encoder(record: dict[str, Any], model: str | None) -> dict[str, Any]:
    """The encoder record the new index keeps: the file's, with `model` (or the record's own source) as the
    source to load it from, after checking that its weights have the recorded fingerprint."""
    from simsearch.model_files import read_model_json, resolve_model

    want = record.get("fingerprint")
    source = model or record.get("source")
    if not source:
        raise DataError("the embeddings do not say which encoder made them; give --model")
    try:
        folder, name = resolve_model(str(source))
        have = read_model_json(folder).get("fingerprint")
    except Exception as err:  # ModelError, OSError, ValueError: said in one line
        raise DataError(
            f"the encoder that made these embeddings ({source}) cannot be found here ({err}); "
            "give --model with a checkpoint of the same weights"
        ) from None
    if have != want:
        raise DataError(
            f"encoder {name} has fingerprint {str(have)[:12]}, but these embeddings were made by fingerprint "
            f"{str(want)[:12]}: queries would be embedded by another encoder; give --model with the right weights"
        )
    return dict(record, source=name)


def import_embeddings(
    src: str | os.PathLike[str],
    index: str | os.PathLike[str],
    model: str | None = None,
    kind: str = "auto",
    overwrite: bool = False,
) -> int:
    """Build a new index at `index` from exported embeddings, keeping their ids, paths, labels and file
    facts, without embedding anything. The encoder (the record's own source, or `model`) must be here
    with the recorded fingerprint, since queries are embedded by it. Returns the image count."""
    data = read_embeddings(src)
    if IndexStore.exists(index) and not overwrite:
        raise DataError(f"{index}: an index is already there; choose another --index or give --overwrite")
    encoder = _check_encoder(data.meta["encoder"], model)
    ids = np.asarray(data.rows["id"], dtype=np.int64)
    norms = np.linalg.norm(data.vectors, axis=1)
    off = ~(np.abs(norms - 1) < 1e-3)  # NaN norms count as off
    if off.any():
        raise DataError(
            f"{src}: embeddings must be finite rows of unit length (cosine); {int(off.sum())} of {len(norms)} are not"
        )
    with Transaction.create(index, data.meta["dim"], encoder, kind=kind, replace_existing=overwrite) as tx:
        for start in range(0, len(ids), 50_000):
            part = slice(start, start + 50_000)
            records = [
                Record(int(i), str(p), None if lbl is None else str(lbl), int(sz), float(mt), str(h))
                for i, p, lbl, sz, mt, h in zip(
                    ids[part],
                    data.rows["path"][part],
                    data.rows["label"][part],
                    data.rows["size"][part],
                    data.rows["mtime"][part],
                    data.rows["sha256"][part],
                    strict=True,
                )
            ]
            tx.add(data.vectors[part], records)
        if len(ids):
            tx.next_id = max(tx.next_id, int(ids.max()) + 1)
        gallery = data.meta.get("gallery")
        return int(commit_measured(tx, gallery=gallery if isinstance(gallery, str) else None).count)
