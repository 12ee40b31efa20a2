"""Faces in a photo: found with OpenCV's bundled Haar cascades, levelled by the eyes and cut out the
way the `faces` encoder was trained (a square 1.1 times the detector's box, centred on it).

OpenCV (`opencv-python-headless`, 4.x: its wheels ship the cascades under `cv2.data`) is imported
on first use, not with simsearch. Nothing is downloaded: the cascades are files inside the wheel.
The eyes are the landmarks: where both are found inside the face (on LFW about 6 faces in 10) the
face is turned so that they are level before it is cut out; otherwise the detector's box is used
as it is.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
from PIL import Image

from simsearch.errors import ImageError, SimSearchError

__all__ = ["FACE_SIDE", "NO_FACE", "Face", "FaceChoice", "crop_face", "face_crops", "find_faces"]

FACE_SIDE = 1.1  # the cut-out square's side, in widths of the detector's box
NO_FACE = "no face found"  # the reason a picture without a face is skipped
_DETECT_SIDE = 1024  # faces are looked for on a copy whose longer side is at most this
_MIN_FACE = 24  # the smallest face looked for, in pixels of that copy
_MAX_TILT = 30.0  # eyes tilted more than this (degrees) are taken for a mistake, and ignored


class FaceChoice(str, Enum):
    """Which faces of a photo to use: the largest, or every one (a group photo)."""

    LARGEST = "largest"
    ALL = "all"


@dataclass(frozen=True)
class Face:
    """A face found in a photo: its box (left, top, width, height) in the photo's pixels and the
    tilt of the line through its eyes in degrees (0 when the eyes were not both found)."""

    box: tuple[int, int, int, int]
    tilt: float = 0.0
    eyes: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"box": list(self.box), "tilt": round(self.tilt, 1), "eyes": self.eyes}


_local = threading.local()  # a CascadeClassifier is not safe to share between threads
# cv2's first import, done by several decode threads at once, can leave `cv2.data` missing: one thread imports it
_import_lock = threading.Lock()


def _cv2() -> Any:
    """OpenCV, imported once under a lock (its package __init__ is not safe to run from two threads at once)."""
    with _import_lock:
        try:
            import cv2
            import cv2.data
        except ImportError as err:  # pragma: no cover - a dependency; the message says how to get it
            raise SimSearchError("finding faces needs OpenCV: pip install 'opencv-python-headless>=4.8,<5'") from err
        return cv2


def _cascades() -> tuple[Any, Any]:
    found = getattr(_local, "cascades", None)
    if found is None:
        cv2 = _cv2()
        cv2.setNumThreads(1)
        face = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")  # type: ignore[attr-defined]
        eye = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_eye.xml")  # type: ignore[attr-defined]
        if face.empty() or eye.empty():
            raise SimSearchError(
                "OpenCV's Haar cascades are missing: install opencv-python-headless 4.x (5.0 ships none)"
            )
        found = _local.cascades = (face, eye)
    return found


def _tilt(gray: np.ndarray, box: tuple[int, int, int, int], eye: Any) -> float | None:
    """The angle of the eyes' line in degrees, from the eye cascade inside the face's upper part,
    or None when not both eyes are found where eyes can be."""
    x, y, w, h = box
    roi = gray[y : y + int(h * 0.6), x : x + w]
    if roi.size == 0:
        return None
    side = max(8, w // 8)
    found = eye.detectMultiScale(roi, scaleFactor=1.1, minNeighbors=5, minSize=(side, side), maxSize=(w // 2, w // 2))
    centres = [(ex + ew / 2, ey + eh / 2) for ex, ey, ew, eh in found]
    left = [c for c in centres if c[0] < w * 0.5]
    right = [c for c in centres if c[0] >= w * 0.5]
    if not left or not right:
        return None
    (lx, ly), (rx, ry) = min(left, key=lambda c: c[0]), max(right, key=lambda c: c[0])
    if rx - lx < w * 0.25:
        return None
    angle = math.degrees(math.atan2(ry - ly, rx - lx))
    return angle if abs(angle) <= _MAX_TILT else None


def find_faces(img: Image.Image) -> list[Face]:
    """Every face OpenCV's frontal-face cascade finds in the picture, largest first."""
    face_cascade, eye_cascade = _cascades()
    gray_img = img if img.mode == "L" else img.convert("L")
    scale = min(1.0, _DETECT_SIDE / max(gray_img.size))
    if scale < 1.0:
        gray_img = gray_img.resize(
            (max(1, round(gray_img.size[0] * scale)), max(1, round(gray_img.size[1] * scale))),
            Image.Resampling.BILINEAR,
            reducing_gap=2.0,
        )
    gray = np.asarray(gray_img)
    small = max(_MIN_FACE, min(gray.shape) // 24)
    boxes = face_cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(small, small))
    faces = []
    for x, y, w, h in sorted((tuple(int(v) for v in b) for b in boxes), key=lambda b: -b[2] * b[3]):
        tilt = _tilt(gray, (x, y, w, h), eye_cascade)
        full = tuple(round(v / scale) for v in (x, y, w, h))
        faces.append(Face(box=full, tilt=tilt or 0.0, eyes=tilt is not None))  # type: ignore[arg-type]
    return faces


def crop_face(img: Image.Image, face: Face) -> Image.Image:
    """The face cut out as the encoder saw it in training: a square FACE_SIDE times the box's width,
    centred on the box, turned so that the eyes are level; what lies outside the photo is black."""
    x, y, w, h = face.box
    cx, cy = x + w / 2, y + h / 2
    side = max(1, round(FACE_SIDE * w))

    def square(img: Image.Image, cx: float, cy: float, side: int) -> Image.Image:
        left, top = round(cx - side / 2), round(cy - side / 2)
        return img.crop((left, top, left + side, top + side))

    if abs(face.tilt) < 1.0:
        return square(img, cx, cy, side)
    region = square(img, cx, cy, round(side * 1.5))  # room for the square's corners once it is turned
    turned = region.rotate(face.tilt, resample=Image.Resampling.BILINEAR)
    return square(turned, turned.size[0] / 2, turned.size[1] / 2, side)


def face_crops(
    img: Image.Image, choice: FaceChoice = FaceChoice.LARGEST, name: str = "<image>"
) -> list[tuple[Face, Image.Image]]:
    """The largest face (or every face) of a picture, cut out; ImageError(NO_FACE) when there is none."""
    faces = find_faces(img)
    if not faces:
        raise ImageError(name, NO_FACE)
    if choice is FaceChoice.LARGEST:
        faces = faces[:1]
    return [(f, crop_face(img, f)) for f in faces]
