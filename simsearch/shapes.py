"""Generated captioned pictures: coloured shapes in counts ("two red circles"), for trying and testing
image-text search offline (simsearch train --captions, query --text) where no captioned photos are at hand."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["COLOURS", "COUNTS", "SHAPES", "all_captions", "caption_of", "draw_shapes", "write_captioned_shapes"]

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (40, 60, 220),
    "yellow": (235, 200, 20),
    "purple": (140, 40, 170),
}
SHAPES = ("circle", "square", "triangle")
COUNTS = ("one", "two", "three")


def caption_of(count: int, colour: str, shape: str) -> str:
    return f"{COUNTS[count - 1]} {colour} {shape}{'s' if count > 1 else ''}"


def all_captions() -> list[str]:
    """Every caption the generator writes (45: counts x colours x shapes)."""
    return [caption_of(n, c, s) for n, c, s in itertools.product((1, 2, 3), COLOURS, SHAPES)]


def draw_shapes(count: int, colour: str, shape: str, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """`count` shapes of one colour on a pale, randomly tinted background, each at its own size and place
    (placed apart from each other where the picture has room)."""
    bg = tuple(int(v) for v in rng.integers(200, 256, 3))
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    fill = tuple(int(np.clip(v + rng.integers(-25, 26), 0, 255)) for v in COLOURS[colour])
    placed: list[tuple[float, float, float]] = []
    for _ in range(count):
        for _attempt in range(50):
            r = float(rng.uniform(0.09, 0.16) * size)
            x, y = (float(v) for v in rng.uniform(r + 1, size - r - 1, 2))
            if all((x - a) ** 2 + (y - b) ** 2 > (r + c + 2) ** 2 for a, b, c in placed):
                break
        placed.append((x, y, r))
        if shape == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        elif shape == "square":
            draw.rectangle((x - r * 0.85, y - r * 0.85, x + r * 0.85, y + r * 0.85), fill=fill)
        else:
            draw.polygon([(x, y - r), (x - r * 0.95, y + r * 0.75), (x + r * 0.95, y + r * 0.75)], fill=fill)
    return img


def write_captioned_shapes(folder: str | Path, count: int, seed: int = 0, size: int = 64) -> list[tuple[Path, str]]:
    """Write `count` pictures (PNG) with their captions beside them (picture.txt) into `folder`, the
    captions in turn so each appears about equally often; returns (picture, caption) pairs."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    combos = list(itertools.product((1, 2, 3), COLOURS, SHAPES))
    pairs = []
    for i in range(count):
        n, colour, shape = combos[i % len(combos)]
        path = out / f"shapes_{i:05d}.png"
        draw_shapes(n, colour, shape, rng, size).save(path)
        caption = caption_of(n, colour, shape)
        path.with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")
        pairs.append((path, caption))
    return pairs
