"""The encoder side's error hierarchy: every failure a user can cause is a SimSearchError."""

from __future__ import annotations

__all__ = [
    "DataError",
    "EncoderMismatchError",
    "ImageError",
    "ModelError",
    "SimSearchError",
]


class SimSearchError(Exception):
    """Base of every error raised by `simsearch` for bad input; the CLI prints it as one line."""


class ImageError(SimSearchError):
    """An image file could not be read or decoded; `reason` is the short why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DataError(SimSearchError):
    """A data set or image folder is missing, empty or laid out wrongly."""


class ModelError(SimSearchError):
    """An encoder checkpoint is missing, corrupt or unknown."""


class EncoderMismatchError(SimSearchError):
    """An index was made by one encoder and is being used with another."""
