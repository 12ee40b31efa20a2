"""The named choices every front end offers (architecture, pooling, loss, mining, self-supervised views),
one parser and one error message for all. Free of torch, faiss and click."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

__all__ = ["Arch", "Framing", "Loss", "Mining", "Pool", "Views", "parse_choice"]

E = TypeVar("E", bound=Enum)


def parse_choice(choices: type[E], value: str, what: str) -> E:
    """The member of `choices` whose value is `value`, or a ValueError naming `what` and the allowed values."""
    try:
        return choices(value)
    except ValueError:
        allowed = ", ".join(str(c.value) for c in choices)
        raise ValueError(f"unknown {what} {value!r}; allowed: {allowed}") from None


class Arch(str, Enum):
    """Encoder architectures; the checkpoint's config names one."""

    CONV4 = "conv4"
    RESNET = "resnet"
    BACKBONE = "backbone"  # a network from a model library (timm, torchvision, OpenCLIP): simsearch.backbones

    @classmethod
    def parse(cls, value: str) -> Arch:
        return parse_choice(cls, value, "architecture")


class Framing(str, Enum):
    """What part of a picture an encoder sees: its centre (Preprocess.crop of each side), the square around
    a drawing's strokes, or the largest face (levelled by its eyes with OpenCV's cascades, or dlib's aligned
    chip from its 5-point landmarks)."""

    CENTRE = "centre"
    INK = "ink"
    FACE = "face"
    FACE_LANDMARKS = "face-landmarks"

    @classmethod
    def parse(cls, value: str) -> Framing:
        return parse_choice(cls, value, "framing")


class Pool(str, Enum):
    """How the last stage's feature map becomes one vector: averaged over its positions, or flattened
    (each position keeps its own channels, so where a part of the drawing sits counts)."""

    AVG = "avg"
    FLATTEN = "flatten"

    @classmethod
    def parse(cls, value: str) -> Pool:
        return parse_choice(cls, value, "pooling")


class Loss(str, Enum):
    """The training objectives `simsearch train --loss` offers."""

    CONTRASTIVE = "contrastive"
    TRIPLET = "triplet"
    EPISODIC = "episodic"

    @classmethod
    def parse(cls, value: str) -> Loss:
        return parse_choice(cls, value, "loss")


class Mining(str, Enum):
    """Which triplets a triplet loss averages over."""

    ALL = "all"
    BATCH_HARD = "batch-hard"
    SEMI_HARD = "semi-hard"

    @classmethod
    def parse(cls, value: str) -> Mining:
        return parse_choice(cls, value, "mining")


class Views(str, Enum):
    """A self-supervised run's training views: classic edits, or those plus what people do to photos."""

    CLASSIC = "classic"
    WIDE = "wide"
