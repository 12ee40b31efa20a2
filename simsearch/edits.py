"""The edits a copy goes through: named, seeded edits for the copy-detection benchmark, and the
random views that self-supervised training pulls together.

Every function takes a PIL image and a numpy Generator and returns a new image; the same seed
gives the same result, pixel for pixel.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from simsearch.errors import ConfigError, literal

__all__ = [
    "ALL_EDITS",
    "AUGLY_EDITS",
    "EDITS",
    "REFRAMINGS",
    "apply_edit",
    "copies_in_turn",
    "expand_edits",
    "random_view",
    "reframe",
    "wide_view",
]

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


# ---------------------------------------------------------------- a second edit set, not ours
# The image augmentations of AugLy (facebookresearch/AugLy, the library behind the ISC2021 / DISC21
# copy-detection benchmark), taken as a specification and written here with Pillow: AugLy 1.0's image
# extras pin an older Pillow than this project needs. Strengths go beyond what `photos` trained on
# (borders up to 20% of a side, crops from anywhere of 40-100%, no overlays or screenshots).


def overlay_onto_screenshot(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The photo shown inside a phone screenshot: status bar, app bar, caption lines and buttons around it."""
    src = _rgb(img)
    w = max(src.width, 200)
    scale = w * rng.uniform(0.6, 0.8) / src.width
    shown = src.resize((max(1, round(src.width * scale)), max(1, round(src.height * scale))))
    height = round(shown.height * 1.9)
    shot = Image.new("RGB", (w, height), (250, 250, 250) if rng.random() < 0.5 else (24, 24, 28))
    draw = ImageDraw.Draw(shot)
    bar = tuple(int(v) for v in rng.integers(0, 256, 3))
    draw.rectangle((0, 0, w, round(height * 0.06)), fill=bar)
    draw.rectangle((0, round(height * 0.06), w, round(height * 0.14)), fill=(230, 230, 235))
    x, y = (w - shown.width) // 2, round(height * 0.18)
    shot.paste(shown, (x, y))
    font = ImageFont.load_default(size=max(8, w // 24))
    for line in range(3):
        words = " ".join(str(rng.choice(_WORDS)) for _ in range(3))
        draw.text((w // 12, y + shown.height + 8 + line * (w // 18)), words, font=font, fill=(110, 110, 110))
    for b in range(4):
        cx = round(w * (b + 1) / 5)
        draw.ellipse((cx - w // 30, height - w // 10, cx + w // 30, height - w // 30), fill=(150, 150, 160))
    return shot


def meme_format(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A caption band on top (a fifth to a third of the height) with a line of bold text, as a meme."""
    src = _rgb(img)
    band = round(src.height * rng.uniform(0.2, 0.35))
    out = Image.new("RGB", (src.width, src.height + band), (255, 255, 255))
    out.paste(src, (0, band))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(8, band // 3))
    words = " ".join(str(rng.choice(_WORDS)) for _ in range(2)).upper()
    draw.text((src.width // 20, band // 3), words, font=font, fill=(0, 0, 0))
    return out


def pad_canvas(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The photo somewhere on a plain canvas 1.5 to 2.5 times its size (AugLy pad, beyond our borders)."""
    src = _rgb(img)
    f = rng.uniform(1.5, 2.5)
    canvas = Image.new(
        "RGB", (round(src.width * f), round(src.height * f)), tuple(int(v) for v in rng.integers(0, 256, 3))
    )
    x = int(rng.integers(0, canvas.width - src.width + 1))
    y = int(rng.integers(0, canvas.height - src.height + 1))
    canvas.paste(src, (x, y))
    return canvas


def crop_corner(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Keep one corner: 40 to 70% of each side."""
    src = _rgb(img)
    w, h = src.size
    cw, ch = round(w * rng.uniform(0.4, 0.7)), round(h * rng.uniform(0.4, 0.7))
    x = 0 if rng.random() < 0.5 else w - cw
    y = 0 if rng.random() < 0.5 else h - ch
    return src.crop((x, y, x + cw, y + ch))


def perspective(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A perspective transform: each corner moved in or out by up to 20% of the side, the uncovered parts
    black (AugLy perspective_transform)."""
    src = _rgb(img)
    w, h = src.size
    d = rng.uniform(-0.2, 0.2, 8) * np.array([w, h] * 4)
    corners = [(d[0], d[1]), (w - d[2], d[3]), (w - d[4], h - d[5]), (d[6], h - d[7])]
    target = [(0, 0), (w, 0), (w, h), (0, h)]
    a = []
    for (x, y), (u, v) in zip(target, corners, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.array(a, float), np.array([c for pt in corners for c in pt], float))
    return src.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR)


def overlay_emoji(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A smiley drawn over a random place, 20 to 40% of the shorter side (AugLy overlay_emoji)."""
    out = _rgb(img).copy()
    draw = ImageDraw.Draw(out)
    r = round(min(out.size) * rng.uniform(0.1, 0.2))
    cx, cy = int(rng.integers(r, max(r + 1, out.width - r))), int(rng.integers(r, max(r + 1, out.height - r)))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(255, 210, 40), outline=(90, 60, 0), width=max(1, r // 12))
    for ex in (-1, 1):
        draw.ellipse(
            (cx + ex * r // 3 - r // 8, cy - r // 3 - r // 8, cx + ex * r // 3 + r // 8, cy - r // 3 + r // 8),
            fill=(60, 40, 0),
        )
    draw.arc((cx - r // 2, cy - r // 4, cx + r // 2, cy + r // 2), 20, 160, fill=(60, 40, 0), width=max(1, r // 10))
    return out


def overlay_text(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Several lines of text over the photo, covering up to a third of it (AugLy overlay_text)."""
    out = _rgb(img).copy()
    draw = ImageDraw.Draw(out)
    size = max(8, round(min(out.size) * rng.uniform(0.06, 0.12)))
    font = ImageFont.load_default(size=size)
    fill = tuple(int(v) for v in rng.integers(0, 256, 3))
    for line in range(int(rng.integers(2, 5))):
        words = " ".join(str(rng.choice(_WORDS)) for _ in range(3))
        draw.text(
            (int(rng.integers(0, max(1, out.width // 3))), round(out.height * 0.1) + line * size * 1.3),
            words,
            font=font,
            fill=fill,
        )
    return out


def pixelization(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Blocks: shrunk to 10 to 25% and blown up again without smoothing (AugLy pixelization)."""
    src = _rgb(img)
    f = rng.uniform(0.1, 0.25)
    small = src.resize((max(1, round(src.width * f)), max(1, round(src.height * f))), Image.Resampling.BILINEAR)
    return small.resize(src.size, Image.Resampling.NEAREST)


def aspect_ratio(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Stretched to another aspect ratio: one side scaled by 0.5 to 0.75 or 1.33 to 2 (AugLy change_aspect_ratio)."""
    src = _rgb(img)
    f = rng.uniform(0.5, 0.75) if rng.random() < 0.5 else rng.uniform(1.33, 2.0)
    return src.resize((max(1, round(src.width * f)), src.height), Image.Resampling.BILINEAR)


def opacity_over(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Faded: blended 40 to 70% towards a plain colour (AugLy opacity on a background)."""
    src = _rgb(img)
    plain = Image.new("RGB", src.size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    return Image.blend(src, plain, float(rng.uniform(0.4, 0.7)))


AUGLY_EDITS: dict[str, Edit] = {
    "screenshot": overlay_onto_screenshot,
    "meme": meme_format,
    "pad_canvas": pad_canvas,
    "crop_corner": crop_corner,
    "perspective": perspective,
    "emoji": overlay_emoji,
    "overlay_text": overlay_text,
    "pixelize": pixelization,
    "aspect_ratio": aspect_ratio,
    "opacity": opacity_over,
}
ALL_EDITS: dict[str, Edit] = {**EDITS, **AUGLY_EDITS}


def expand_edits(spec: str) -> list[str]:
    """Edit names from a comma-separated list; "all" is ours (EDITS), "augly" the AugLy set. Raises ValueError."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if part == "all":
            names += list(EDITS)
        elif part == "augly":
            names += list(AUGLY_EDITS)
        elif part in ALL_EDITS:
            names.append(part)
        elif part:
            raise ConfigError(
                f"{{fields}}: unknown edit {literal(repr(part))}; known: all, augly, {', '.join(ALL_EDITS)}", ["edits"]
            )
    return list(dict.fromkeys(names))


def apply_edit(img: Image.Image, name: str, rng: np.random.Generator) -> Image.Image:
    """The named edit of `img` (an RGB copy), drawn with `rng` (ours or the AugLy set)."""
    try:
        edit = ALL_EDITS[name]
    except KeyError:
        raise ValueError(f"unknown edit {name!r}; known: {', '.join(ALL_EDITS)}") from None
    return _rgb(edit(_rgb(img), rng))


def copies_in_turn(pictures: Sequence[Image.Image], names: Sequence[str], seed: int) -> list[Image.Image]:
    """One edited copy of each picture, the named edits in turn: picture i gets names[i % len(names)], drawn
    with a generator seeded (seed, i)."""
    return [apply_edit(p, names[i % len(names)], np.random.default_rng([seed, i])) for i, p in enumerate(pictures)]


def self_probe_copy(img: Image.Image, picture: int, copy: int, seed: int = 0) -> Image.Image:
    """Copy number `copy` of a gallery's picture number `picture`, for the gallery to probe itself with as a
    copies encoder is queried: our edit types (EDITS) in turn, from (picture + copy), drawn with a generator
    seeded (seed + copy, picture). Ours rather than all 21: probes of our 11 state the FPIR of queries of
    either set within 2x, those of all 21 go up to 2.1x lenient for queries of ours
    (bench/copies_self_probes.py, BENCHMARKS.md section 17)."""
    names = list(EDITS)
    return apply_edit(img, names[(picture + copy) % len(names)], np.random.default_rng([seed + copy, picture]))


def self_probe_copies_each(pictures: int, budget: int) -> int:
    """How many edited copies of each of `pictures` a gallery probes itself with for a budget of `budget`
    copies: at least 1, at most one of each of our edit types."""
    return max(1, min(len(EDITS), -(-budget // max(pictures, 1))))


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


# --- re-framings: the same photo as other cameras, apps and people frame it (faces: issue 25) ---


def reframe_pad(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The photo at a random place on a plain canvas twice its size (grey, black or white)."""
    img = _rgb(img)
    w, h = img.size
    fill = ((128, 128, 128), (0, 0, 0), (255, 255, 255))[int(rng.integers(3))]
    canvas = Image.new("RGB", (2 * w, 2 * h), fill)
    canvas.paste(img, (int(rng.integers(0, w + 1)), int(rng.integers(0, h + 1))))
    return canvas


def reframe_shift(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The same frame moved by 15-30% of each side in a random direction; the uncovered part is black."""
    img = _rgb(img)
    w, h = img.size
    dx = round(w * float(rng.uniform(0.15, 0.3)) * (1 if rng.random() < 0.5 else -1))
    dy = round(h * float(rng.uniform(0.15, 0.3)) * (1 if rng.random() < 0.5 else -1))
    return img.crop((dx, dy, dx + w, dy + h))


def reframe_scale(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The photo at 0.5 to 2 times its size (log-uniform): fewer or more pixels on the face."""
    img = _rgb(img)
    f = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    return img.resize((max(1, round(img.size[0] * f)), max(1, round(img.size[1] * f))), Image.Resampling.BICUBIC)


def reframe_tight(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A tight crop: the middle 50-60% of each side (on a portrait, the face with little around it),
    a little off centre."""
    img = _rgb(img)
    w, h = img.size
    keep = float(rng.uniform(0.5, 0.6))
    cw, ch = round(w * keep), round(h * keep)
    left = (w - cw) // 2 + round(w * float(rng.uniform(-0.03, 0.03)))
    top = (h - ch) // 2 + round(h * float(rng.uniform(-0.03, 0.03)))
    return img.crop((left, top, left + cw, top + ch))


REFRAMINGS = {"pad": reframe_pad, "shift": reframe_shift, "scale": reframe_scale, "tight": reframe_tight}


def reframe(img: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """The photo re-framed as `kind` says (pad, shift, scale, tight; 'mixed': one of them at random)."""
    if kind == "mixed":
        kind = sorted(REFRAMINGS)[int(rng.integers(len(REFRAMINGS)))]
    return REFRAMINGS[kind](img, rng)


# --- wide training views: what people do to photos beyond crops and borders (issue 25) ---
# Written for training, apart from the AugLy-specified set above that measures the encoder: the
# same families of edit (canvases, corner crops, screenshots, fading, overlays, warps), with their
# own drawing and ranges, so an evaluation never scores the exact pictures training produced.


def _random_fill(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A background: a plain colour, a two-colour gradient or coarse noise."""
    w, h = size
    kind = rng.random()
    if kind < 0.5:
        return Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3)))
    if kind < 0.8:
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, h if rng.random() < 0.5 else w)[:, None]
        ramp = (a * (1 - t) + b * t).astype(np.uint8)
        img = Image.fromarray(ramp[:, None, :].repeat(8, 1) if len(t) == h else ramp[None, :, :].repeat(8, 0))
        return img.resize(size, Image.Resampling.BILINEAR)
    coarse = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize(size, Image.Resampling.BICUBIC)


def view_canvas(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The photo, shrunk to 30-85% of a canvas's side, anywhere on a canvas of any background."""
    img = _rgb(img)
    share = float(rng.uniform(0.3, 0.85))
    cw = max(8, round(img.size[0] / share * rng.uniform(0.8, 1.25)))
    ch = max(8, round(img.size[1] / share * rng.uniform(0.8, 1.25)))
    canvas = _random_fill(rng, (cw, ch))
    pw, ph = min(cw, img.size[0]), min(ch, img.size[1])
    canvas.paste(img.resize((pw, ph)), (int(rng.integers(0, cw - pw + 1)), int(rng.integers(0, ch - ph + 1))))
    return canvas


def view_corner(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A crop of 35-75% of each side held against a corner or an edge of the photo."""
    w, h = img.size
    cw, ch = max(1, round(w * rng.uniform(0.35, 0.75))), max(1, round(h * rng.uniform(0.35, 0.75)))
    x = (0, (w - cw) // 2, w - cw)[int(rng.integers(3))]
    y = (0, (h - ch) // 2, h - ch)[int(rng.integers(3))]
    if x == (w - cw) // 2 and y == (h - ch) // 2:
        x = 0
    return img.crop((x, y, x + cw, y + ch))


def view_window(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The photo inside an app or web page: bars and panels of flat colour, lines of text, buttons."""
    img = _rgb(img)
    w, h = img.size
    top, bottom = round(h * rng.uniform(0.05, 0.35)), round(h * rng.uniform(0.05, 0.6))
    side = round(w * rng.uniform(0.0, 0.3))
    page = (
        _random_fill(rng, (w + 2 * side, h + top + bottom))
        if rng.random() < 0.3
        else Image.new("RGB", (w + 2 * side, h + top + bottom), tuple(int(v) for v in rng.integers(200, 256, 3)))
    )
    draw = ImageDraw.Draw(page)
    bar = tuple(int(v) for v in rng.integers(0, 256, 3))
    draw.rectangle([0, 0, page.size[0], max(2, top // 2)], fill=bar)
    for _ in range(int(rng.integers(1, 6))):
        y = int(rng.integers(top + h, page.size[1])) if bottom > 4 else int(rng.integers(0, max(1, top)))
        x0 = int(rng.integers(0, max(1, page.size[0] // 3)))
        length = int(rng.integers(page.size[0] // 5, page.size[0]))
        draw.rectangle([x0, y, x0 + length, y + max(2, h // 40)], fill=tuple(int(v) for v in rng.integers(0, 160, 3)))
    page.paste(img, (side, top))
    return page


def view_fade(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Faded 20-65% towards a plain colour or a background (a photo under a translucent layer)."""
    img = _rgb(img)
    layer = _random_fill(rng, img.size)
    return Image.blend(img, layer, float(rng.uniform(0.2, 0.65)))


def view_shapes(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Stickers: 1-4 opaque shapes of any colour, each up to a quarter of the shorter side."""
    out = _rgb(img).copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    for _ in range(int(rng.integers(1, 5))):
        r = max(2, round(min(w, h) * rng.uniform(0.05, 0.25) / 2))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        box = [cx - r, cy - r, cx + r, cy + r]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return out


def view_stretch(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A changed aspect ratio: one side scaled by 0.5-2 (log-uniform)."""
    w, h = img.size
    f = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    return img.resize((max(1, round(w * f)), h) if rng.random() < 0.5 else (w, max(1, round(h * f))))


def view_blocks(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Pixelated: shrunk to 8-30% and enlarged back without smoothing."""
    w, h = img.size
    f = float(rng.uniform(0.08, 0.3))
    small = img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR)
    return small.resize((w, h), Image.Resampling.NEAREST)


def view_skew(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A perspective warp: each corner moved by up to 15% of the sides."""
    w, h = img.size
    d = rng.uniform(-0.15, 0.15, 8) * np.array([w, h] * 4)
    src = np.array([0, 0, w, 0, w, h, 0, h], dtype=float) + d
    dst = [(0, 0), (w, 0), (w, h), (0, h)]
    a, b = [], []
    for (x, y), (u, v) in zip(dst, src.reshape(4, 2), strict=True):
        a += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        b += [u, v]
    coeffs = np.linalg.lstsq(np.array(a), np.array(b), rcond=None)[0]
    return _rgb(img).transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR)


def wide_view(img: Image.Image, rng: np.random.Generator, gray: float = 0.5) -> Image.Image:
    """A training view with the edits people make to photos beyond crops and borders: a corner crop
    (about one view in seven) before random_view's edits, or, after them, the photo on a canvas or in
    a page (about one in seven and one in ten); then, each with its own chance, fading, stickers, a
    changed aspect ratio, pixelation or a warp."""
    out = _rgb(img)
    frame = rng.random()
    if frame < 0.15:
        out = view_corner(out, rng)
    out = random_view(out, rng, gray)
    if 0.15 <= frame < 0.3:
        out = view_canvas(out, rng)
    elif 0.3 <= frame < 0.4:
        out = view_window(out, rng)
    if rng.random() < 0.15:
        out = view_fade(out, rng)
    if rng.random() < 0.15:
        out = view_shapes(out, rng)
    if rng.random() < 0.1:
        out = view_stretch(out, rng)
    if rng.random() < 0.05:
        out = view_blocks(out, rng)
    if rng.random() < 0.1:
        out = view_skew(out, rng)
    return out
