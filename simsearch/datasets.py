"""Labelled image sets for training and evaluation: folder-per-class trees and the Omniglot zips."""

from __future__ import annotations

import fnmatch
import os
import threading
import zipfile
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image
from tqdm import tqdm

from simsearch.errors import DataError, ImageError
from simsearch.images import IMAGE_EXTENSIONS, MAX_IMAGE_BYTES, decode_image, load_array, scan_folder, to_array
from simsearch.preprocess import Preprocess

__all__ = [
    "LabelledSet",
    "ZipMember",
    "class_group",
    "gather_images",
    "load_labelled",
    "load_pictures",
    "split_by_group",
]


@dataclass(frozen=True)
class LabelledSet:
    """Decoded, resized images with class labels.

    images: (N, C, S, S) uint8; labels: (N,) int64 indexes into `classes`; `groups[c]` is the
    coarse group of class c (the alphabet on Omniglot, else the class itself), used to hold out
    whole groups for validation; `paths[i]` names where image i came from.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    groups: list[str]
    paths: list[str]

    def subset(self, class_ids: np.ndarray) -> LabelledSet:
        """The images of the given classes, relabelled 0..len(class_ids)-1."""
        keep = np.isin(self.labels, class_ids)
        remap = np.full(len(self.classes), -1, dtype=np.int64)
        remap[class_ids] = np.arange(len(class_ids))
        return LabelledSet(
            images=self.images[keep],
            labels=remap[self.labels[keep]],
            classes=[self.classes[c] for c in class_ids],
            groups=[self.groups[c] for c in class_ids],
            paths=[p for p, k in zip(self.paths, keep, strict=True) if k],
        )


# bounds on a zip given as data: members, and how far one may inflate (a real image compresses little)
MAX_ZIP_MEMBERS = 2_000_000
MAX_ZIP_RATIO = 200

_open_zips = threading.local()  # each decode thread keeps its own handle on each zip (ZipFile is not thread-safe)


@dataclass(frozen=True)
class ZipMember:
    """An image inside a zip, read only when it is decoded (never every member at once), within bounds."""

    zip_path: Path
    name: str

    def read(self) -> bytes:
        """The member's bytes. Raises ImageError for a member that cannot or may not be read: over the image
        size limit, inflating past MAX_ZIP_RATIO, encrypted, an unknown compression, a bad CRC."""
        where = f"{self.zip_path}:{self.name}"
        handles = getattr(_open_zips, "handles", None)
        if handles is None:
            handles = _open_zips.handles = {}
        zf = handles.get(self.zip_path)
        if zf is None:
            zf = handles[self.zip_path] = zipfile.ZipFile(self.zip_path)
        info = zf.getinfo(self.name)
        if info.flag_bits & 0x1:
            raise ImageError(where, "encrypted zip member (simsearch reads no passwords)")
        if info.file_size > MAX_IMAGE_BYTES:
            raise ImageError(where, f"{info.file_size:,} bytes unpacked is over the limit of {MAX_IMAGE_BYTES:,}")
        if info.file_size > (1 << 20) and info.file_size > MAX_ZIP_RATIO * max(1, info.compress_size):
            raise ImageError(where, f"inflates {info.file_size // max(1, info.compress_size):,}-fold (a zip bomb?)")
        try:
            with zf.open(info) as f:
                data = f.read(info.file_size + 1)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError, ValueError) as err:
            raise ImageError(
                where, f"cannot unpack ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
            ) from None
        if len(data) > info.file_size:
            raise ImageError(where, "unpacks to more bytes than its header says")
        return data


def _source(item: tuple[str, str, bytes | Path | ZipMember]) -> bytes | Path:
    """What an item's image is decoded from: a file, or the bytes of a zip member (read now)."""
    src = item[2]
    return src.read() if isinstance(src, ZipMember) else src


def _zip_entries(path: Path, need_class: bool = True) -> list[tuple[str, str]]:
    """(member name, class) for each image in a zip; class = the folder holding the image,
    minus a single top-level folder shared by every entry (e.g. images_background/)."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable zip file ({err})") from None
    with zf:
        if len(zf.infolist()) > MAX_ZIP_MEMBERS:
            raise DataError(f"{path}: {len(zf.infolist()):,} members is over the limit of {MAX_ZIP_MEMBERS:,}")
        names = [
            n
            for n in zf.namelist()
            if not n.endswith("/")
            and PurePosixPath(n).suffix.lower() in IMAGE_EXTENSIONS
            and not any(part.startswith((".", "__MACOSX")) for part in PurePosixPath(n).parts)
        ]
    tops = {PurePosixPath(n).parts[0] for n in names}
    strip = 1 if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 2 for n in names) else 0
    entries = []
    for n in sorted(names):
        parts = PurePosixPath(n).parts[strip:-1]
        if not parts and need_class:
            raise DataError(f"{path}: {n} is not inside a class folder")
        entries.append((n, "/".join(parts)))
    return entries


_SIGNATURE_KINDS = ("genuine", "forgery", "forgeries", "forged")


def class_group(name: str) -> str:
    """The group of a class: its first path component (an alphabet on Omniglot), except in a
    signature layout (`.../genuine/<writer>`, `.../forgery/<writer>`), where it is the writer, so
    that a writer's genuine signatures and forgeries are always held out together."""
    parts = name.split("/")
    for i, part in enumerate(parts[:-1]):
        if part.lower() in _SIGNATURE_KINDS:
            return "/".join(parts[:i] + parts[i + 1 :])
    return parts[0]


def gather_images(
    source: str | os.PathLike[str], classes: str | Collection[str] | None = None, need_class: bool = True
) -> list[tuple[str, str, bytes | Path | ZipMember]]:
    """(name, class, path or zip member) of every image in a folder tree or a zip, in a stable order.

    The class is the folder holding the image relative to the root ("" at the top, which
    `need_class` leaves out); `classes` is a glob (fnmatch) that class names must match, or a
    collection of the exact class names to keep.
    """
    src = Path(source)
    if not src.exists():
        raise DataError(f"{source}: no such file or folder")
    if src.is_file():
        if not zipfile.is_zipfile(src):
            raise DataError(f"{source}: not a folder or a zip file")
        entries = _zip_entries(src, need_class)
        items: list[tuple[str, str, bytes | Path | ZipMember]] = [
            (f"{src}:{n}", c, ZipMember(src, n)) for n, c in entries
        ]
    else:
        scan = scan_folder(src)
        items = []
        for f in scan.files:
            rel = f.path.parent.relative_to(src)
            if rel.parts or not need_class:
                items.append((str(f.path), rel.as_posix() if rel.parts else "", f.path))
    if not items:
        where = "in class folders (expected ROOT/<class>/<image>)" if need_class else "there"
        raise DataError(f"{source}: no images {where}")
    if classes is not None:
        found = sorted({c for _, c, _ in items})
        if isinstance(classes, str):
            items = [it for it in items if fnmatch.fnmatchcase(it[1], classes)]
            wanted = repr(classes)
        else:
            names = set(classes)
            items = [it for it in items if it[1] in names]
            wanted = f"any of the {len(names)} listed classes"
        if not items:
            examples = ", ".join(found[:3])
            raise DataError(f"{source}: no class matches {wanted} (classes look like: {examples})")
    return items


def load_labelled(
    source: str | os.PathLike[str],
    pre: Preprocess,
    progress: bool = True,
    strict: bool = False,
    classes: str | Collection[str] | None = None,
    reframe: tuple[str, int] | None = None,
) -> LabelledSet:
    """Read a labelled set from a folder-per-class tree or a zip of one (such as Omniglot's).

    The class of an image is the folder that holds it (relative to the root), so both
    `root/cat/x.jpg` and Omniglot's `Alphabet/characterNN/x.png` work; see class_group for
    groups. `classes` is a glob (fnmatch, case-sensitive) that class names must match, e.g.
    "[A-J]*" or "train/*", or the exact class names to keep. Each image becomes the input `pre`
    describes (channels, size, centre crop or ink framing). Unreadable images are skipped (or
    raise with strict=True). `reframe` = (kind, seed) re-frames every image first (edits.reframe;
    image i with its own generator seeded (seed, i)): how robust an encoder is to framing.
    """
    from simsearch.edits import reframe as reframed

    items = gather_images(source, classes)

    def decode(i: int, item: tuple[str, str, bytes | Path | ZipMember]) -> np.ndarray | ImageError:
        try:
            if reframe is None:
                return load_array(_source(item), pre)
            img = reframed(decode_image(_source(item), channels=3), reframe[0], np.random.default_rng((reframe[1], i)))
            return to_array(img, pre)
        except ImageError as err:
            return ImageError(item[0], err.reason)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        arrays = list(
            tqdm(
                pool.map(decode, range(len(items)), items),
                total=len(items),
                desc="decoding",
                unit="img",
                disable=not progress,
            )
        )
    images, labels, paths = [], [], []
    class_names = sorted({c for _, c, _ in items})
    class_index = {c: i for i, c in enumerate(class_names)}
    for (name, cls, _), arr in zip(items, arrays, strict=True):
        if isinstance(arr, ImageError):
            if strict:
                raise arr
            continue
        images.append(arr)
        labels.append(class_index[cls])
        paths.append(name)
    if not images:
        raise DataError(f"{source}: none of the {len(items)} images could be decoded")
    return LabelledSet(
        images=np.stack(images),
        labels=np.asarray(labels, dtype=np.int64),
        classes=class_names,
        groups=[class_group(c) for c in class_names],
        paths=paths,
    )


def split_by_group(data: LabelledSet, val_fraction: float, seed: int, fold: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split class ids into (train, validation) so no group (alphabet) is on both sides.

    The groups are shuffled by `seed`; validation takes the `fold`-th block of `val_fraction` of
    them, so folds 0, 1, ... are disjoint (cross-validation) and fold 0 is the usual split. When
    every class is its own group this is a plain class split.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError("val_fraction must be between 0 and 1")
    groups = sorted(set(data.groups))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(groups))
    n_val = max(1, round(len(groups) * val_fraction))
    if n_val >= len(groups):
        raise DataError("too few classes to hold some out for validation")
    folds = len(groups) // n_val
    if not 0 <= fold < folds:
        raise DataError(f"validation fold {fold} does not exist: {len(groups)} groups make folds 0 to {folds - 1}")
    val_groups = {groups[i] for i in order[fold * n_val : (fold + 1) * n_val]}
    class_ids = np.arange(len(data.classes))
    is_val = np.array([g in val_groups for g in data.groups])
    return class_ids[~is_val], class_ids[is_val]


def load_pictures(
    source: str | os.PathLike[str],
    max_side: int | None = None,
    classes: str | None = None,
    progress: bool = True,
) -> tuple[list[Image.Image], list[str]]:
    """Every readable image under a folder or in a zip as RGB, with its name; no labels needed.

    With `max_side`, images are shrunk (aspect kept) so their shorter side is at most `max_side`:
    self-supervised training keeps thousands of them in memory. Unreadable files are skipped.
    """
    items = gather_images(source, classes, need_class=False)

    def decode(item: tuple[str, str, bytes | Path | ZipMember]) -> Image.Image | None:
        try:
            img = decode_image(_source(item), channels=3)
        except ImageError:
            return None
        if max_side is not None and min(img.size) > max_side:
            f = max_side / min(img.size)
            img = img.resize(
                (max(1, round(img.size[0] * f)), max(1, round(img.size[1] * f))), Image.Resampling.BILINEAR
            )
        return img

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        decoded = list(
            tqdm(pool.map(decode, items), total=len(items), desc="decoding", unit="img", disable=not progress)
        )
    kept = [(img, name) for img, (name, _, _) in zip(decoded, items, strict=True) if img is not None]
    if not kept:
        raise DataError(f"{source}: none of the {len(items)} images could be decoded")
    return [k[0] for k in kept], [k[1] for k in kept]
