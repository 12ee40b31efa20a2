"""The encoder side's error hierarchy: every failure a user can cause is a SimSearchError."""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = [
    "ConfigError",
    "DataError",
    "EncoderMismatchError",
    "ImageError",
    "ModelError",
    "SimSearchError",
    "first_line",
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


class ConfigError(SimSearchError, ValueError):
    """Settings that do not go together, naming the fields at fault.

    `template` holds "{fields}" where the names of `fields` go, and "{key}" for each other field
    named by keyword (`init="init_model"`); str() shows the library's field names ("val_fold"),
    `render(flag)` whatever a front end calls them (the CLI: "--val-fold").
    """

    def __init__(self, template: str, fields: Sequence[str] = (), **named: str) -> None:
        self.template = template
        self.fields = tuple(fields)
        self.named = named
        super().__init__(self.render(str))

    @property
    def all_fields(self) -> tuple[str, ...]:
        return (*self.fields, *self.named.values())

    def render(self, name: Callable[[str], str]) -> str:
        return self.template.format(
            fields=", ".join(name(f) for f in self.fields), **{k: name(v) for k, v in self.named.items()}
        )


def literal(value: object) -> str:
    """A value as text inside a ConfigError template (its braces doubled, so that they stay braces)."""
    return str(value).replace("{", "{{").replace("}", "}}")


def first_line(err: BaseException) -> str:
    """An exception's message on one line, for a one-line error of ours: PyTorch's size-mismatch messages
    run to several ("...for Encoder:" then the first mismatch), others are cut at their first line."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[1]}" + (f" (and {len(lines) - 2} more)" if len(lines) > 2 else "")
    return lines[0] if lines else type(err).__name__
