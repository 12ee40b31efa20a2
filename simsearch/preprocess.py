"""How an image becomes an encoder's input (Preprocess), as data: torch-free, passed whole to images.py."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from simsearch.config.choices import Framing
from simsearch.errors import ConfigError

__all__ = ["FACE_ALIGNS", "Framing", "Ink", "Preprocess"]

FACE_ALIGNS = ("eyes", "landmarks")


class Ink(str, Enum):
    """Which pixels are the strokes of a drawing: dark ink on light paper, or light ink on dark."""

    DARK = "dark"
    LIGHT = "light"


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the encoder's input.

    The image is decoded as "L" (channels=1) or "RGB" (channels=3) and framed as `framing` says (one
    value): centre-cropped to `crop` of each side (Framing.CENTRE), or cut to the largest face, levelled
    by its eyes (FACE: OpenCV, simsearch.faces) or dlib's aligned chip (FACE_LANDMARKS:
    simsearch.faces_dlib), a picture without a face skipped, or framed by the square around a
    drawing's strokes (INK: images.fit_ink; ink is dark unless `invert` is off, as on white-on-black
    signatures); then resized to size x size and scaled to
    [0, 1]; the network itself then inverts (for dark-on-light drawings), stretches each image's
    contrast to the full range when `autocontrast` is set (so a faint or thin pen line, which
    shrinking turns grey, looks like any other stroke) and normalizes.
    """

    channels: int = 1
    size: int = 28
    invert: bool = True
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    crop: float = 1.0
    autocontrast: bool = False
    framing: Framing = Framing.CENTRE

    def __post_init__(self) -> None:
        object.__setattr__(self, "framing", Framing.parse(str(getattr(self.framing, "value", self.framing))))
        if self.channels not in (1, 3):
            raise ConfigError(f"{{fields}} must be 1 or 3, not {self.channels}", ["channels"])
        if not 8 <= self.size <= 512:
            raise ConfigError(f"input size ({{fields}}) must be in 8..512, not {self.size}", ["size"])
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError("mean and std need one value per channel")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        if not 0.1 <= self.crop <= 1.0:
            raise ConfigError(f"{{fields}} must be in 0.1..1, not {self.crop}", ["crop"])
        if self.fit_ink and not self.can_fit_ink:
            raise ConfigError(
                "{fit_ink} frames the strokes of one-channel drawings: it needs {channels} 1 and no {crop}",
                fit_ink="fit_ink",
                channels="channels",
                crop="crop",
            )
        if self.face and self.crop != 1.0:
            raise ConfigError(
                "{face} framing (the detected, levelled face) replaces the centre {crop}", face="face", crop="crop"
            )

    @property
    def fit_ink(self) -> bool:
        """Framed by the square around a drawing's strokes."""
        return self.framing is Framing.INK

    @property
    def face(self) -> bool:
        """Framed by the largest face (either alignment)."""
        return self.framing in (Framing.FACE, Framing.FACE_LANDMARKS)

    @property
    def face_align(self) -> str:
        """How a face is cut out: "eyes" (OpenCV, levelled by the eyes) or "landmarks" (dlib's chip)."""
        return "landmarks" if self.framing is Framing.FACE_LANDMARKS else "eyes"

    @staticmethod
    def framing_of(fit_ink: bool = False, face: bool = False, face_align: str = "eyes") -> Framing:
        """The one framing value of model.json's three older keys (and train's --fit-ink / --face)."""
        if face_align not in FACE_ALIGNS:
            raise ValueError(f"face_align must be one of {', '.join(FACE_ALIGNS)}, not {face_align!r}")
        if face and fit_ink:
            raise ConfigError(
                "{fields} framing: a picture is framed by its face or by its ink, not both", ["face", "fit_ink"]
            )
        if face:
            return Framing.FACE_LANDMARKS if face_align == "landmarks" else Framing.FACE
        return Framing.INK if fit_ink else Framing.CENTRE

    @property
    def can_fit_ink(self) -> bool:
        """Whether `fit_ink` may be set: framing by the strokes is for one-channel, uncropped input."""
        return self.channels == 1 and self.crop == 1.0

    @property
    def ink(self) -> Ink | None:
        """The strokes' polarity for images.fit_ink, or None when images are centre-cropped instead."""
        if not self.fit_ink:
            return None
        return Ink.DARK if self.invert else Ink.LIGHT

    @property
    def mode(self) -> str:
        """The Pillow mode images are decoded to: "L" for one channel, "RGB" for three."""
        return "L" if self.channels == 1 else "RGB"

    @classmethod
    def plain(
        cls,
        channels: int,
        size: int,
        crop: float = 1.0,
        ink: Ink | None = None,
        face: bool = False,
        face_align: str = "eyes",
    ) -> Preprocess:
        """Framing without a network's normalization: what a baseline (raw pixels) decodes images to."""
        return cls(
            channels=channels,
            size=size,
            invert=ink is not Ink.LIGHT,
            mean=(0.0,) * channels,
            std=(1.0,) * channels,
            crop=crop,
            framing=cls.framing_of(ink is not None, face, face_align),
        )

    def to_dict(self) -> dict[str, Any]:
        """model.json's form: the framing written as the keys model.json has always had (fit_ink, face, and
        face_align for the landmark chip only), so that files stay as they were."""
        d: dict[str, Any] = {
            "channels": self.channels,
            "size": self.size,
            "invert": self.invert,
            "mean": self.mean,
            "std": self.std,
            "crop": self.crop,
            "autocontrast": self.autocontrast,
            "fit_ink": self.fit_ink,
            "face": self.face,
        }
        if self.framing is Framing.FACE_LANDMARKS:
            d["face_align"] = "landmarks"
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        """The inverse of to_dict; fields that older model.json files lack take their defaults."""
        return cls(
            channels=int(d["channels"]),
            size=int(d["size"]),
            invert=bool(d["invert"]),
            mean=tuple(float(x) for x in d["mean"]),
            std=tuple(float(x) for x in d["std"]),
            crop=float(d.get("crop", 1.0)),
            autocontrast=bool(d.get("autocontrast", False)),
            framing=cls.framing_of(
                bool(d.get("fit_ink", False)), bool(d.get("face", False)), str(d.get("face_align", "eyes"))
            ),
        )
