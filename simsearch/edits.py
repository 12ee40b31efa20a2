"""The edits a copy goes through: named, seeded edits for the copy-detection benchmark, and the
random views that self-supervised training pulls together.

Every function takes a PIL image and a numpy Generator and returns a new image; the same seed
gives the same result, pixel for pixel.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

__all__ = ["EDITS", "apply_edit", "random_view"]

Edit = Callable[[Image.Image, np.random.Generator], Image.Image]

_WORDS = ("SALE", "copyright", "@user", "2026", "sample", "NEW", "repost", "watermark", "look!", "#tbt")


def _rgb(img: Image.Image) -> Image.Image:
    return img if img.mode == "RGB" else img.convert("RGB")


def crop(img: Image.Image, rng: np.random.Generator, low: float = 0.5, high: float = 0.9) -> Image.Image:
    """Keep a random window of `low`..`high` of each side (an independent share per side)."""
    w, h = img.size
    cw = max(1, round(w * rng.uniform(low, high)))
    ch = max(1, round(h * rng.uniform(low, high)))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((x, y, x + cw, y + ch))


def resize(img: Image.Image, rng: np.random.Generator, factor: float = 0.3) -> Image.Image:
    """Shrink to `factor` of each side (a thumbnail)."""
    w, h = img.size
    return img.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.BILINEAR)


def jpeg(img: Image.Image, rng: np.random.Generator, quality: int = 20) -> Image.Image:
    """Recompress as a JPEG of the given quality."""
    buf = io.BytesIO()
    _rgb(img).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def rotate(img: Image.Image, rng: np.random.Generator, degrees: float = 10.0) -> Image.Image:
    """Turn by `degrees` in a random direction, filling the corners with black (canvas kept)."""
    sign = 1 if rng.random() < 0.5 else -1
    return _rgb(img).rotate(sign * degrees, resample=Image.Resampling.BILINEAR, expand=False)


def flip(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Mirror left to right."""
    return ImageOps.mirror(img)


def color(img: Image.Image, rng: np.random.Generator, strength: float = 0.4) -> Image.Image:
    """Change brightness, contrast and saturation each by a random factor in 1 ± strength
    (at least 0.15 away from 1, so the change is always visible)."""

    def factor() -> float:
        return 1 + float(rng.choice([-1, 1])) * rng.uniform(0.15, strength)

    out = ImageEnhance.Brightness(_rgb(img)).enhance(factor())
    out = ImageEnhance.Contrast(out).enhance(factor())
    return ImageEnhance.Color(out).enhance(factor())


def grayscale(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Drop the colour (kept as three equal channels)."""
    return ImageOps.grayscale(img).convert("RGB")


def blur(img: Image.Image, rng: np.random.Generator, low: float = 1.0, high: float = 2.5) -> Image.Image:
    """Gaussian blur, radius in `low`..`high` pixels per 256 pixels of the shorter side."""
    radius = rng.uniform(low, high) * min(img.size) / 256
    return img.filter(ImageFilter.GaussianBlur(radius=max(radius, 0.6)))


def text(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Stamp a word or two across the image in a random colour, size and place."""
    out = _rgb(img).copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    size = max(8, int(min(w, h) * rng.uniform(0.08, 0.18)))
    font = ImageFont.load_default(size=size)
    words = " ".join(str(rng.choice(_WORDS)) for _ in range(int(rng.integers(1, 3))))
    left, top, right, bottom = (int(v) for v in draw.textbbox((0, 0), words, font=font))
    x = int(rng.integers(0, max(1, w - (right - left))))
    y = int(rng.integers(0, max(1, h - (bottom - top))))
    fill = tuple(int(v) for v in rng.integers(0, 256, 3))
    stroke = (0, 0, 0) if sum(fill) > 380 else (255, 255, 255)
    draw.text((x, y), words, font=font, fill=fill, stroke_width=max(1, size // 12), stroke_fill=stroke)
    return out


def border(img: Image.Image, rng: np.random.Generator, low: float = 0.05, high: float = 0.2) -> Image.Image:
    """Pad with a plain border of `low`..`high` of the shorter side, in a random colour."""
    pad = max(1, round(min(img.size) * rng.uniform(low, high)))
    fill = tuple(int(v) for v in rng.integers(0, 256, 3))
    return ImageOps.expand(_rgb(img), border=pad, fill=fill)


def combined(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Two different single edits, one after the other."""
    names = [n for n in EDITS if n != "combined"]
    first, second = rng.choice(len(names), size=2, replace=False)
    return EDITS[names[int(second)]](EDITS[names[int(first)]](img, rng), rng)


# The copy-detection benchmark's edit types, by name.
EDITS: dict[str, Edit] = {
    "crop": crop,
    "resize": resize,
    "jpeg": jpeg,
    "rotate": rotate,
    "flip": flip,
    "color": color,
    "grayscale": grayscale,
    "blur": blur,
    "text": text,
    "border": border,
    "combined": combined,
}


def apply_edit(img: Image.Image, name: str, rng: np.random.Generator) -> Image.Image:
    """The named edit of `img` (an RGB copy), drawn with `rng`."""
    try:
        edit = EDITS[name]
    except KeyError:
        raise ValueError(f"unknown edit {name!r}; known: {', '.join(EDITS)}") from None
    return _rgb(edit(_rgb(img), rng))


def random_view(img: Image.Image, rng: np.random.Generator, gray: float = 0.5) -> Image.Image:
    """A random edited view for self-supervised training: each edit of the benchmark's kinds with
    its own chance, at milder and harsher strengths than the benchmark uses, so that the encoder
    learns to see through them rather than to memorise one setting. `gray` is the chance of
    dropping the colour: colour is so telling that at 0.2 (SimCLR's setting) an encoder leans on
    it and loses most grayscale copies."""
    out = _rgb(img)
    if rng.random() < 0.8:
        out = crop(out, rng, 0.4, 1.0)
    if rng.random() < 0.5:
        out = flip(out, rng)
    if rng.random() < 0.3:
        out = rotate(out, rng, float(rng.uniform(2, 15)))
    if rng.random() < 0.2:
        out = border(out, rng, 0.02, 0.25)
    if rng.random() < 0.6:
        out = color(out, rng, 0.5)
    if rng.random() < gray:
        out = grayscale(out, rng)
    if rng.random() < 0.25:
        out = text(out, rng)
    if rng.random() < 0.25:
        out = blur(out, rng, 0.5, 3.0)
    if rng.random() < 0.3:
        out = resize(out, rng, float(rng.uniform(0.2, 0.6)))
    if rng.random() < 0.3:
        out = jpeg(out, rng, int(rng.integers(10, 60)))
    return out
