"""Drawn symbols made on the spot: the demo's offline gallery and the tests' generated images."""

from __future__ import annotations

import math
from itertools import pairwise
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["FACE_BACKGROUND", "SYMBOLS", "draw_face", "draw_symbol", "write_photos", "write_symbol_set"]


def _circle(t: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(2 * math.pi * t), np.sin(2 * math.pi * t)], 1)


def _polygon(n: int, star: bool = False) -> np.ndarray:
    k = 2 * n if star else n
    pts = []
    for i in range(k + 1):
        r = (0.45 if i % 2 else 1.0) if star else 1.0
        a = -math.pi / 2 + 2 * math.pi * i / k
        pts.append((r * math.cos(a), r * math.sin(a)))
    return np.array(pts)


def _spiral(t: np.ndarray) -> np.ndarray:
    a = 5 * math.pi * t
    return np.stack([t * np.cos(a), t * np.sin(a)], 1)


# Each symbol is a list of strokes; each stroke an (M, 2) array of points in [-1, 1].
SYMBOLS: dict[str, list[np.ndarray]] = {
    "circle": [_circle(np.linspace(0, 1, 40))],
    "triangle": [_polygon(3)],
    "square": [np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8], [-0.8, -0.8]])],
    "star": [_polygon(5, star=True)],
    "cross": [np.array([[-0.9, 0], [0.9, 0]]), np.array([[0, -0.9], [0, 0.9]])],
    "spiral": [_spiral(np.linspace(0.05, 1, 60))],
    "zigzag": [np.array([[-0.9, -0.5], [-0.45, 0.5], [0, -0.5], [0.45, 0.5], [0.9, -0.5]])],
    "arrow": [np.array([[-0.9, 0], [0.9, 0]]), np.array([[0.4, -0.5], [0.9, 0], [0.4, 0.5]])],
    "hourglass": [np.array([[-0.7, -0.9], [0.7, -0.9], [-0.7, 0.9], [0.7, 0.9], [-0.7, -0.9]])],
    "wave": [np.stack([np.linspace(-0.9, 0.9, 40), 0.5 * np.sin(np.linspace(0, 4 * math.pi, 40))], 1)],
}


def draw_symbol(name: str, rng: np.random.Generator, size: int = 105, mode: str = "L") -> Image.Image:
    """One hand-drawn-looking instance of a symbol: random placement, scale, rotation, wobble and
    pen width, dark strokes on a light background. mode "RGB" adds random ink and paper colours."""
    if name not in SYMBOLS:
        raise ValueError(f"unknown symbol {name!r}; allowed: {', '.join(SYMBOLS)}")
    angle = rng.uniform(-0.25, 0.25)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    scale = size * rng.uniform(0.28, 0.38)
    centre = size / 2 + rng.uniform(-0.08, 0.08, 2) * size
    paper = tuple(int(v) for v in rng.integers(215, 256, 3)) if mode == "RGB" else (255,)
    ink = tuple(int(v) for v in rng.integers(0, 90, 3)) if mode == "RGB" else (0,)
    img = Image.new(mode, (size, size), paper if mode == "RGB" else paper[0])
    draw = ImageDraw.Draw(img)
    width = int(rng.integers(2, 5))
    for stroke in SYMBOLS[name]:
        # densify, then wobble each point a little like a hand would
        dense = np.concatenate([np.linspace(a, b, 6, endpoint=False) for a, b in pairwise(stroke)] + [stroke[-1:]])
        dense = dense + rng.normal(0, 0.03, dense.shape)
        pts = dense @ rot.T * scale + centre
        draw.line([tuple(p) for p in pts], fill=ink if mode == "RGB" else ink[0], width=width, joint="curve")
    return img


def write_symbol_set(out: str | Path, names: list[str], per_class: int, seed: int = 0, fmt: str = "png") -> list[Path]:
    """Write `per_class` drawings of each symbol to out/<name>/<name>_NN.<fmt>; returns the files."""
    rng = np.random.default_rng(seed)
    root = Path(out)
    files = []
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = root / name / f"{name}_{i:02d}.{fmt}"
            draw_symbol(name, rng).save(path)
            files.append(path)
    return files


def write_photos(root: Path, n: int, seed: int = 0, side: int = 96, classes: int = 0) -> Path:
    """n distinct photo-like RGB JPEGs: a smooth random colour field with a few random shapes.
    With classes > 0 they go into that many class folders (photo i in class i % classes)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize(
            (side, side), Image.Resampling.BICUBIC
        )
        draw = ImageDraw.Draw(img)
        for _ in range(3):
            x0, y0 = (int(v) for v in rng.integers(0, side - 25, 2))
            w, h = (int(v) for v in rng.integers(10, side // 2, 2))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + w, y0 + h), fill=fill)
        folder = root / f"class{i % classes:02d}" if classes else root
        folder.mkdir(exist_ok=True)
        img.save(folder / f"p{i:04d}.jpg", quality=92)
    return root


FACE_BACKGROUND = (200, 210, 220)


def draw_face(
    size: int = 200, hair: tuple[int, ...] = (60, 40, 30), skin: tuple[int, ...] = (225, 185, 160)
) -> Image.Image:
    """A frontal face drawn in flat shapes (hair, a shaded oval, brows, eyes, nose, mouth), softened:
    the frontal-face cascade finds it at every size from 80 to 410 pixels and with any hair colour."""
    im = Image.new("RGB", (size, size), FACE_BACKGROUND)
    d, s = ImageDraw.Draw(im), size / 200
    d.rectangle([45 * s, 15 * s, 155 * s, 60 * s], fill=hair)
    d.ellipse([48 * s, 28 * s, 152 * s, 172 * s], fill=tuple(int(c * 0.8) for c in skin))
    d.ellipse([58 * s, 34 * s, 142 * s, 168 * s], fill=skin)
    for x in (77, 123):
        d.rectangle([(x - 17) * s, 62 * s, (x + 17) * s, 67 * s], fill=(70, 50, 40))
        d.ellipse([(x - 14) * s, 74 * s, (x + 14) * s, 88 * s], fill=(120, 90, 80))
        d.ellipse([(x - 6) * s, 75 * s, (x + 6) * s, 87 * s], fill=(40, 30, 30))
    d.polygon([(100 * s, 85 * s), (92 * s, 122 * s), (108 * s, 122 * s)], fill=tuple(int(c * 0.88) for c in skin))
    d.ellipse([82 * s, 136 * s, 118 * s, 148 * s], fill=(150, 60, 60))
    return im.filter(ImageFilter.GaussianBlur(2 * s))
