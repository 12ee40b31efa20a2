"""Named choices (architecture, pooling, loss, mining): one parser and one error message for all."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

__all__ = ["parse_choice"]

E = TypeVar("E", bound=Enum)


def parse_choice(choices: type[E], value: str, what: str) -> E:
    """The member of `choices` whose value is `value`, or a ValueError naming `what` and the allowed values."""
    try:
        return choices(value)
    except ValueError:
        allowed = ", ".join(str(c.value) for c in choices)
        raise ValueError(f"unknown {what} {value!r}; allowed: {allowed}") from None
