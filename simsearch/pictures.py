"""Pictures for people: contact sheets of query results and duplicate groups, and ROC curves (Pillow only)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from simsearch.errors import ImageError
from simsearch.images import decode_image

__all__ = [
    "MONTAGE_ROWS",
    "Tile",
    "contact_sheet",
    "det_picture",
    "group_sheets",
    "identify_sheet",
    "query_sheet",
    "roc_picture",
    "sample_across",
]

_THUMB = 128
_CAPTION = 42
MONTAGE_ROWS = 16  # rows (queries) a query/identify sheet shows by default: about 3,000 pixels tall
_PAD = 6
GREEN, RED, GREY = (30, 150, 60), (200, 40, 40), (120, 120, 120)


@dataclass(frozen=True)
class Tile:
    """One thumbnail: the image, two caption lines, and a frame colour (None = no frame)."""

    path: str
    line1: str
    line2: str = ""
    line3: str = ""
    colour: tuple[int, int, int] | None = None


def _thumb(path: str) -> Image.Image:
    try:
        img = decode_image(path, channels=3)
    except ImageError:
        img = Image.new("RGB", (_THUMB, _THUMB), (235, 235, 235))
        ImageDraw.Draw(img).text((8, _THUMB // 2 - 6), "unreadable", fill=GREY)
        return img
    img.thumbnail((_THUMB, _THUMB))
    canvas = Image.new("RGB", (_THUMB, _THUMB), "white")
    canvas.paste(img, ((_THUMB - img.width) // 2, (_THUMB - img.height) // 2))
    return canvas


def _fit(text: str, n: int = 20) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def contact_sheet(rows: Sequence[Sequence[Tile]], out: str | os.PathLike[str]) -> Path:
    """Draw rows of tiles (e.g. a query then its top-k) into one PNG; returns its path."""
    if not rows:
        raise ValueError("nothing to draw")
    font = ImageFont.load_default()
    cols = max(len(r) for r in rows)
    cell_w, cell_h = _THUMB + 2 * _PAD, _THUMB + _CAPTION + 2 * _PAD
    sheet = Image.new("RGB", (cols * cell_w, len(rows) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            x, y = c * cell_w + _PAD, r * cell_h + _PAD
            sheet.paste(_thumb(tile.path), (x, y))
            if tile.colour is not None:
                draw.rectangle([x - 3, y - 3, x + _THUMB + 2, y + _THUMB + 2], outline=tile.colour, width=3)
            draw.text((x, y + _THUMB + 3), _fit(tile.line1), fill=tile.colour or (0, 0, 0), font=font)
            draw.text((x, y + _THUMB + 15), _fit(tile.line2), fill=GREY, font=font)
            draw.text((x, y + _THUMB + 27), _fit(tile.line3), fill=GREY, font=font)
        if row:
            draw.line([(cell_w, r * cell_h + _PAD), (cell_w, (r + 1) * cell_h - _PAD)], fill=GREY, width=1)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def roc_picture(
    far: np.ndarray, tar: np.ndarray, out: str | os.PathLike[str], title: str, marks: dict[str, tuple[float, float]]
) -> Path:
    """Draw a ROC curve (false-accept rate on x, true-accept rate on y) with labelled points."""
    size, margin = 480, 50
    img = Image.new("RGB", (size + 2 * margin, size + 2 * margin), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()

    def xy(fa: float, ta: float) -> tuple[float, float]:
        return margin + fa * size, margin + (1 - ta) * size

    draw.rectangle([margin, margin, margin + size, margin + size], outline=(0, 0, 0))
    for t in np.linspace(0, 1, 6):
        px, py = xy(t, 0)
        draw.line([(px, py), (px, py + 4)], fill=(0, 0, 0))
        draw.text((px - 8, py + 8), f"{t:.1f}", fill=(0, 0, 0), font=font)
        draw.text((margin - 30, xy(0, t)[1] - 5), f"{t:.1f}", fill=(0, 0, 0), font=font)
    draw.line([xy(0, 0), xy(1, 1)], fill=(200, 200, 200))
    draw.line([xy(float(f), float(t)) for f, t in zip(far, tar, strict=True)], fill=(20, 80, 200), width=2)
    for name, (fa, ta) in marks.items():
        px, py = xy(fa, ta)
        draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=RED)
        draw.text((px + 8, py + 2), name, fill=RED, font=font)
    draw.text((margin, 15), title, fill=(0, 0, 0), font=font)
    draw.text((margin + size // 2 - 60, margin + size + 28), "false-accept rate", fill=(0, 0, 0), font=font)
    draw.text((5, margin - 20), "true-accept rate", fill=(0, 0, 0), font=font)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out


_PALETTE = [(20, 80, 200), (200, 40, 40), (30, 150, 60), (160, 90, 10), (120, 40, 160), (0, 140, 150)]


def det_picture(
    curves: Sequence[tuple[str, Sequence[float], Sequence[float]]], out: str | os.PathLike[str], title: str
) -> Path:
    """A DET picture of open-set identification: FNIR (y, 0 to 1) against FPIR (x, log scale from 0.001 to 1),
    one line per (name, fpir values, fnir values), with a legend."""
    size, margin, lo = 480, 60, -3.0
    img = Image.new("RGB", (size + 2 * margin + 180, size + 2 * margin), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()

    def xy(fpir: float, fnir: float) -> tuple[float, float]:
        x = (max(np.log10(max(fpir, 1e-9)), lo) - lo) / -lo
        return margin + x * size, margin + (1 - fnir) * size

    draw.rectangle([margin, margin, margin + size, margin + size], outline=(0, 0, 0))
    for k, label in enumerate(("0.001", "0.01", "0.1", "1")):
        px, py = xy(10.0 ** (lo + k), 0.0)
        draw.line([(px, py), (px, py + 4)], fill=(0, 0, 0))
        draw.text((px - 12, py + 8), label, fill=(0, 0, 0), font=font)
    for t in np.linspace(0, 1, 6):  # FNIR rises upward
        draw.text((margin - 30, xy(1e-3, float(t))[1] - 5), f"{t:.1f}", fill=(0, 0, 0), font=font)
    for k, (name, fpir, fnir) in enumerate(curves):
        colour = _PALETTE[k % len(_PALETTE)]
        pts = [xy(float(f), float(n)) for f, n in zip(fpir, fnir, strict=True) if f > 0]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        draw.line(
            [(margin + size + 15, margin + 12 + 16 * k), (margin + size + 35, margin + 12 + 16 * k)],
            fill=colour,
            width=3,
        )
        draw.text((margin + size + 40, margin + 6 + 16 * k), name[:22], fill=(0, 0, 0), font=font)
    draw.text((margin, 15), title, fill=(0, 0, 0), font=font)
    draw.text(
        (margin + size // 2 - 110, margin + size + 28), "FPIR: unknown probes accepted (log)", fill=(0, 0, 0), font=font
    )
    draw.text((5, margin - 20), "FNIR: known probes missed", fill=(0, 0, 0), font=font)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out


def _true_label(query: str, classes: set[str]) -> str | None:
    """A query's own class, when the folder holding it is named like a gallery class."""
    name = Path(query).parent.name
    return name if name in classes else None


def sample_across(items: Sequence[Any], key: Any, rows: int) -> list[Any]:
    """At most `rows` items, taken in turn from each group (`key(item)`, e.g. a query's folder) so that
    every group shows before any shows twice; in their original order."""
    groups: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(key(item), []).append(i)
    picked: list[int] = []
    queues = list(groups.values())
    depth = 0
    while len(picked) < min(rows, len(items)):
        for q in queues:
            if depth < len(q) and len(picked) < rows:
                picked.append(q[depth])
        depth += 1
    return [items[i] for i in sorted(picked)]


def _folder(query: str) -> str:
    return str(Path(query).parent)


def query_sheet(
    results: Sequence[Any], out: str | os.PathLike[str], classes: set[str], max_rows: int = MONTAGE_ROWS
) -> Path:
    """Contact sheet of QueryResults, at most `max_rows` queries sampled across their folders: the query,
    then its hits with rank, score, class and file name."""
    rows = []
    for res in sample_across(results, lambda r: _folder(r.query), max_rows):
        truth = _true_label(res.query, classes)
        row = [Tile(res.query, "query", truth or "", Path(res.query).name)]
        for h in res.results:
            colour = None if truth is None else (GREEN if h.label == truth else RED)
            row.append(Tile(h.path, f"{h.rank}. {h.score:+.3f}", h.label or "", Path(h.path).name, colour))
        rows.append(row)
    return contact_sheet(rows, out)


def identify_sheet(
    results: Sequence[Any], out: str | os.PathLike[str], classes: set[str], max_rows: int = MONTAGE_ROWS
) -> Path:
    """Contact sheet of Identifications, at most `max_rows` queries sampled across their folders: the
    query, then its best match with the decision (identified, uncertain or unknown)."""
    rows = []
    for r in sample_across(results, lambda r: _folder(r.query), max_rows):
        truth = _true_label(r.query, classes)
        status, _ = r.status
        answer = r.label if r.known else "unknown"
        right = (answer == truth) if truth is not None else None
        colour = None if right is None else (GREEN if right else RED)
        row = [Tile(r.query, "query", truth or "", Path(r.query).name)]
        if r.match:
            shown = f"{answer}?" if status == "uncertain" else answer
            row.append(Tile(r.match, f"{shown} {r.score:+.3f}", f"margin {r.margin:.3f}", Path(r.match).name, colour))
        rows.append(row)
    return contact_sheet(rows, out)


def group_sheets(
    rows: Sequence[dict[str, Any]], folder: str | os.PathLike[str], per_group: int = 12, max_groups: int = 200
) -> list[Path]:
    """One contact sheet per duplicate group (engine.duplicate_rows' rows): group-0001.png, ... for the
    first `max_groups` groups; the first `per_group` members, each captioned with its score against the
    group's centre (or "keep") and its file name."""
    out = []
    for row in rows[:max_groups]:
        tiles = [
            Tile(m["path"], "keep" if m["keep"] else f"{m['score']:+.3f} {m['match']}", Path(m["path"]).name)
            for m in row["members"][:per_group]
        ]
        out.append(contact_sheet([tiles], Path(folder) / f"group-{row['group']:04d}.png"))
    return out
