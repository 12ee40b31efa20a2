"""Result files for batch queries: JSON lines or CSV, chosen by the file's extension, written atomically."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from simsearch.errors import SimSearchError
from simsearch.files import write_atomic

__all__ = ["write_rows"]


# a spreadsheet runs a cell that starts with one of these as a formula (a class named "=1+2" would be one)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a string that would start a formula gets a leading quote
    (OWASP's advice for CSV injection); numbers and everything else are written as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_rows(rows: list[dict[str, Any]], out: str | os.PathLike[str], flatten: str | None = None) -> Path:
    """Write one JSON object per line (.jsonl/.json) or a CSV table (.csv).

    For CSV, `flatten` names a list field (e.g. "results") whose items become one row each,
    prefixed with the parent's other fields.
    """
    path = Path(out)
    ext = path.suffix.lower()
    if ext in (".jsonl", ".json", ".ndjson"):
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    elif ext == ".csv":
        flat: list[dict[str, Any]] = []
        for r in rows:
            items = r.get(flatten) if flatten else None
            base = {k: v for k, v in r.items() if k != flatten}
            if isinstance(items, list) and items:
                flat.extend({**base, **item} for item in items)
            else:
                flat.append(base)
        fields: list[str] = []
        for r in flat:
            fields += [k for k in r if k not in fields]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in r.items()} for r in flat)
        data = buf.getvalue()
    else:
        raise SimSearchError(f"{out}: unknown result format {ext!r}; use .jsonl or .csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data.encode())
    return path
