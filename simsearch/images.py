"""Image intake: find image files in a folder, decode them safely, and resize them for an encoder."""

from __future__ import annotations

import contextlib
import io
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from simsearch.errors import DataError, ImageError
from simsearch.files import NotReadable, read_regular
from simsearch.preprocess import Ink, Preprocess

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageFile",
    "Ink",
    "PixelBudget",
    "Scan",
    "Skipped",
    "center_crop",
    "collect_images",
    "colourfulness",
    "decode_image",
    "face_arrays",
    "fit_ink",
    "frame",
    "gallery_path",
    "image_pixels",
    "keep_side",
    "load_array",
    "read_file",
    "scan_folder",
    "to_array",
]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
    | {".heic", ".heif", ".avif"}
)


def gallery_path(path: str | os.PathLike[str]) -> str:
    """The one spelling of a file's path in an index: its folder's real path (links and `..` resolved, so
    `g/a.png`, `./g/a.png` and `glink/a.png` are one entry) and its own name (a file that is itself a link
    stays the link, the name the user gave it)."""
    full = os.path.abspath(os.fspath(path))
    return os.path.join(os.path.realpath(os.path.dirname(full)), os.path.basename(full))


def _heif_opener() -> bool:
    """HEIC/HEIF (iPhones' photos) through the pillow-heif plugin, a dependency; False where it is missing."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


# Formats a plugin or a build option provides: the file suffixes, and why they cannot be read without it.
_HEIF = _heif_opener()
_MISSING_FORMATS: dict[str, str] = {}
if not _HEIF:
    _MISSING_FORMATS.update(
        dict.fromkeys((".heic", ".heif"), "HEIC/HEIF needs the pillow-heif package (pip install pillow-heif)")
    )
if not features.check("avif"):
    _MISSING_FORMATS[".avif"] = "AVIF needs Pillow 11.3 or later built with libavif (pip install -U pillow)"
# Pillow lays big images out in blocks of PILLOW_BLOCK_SIZE (16 MB by default). glibc serves blocks
# that size from per-thread heaps it keeps after they are freed, so decoding big images in many
# threads held gigabytes (7 GB after 16 decodes of 64 MP, two at a time). Blocks over 32 MB are always
# mapped and unmapped, so memory follows what is being decoded (1 GB for the same run). A user's own
# PILLOW_BLOCK_SIZE wins.
if "PILLOW_BLOCK_SIZE" not in os.environ:
    Image.core.set_block_size(64 * 2**20)

NOT_AN_IMAGE = "not an image file of a format simsearch reads (JPEG, PNG, GIF, BMP, TIFF, WebP, PPM)"

# 64 megapixels (8000 x 8000) is larger than any phone photo and far below a decompression bomb.
DEFAULT_MAX_PIXELS = 64_000_000


@dataclass(frozen=True)
class ImageFile:
    """An image file found by a scan; `label` is its first-level subfolder (None at the top)."""

    path: Path
    label: str | None


@dataclass(frozen=True)
class Skipped:
    """A file (or folder) left out, with the reason a person can act on."""

    path: str
    reason: str


@dataclass
class Scan:
    """What a folder scan found: the image files in a stable order, and what it had to skip."""

    files: list[ImageFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def scan_folder(root: str | os.PathLike[str]) -> Scan:
    """Recursively list the image files under `root` (sorted, hidden entries ignored).

    Symbolic links to folders are followed once: a folder already visited (a symlink loop,
    or two links to one place) is not entered again. Unreadable folders are reported as skipped.
    """
    root_path = Path(root)
    if not root_path.exists():
        raise DataError(f"{root}: no such file or folder")
    if not root_path.is_dir():
        raise DataError(f"{root}: not a folder")
    scan = Scan()
    seen: set[tuple[int, int]] = set()

    def on_error(err: OSError) -> None:
        scan.skipped.append(Skipped(str(err.filename), f"cannot read folder: {err.strerror}"))

    for dirpath, dirnames, filenames in _walk(str(root_path), on_error):
        try:
            st = os.stat(dirpath)
        except OSError as err:
            scan.skipped.append(Skipped(dirpath, f"cannot read folder: {err.strerror}"))
            dirnames[:] = []
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            scan.skipped.append(Skipped(dirpath, "folder already visited (symbolic link loop)"))
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        rel = Path(dirpath).relative_to(root_path)
        label = rel.parts[0] if rel.parts else None
        for name in sorted(filenames):
            suffix = Path(name).suffix.lower()
            if _is_hidden(name) or suffix not in IMAGE_EXTENSIONS:
                continue
            path = Path(dirpath) / name
            if suffix in _MISSING_FORMATS:
                scan.skipped.append(Skipped(str(path), _MISSING_FORMATS[suffix]))
                continue
            if not _utf8(str(path)):  # the catalog, JSON and the page all need a text path
                scan.skipped.append(Skipped(str(path), "file name is not valid UTF-8 (rename the file or folder)"))
                continue
            scan.files.append(ImageFile(path, label))
    return scan


def _walk(top: str, onerror: Callable[[OSError], None]) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk(top, followlinks=True) top-down, with a stack instead of recursion: a folder 1,000 levels deep
    is walked like any other (Python 3.11's os.walk recurses, and raised RecursionError there). The caller
    may prune or reorder `dirnames` before the walk goes into them, as with os.walk."""
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as err:
            onerror(err)
            continue
        dirs: list[str] = []
        files: list[str] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows links, as followlinks=True
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(entry.name)
        yield folder, dirs, files
        stack.extend(os.path.join(folder, d) for d in reversed(dirs))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def collect_images(paths: list[str]) -> Scan:
    """Expand query arguments: image files stay as they are, folders are scanned."""
    scan = Scan()
    for p in paths:
        path = Path(p)
        if path.is_dir():
            sub = scan_folder(path)
            scan.files.extend(sub.files)
            scan.skipped.extend(sub.skipped)
        elif path.exists():
            scan.files.append(ImageFile(path, None))
        else:
            raise DataError(f"{p}: no such file or folder")
    return scan


def _to_8bit(img: Image.Image) -> Image.Image:
    """Map 16-bit, 32-bit integer and float images onto 0..255 by their value range (16-bit: its full range).

    Works a band of rows at a time in float32, so memory beyond the image itself is one byte a pixel
    plus a band, whatever the image's size; NaN maps to 0 and infinities are left out of the range."""
    src = np.asarray(img)
    if img.mode.startswith("I;16"):
        lo, scale = 0.0, 1.0 / 257.0
    else:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN image has no range: said below
            lo, hi = float(np.nanmin(src)), float(np.nanmax(src))
            if not (math.isfinite(lo) and math.isfinite(hi)):
                finite = src[np.isfinite(src)] if src.dtype.kind == "f" else src
                lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = np.empty(src.shape, dtype=np.uint8)
    band = max(1, (1 << 20) // max(1, src.shape[1] if src.ndim > 1 else 1))
    with np.errstate(all="ignore"):
        for r in range(0, src.shape[0], band):
            chunk = src[r : r + band].astype(np.float32)
            chunk -= lo
            chunk *= scale
            np.nan_to_num(chunk, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
            np.clip(chunk, 0, 255, out=chunk)
            out[r : r + band] = chunk
    return Image.fromarray(out)


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite a transparent image onto white, as a viewer would show it."""
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


# The largest file read as an image: a 100-megapixel 16-bit TIFF is about 600 MB.
MAX_IMAGE_BYTES = 1 << 30


def _sniff_image(f: BinaryIO) -> None:
    """Refuse a file whose head Pillow does not know as an image, before its body is read."""
    if not f.read(1):
        raise NotReadable("empty file (0 bytes)")
    f.seek(0)
    try:  # Pillow reads only the header it needs to know the format
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f):
                pass
    except UnidentifiedImageError:
        raise NotReadable(NOT_AN_IMAGE) from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        pass  # decode_image says what is wrong with it


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a regular image file, or ImageError with a reason a person can act on. Only
    regular files are read, and a file whose header is not an image's is refused unread."""
    name = str(path)
    try:
        data = read_regular(path, MAX_IMAGE_BYTES, sniff=_sniff_image)
    except NotReadable as err:
        raise ImageError(name, str(err)) from None
    except PermissionError:
        raise ImageError(name, "permission denied") from None
    except FileNotFoundError:
        raise ImageError(name, "no such file (deleted or a broken link)") from None
    except IsADirectoryError:
        raise ImageError(name, "is a folder, not an image") from None
    except OSError as err:
        raise ImageError(name, f"cannot read: {err.strerror}") from None
    if not data:
        raise ImageError(name, "empty file (0 bytes)")
    return data


@contextlib.contextmanager
def _pillow_errors(name: str, doing: str) -> Iterator[None]:
    """Pillow's ways of failing on a file, as one ImageError with a reason a person can act on (`doing`
    names the step: "cannot decode", "cannot read the header"); our own pixel cap replaces its bomb warning."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(name, "too many pixels (decompression bomb)") from None
    except UnidentifiedImageError:
        raise ImageError(name, NOT_AN_IMAGE) from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as err:
        reason = str(err) or type(err).__name__
        if "truncated" in reason.lower():
            reason = "truncated or damaged image data"
        raise ImageError(name, f"{doing}: {reason}") from None


# modes whose samples are 2 or 4 bytes: decoded, then mapped to 8 bits beside the source (see _to_8bit), they
# take about twice the memory a pixel that PixelBudget's "a few bytes a pixel" counts on
_WIDE_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N", "I;32", "F;32")


def image_pixels(data: bytes) -> int:
    """The pixels an image costs to decode, from its header alone (nothing is decoded): width x height,
    counted twice for 16-bit, 32-bit and float images (their real bytes). Raises ImageError."""
    with _pillow_errors("<bytes>", "cannot read the header"), Image.open(io.BytesIO(data)) as opened:
        width, height = opened.size
        wide = opened.mode in _WIDE_MODES or opened.mode.startswith("I;16")
    return int(width) * int(height) * (2 if wide else 1)


class PixelBudget:
    """Bounds the pixels being decoded at once across threads, so memory is bounded by the budget
    (a few bytes a pixel) whatever the concurrency. An image larger than the whole budget waits until
    it is alone. `hold` raises TimeoutError when the budget does not free up in time."""

    def __init__(self, pixels: int) -> None:
        if pixels < 1:
            raise ValueError("the pixel budget must be at least 1")
        self.pixels = pixels
        self._free = pixels
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int, timeout: float | None = None) -> Iterator[None]:
        need = max(1, min(int(pixels), self.pixels))
        with self._cond:
            if not self._cond.wait_for(lambda: self._free >= need, timeout):
                raise TimeoutError(f"no room to decode {pixels:,} pixels in time")
            self._free -= need
        try:
            yield
        finally:
            with self._cond:
                self._free += need
                self._cond.notify_all()

    @property
    def in_use(self) -> int:
        with self._cond:
            return self.pixels - self._free


def decode_image(
    source: str | os.PathLike[str] | bytes,
    channels: int = 3,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_side: float | None = None,
) -> Image.Image:
    """Decode an image file (or its bytes) into an upright "L" (channels=1) or "RGB" image.

    Applies EXIF orientation, takes the first frame of an animation, flattens transparency onto
    white, and maps 16-bit and float images by their range. With `min_side`, a JPEG is decoded at
    the smallest of 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling) whose shorter side is still at
    least `min_side` pixels: what a caller that shrinks to that size anyway needs, at a fraction of
    the work (a 12-megapixel photo for a 224-pixel encoder: about 6x less). Raises ImageError.
    """
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    data = source if isinstance(source, bytes) else read_file(source)
    if not data:
        raise ImageError(name, "empty file (0 bytes)")
    with _pillow_errors(name, "cannot decode"), Image.open(io.BytesIO(data)) as opened:
        width, height = opened.size
        if width * height > max_pixels:
            raise ImageError(
                name, f"{width}x{height} pixels is over the limit of {max_pixels:,} (possible decompression bomb)"
            )
        opened.seek(0)
        if min_side is not None and opened.format in ("JPEG", "MPO") and min(width, height) > 2 * min_side:
            scale = min_side / min(width, height)
            opened.draft("L" if channels == 1 else "RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        opened.load()
        upright: Image.Image = ImageOps.exif_transpose(opened) or opened
        return _normalize_mode(upright, channels)


def _normalize_mode(img: Image.Image, channels: int) -> Image.Image:
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _to_8bit(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = _flatten_alpha(img)
    if channels == 1:
        return img if img.mode == "L" else img.convert("L")
    if channels == 3:
        return img if img.mode == "RGB" else img.convert("RGB")
    raise ValueError(f"channels must be 1 or 3, not {channels}")


def center_crop(img: Image.Image, crop: float) -> Image.Image:
    """The centred crop keeping `crop` (0 < crop <= 1) of each side; 1 keeps the whole image."""
    if not 0.0 < crop <= 1.0:
        raise ValueError(f"crop must be in (0, 1], not {crop}")
    if crop >= 1.0:
        return img
    w, h = img.size
    cw, ch = max(1, round(w * crop)), max(1, round(h * crop))
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch))


INK_MARGIN = 0.08  # share of the ink box's longer side left blank around it, so jitter keeps strokes inside
_INK_LEVEL = 0.5  # a pixel is ink above this share of the way from the paper's tone to the darkest stroke
_INK_TAIL = 0.002  # the ink box leaves out this share of ink pixels at each side: stray specks, not strokes


def _sorted_value(cumulative: np.ndarray, position: float) -> float:
    """The value at fractional `position` of the sorted values whose histogram has these cumulative
    counts, interpolated linearly between neighbours (numpy's default quantile), without sorting."""
    below = int(position)
    low = float(np.searchsorted(cumulative, below, side="right"))
    if position == below:
        return low
    high = float(np.searchsorted(cumulative, below + 1, side="right"))
    return low + (position - below) * (high - low)


# the largest side of the square fit_ink frames a drawing in (it is shrunk to the encoder's size next)
_MAX_CANVAS = 4096


def fit_ink(img: Image.Image, ink: Ink) -> Image.Image:
    """The square around the strokes of a one-channel ("L") drawing, centred on them.

    The box spans the ink pixels (all but the farthest 0.2% on each side) plus a margin, on the
    longer side of the strokes, so a character drawn small, large or off-centre fills the
    encoder's input the same way and keeps its aspect ratio; what lies outside the image is
    paper. A page with no contrast (blank) is returned as it is. Counts, not sorts: the paper's
    tone is the median of the histogram and the box comes from the ink per row and column.
    """
    arr = np.asarray(img)
    levels = np.cumsum(img.histogram()[:256])
    n = int(levels[-1])
    # "strength" = how far a pixel is from white (dark ink) or from black (light ink)
    median = (_sorted_value(levels, (n - 1) // 2) + _sorted_value(levels, n // 2)) / 2
    if ink is Ink.DARK:
        paper, darkest = 255.0 - median, 255.0 - float(np.searchsorted(levels, 0, side="right"))
    else:
        paper, darkest = median, float(np.searchsorted(levels, n - 1, side="right"))
    if darkest - paper < 16:  # nothing stands out from the paper: there is no drawing to frame
        return img
    level = paper + _INK_LEVEL * (darkest - paper)
    mask = arr < 255.0 - level if ink is Ink.DARK else arr > level
    rows, cols = np.cumsum(mask.sum(1)), np.cumsum(mask.sum(0))
    count = int(rows[-1])
    last = (count - 1) * (1 - _INK_TAIL)
    top, bottom = _sorted_value(rows, (count - 1) * _INK_TAIL), _sorted_value(rows, last)
    left, right = _sorted_value(cols, (count - 1) * _INK_TAIL), _sorted_value(cols, last)
    side = max(bottom - top + 1, right - left + 1, 0.05 * max(img.size), 2.0) * (1 + 2 * INK_MARGIN)
    cy, cx = (top + bottom + 1) / 2, (left + right + 1) / 2
    box = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
    if side > _MAX_CANVAS:  # a picture thousands of times longer than wide: frame a shrunk copy, never a huge canvas
        scale = _MAX_CANVAS / side
        img = img.resize((max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))), Image.Resampling.BOX)
        box = tuple(round(v * scale) for v in box)  # type: ignore[assignment]
    framed = Image.new("L", (box[2] - box[0], box[3] - box[1]), round(255.0 - paper if ink is Ink.DARK else paper))
    inside = (max(0, box[0]), max(0, box[1]), min(img.size[0], box[2]), min(img.size[1], box[3]))
    framed.paste(img.crop(inside), (inside[0] - box[0], inside[1] - box[1]))
    return framed


def colourfulness(path: str | os.PathLike[str]) -> float | None:
    """Mean chroma of a picture (max - min of its R, G, B values, in grey levels, over a 64-pixel
    thumbnail): about 0 for grey drawings and scans, tens for colour photos. None if it cannot be read."""
    try:
        img = decode_image(path, channels=3, min_side=64)
    except ImageError:
        return None
    img.thumbnail((64, 64))
    rgb = np.asarray(img, dtype=np.int16)
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean())


def keep_side(size: int, crop: float = 1.0, ink: Ink | None = None, face: bool = False) -> float:
    """The shorter side an image may be shrunk to, cheaply, before framing: twice what the crop
    needs (a drawing keeps 16 times, as its strokes may fill only a part of the page; a photo whose
    face is to be found keeps 1,024 pixels, so that the faces of a group photo stay findable)."""
    if face:
        return max(1024.0, 16 * size)
    side = size / crop
    return 16 * side if ink is not None else 2 * side


def _pre_shrink(img: Image.Image, keep: float) -> tuple[Image.Image, int]:
    """A cheap integer pre-shrink (box filter) that keeps the shorter side at least `keep`, with its factor."""
    if img.size[0] > 2 * keep and img.size[1] > 2 * keep:
        factor = max(1, int(min(img.size) // keep))
        return img.reduce(factor), factor
    return img, 1


def _resized(img: Image.Image, size: int) -> np.ndarray:
    resized = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    arr = np.asarray(resized, dtype=np.uint8)
    return arr[None, :, :] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def frame(
    img: Image.Image, size: int, crop: float = 1.0, ink: Ink | None = None, face: bool = False, align: str = "eyes"
) -> np.ndarray:
    """Keep the centred `crop` of each side (or, with `ink`, the square around a drawing's
    strokes: fit_ink; or, with `face`, the largest face, levelled: simsearch.faces), resize to
    size x size (squashed) and return (C, size, size) uint8. The image must already be in its
    final mode ("L" or "RGB"); to_array does that first. ImageError when `face` finds none."""
    if face:
        return face_arrays(img, size, align=align)[0][1]
    # a cheap integer pre-shrink keeps big photos fast; the same for every caller
    img, _ = _pre_shrink(img, keep_side(size, crop, ink))
    return _resized(fit_ink(img, ink) if ink is not None else center_crop(img, crop), size)


def face_arrays(
    img: Image.Image, size: int, every: bool = False, name: str = "<image>", align: str = "eyes"
) -> list[tuple[Any, np.ndarray]]:
    """The largest face of a photo (or, with `every`, each face, largest first) as an encoder input:
    (simsearch.faces.Face with its box in the photo's pixels, (C, size, size) uint8). ImageError
    (simsearch.faces.NO_FACE) when there is none."""
    from simsearch.faces import Face, FaceChoice, face_crops

    small, factor = _pre_shrink(img, keep_side(size, face=True))
    choice = FaceChoice.ALL if every else FaceChoice.LARGEST
    if align == "landmarks":
        from simsearch.faces_dlib import landmark_crops

        found = landmark_crops(small, choice, name)
    else:
        found = face_crops(small, choice, name)
    return [
        (Face(tuple(v * factor for v in f.box), f.tilt, f.eyes), _resized(cut, size))  # type: ignore[arg-type]
        for f, cut in found
    ]


def to_array(img: Image.Image, pre: Preprocess) -> np.ndarray:
    """A decoded PIL image as the encoder input `pre` describes: (channels, size, size) uint8."""
    return frame(_normalize_mode(img, pre.channels), pre.size, pre.crop, pre.ink, pre.face, pre.face_align)


def load_array(
    source: str | os.PathLike[str] | bytes, pre: Preprocess, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode, frame (centre crop, ink box or face) and resize one image as `pre` says:
    (channels, size, size) uint8. Raises ImageError."""
    keep = keep_side(pre.size, pre.crop, pre.ink, pre.face)
    img = decode_image(source, channels=pre.channels, max_pixels=max_pixels, min_side=keep)
    try:
        return frame(img, pre.size, pre.crop, pre.ink, pre.face, pre.face_align)
    except ImageError as err:
        raise ImageError("<bytes>" if isinstance(source, bytes) else str(source), err.reason) from None
