"""How a request's field is offered to people: its help text, its section, and how it is spelled and
checked on a command line. Declared once, on the field itself (`dataclasses.field(metadata=...)` through
`option()`); the CLI builds its options from these declarations and the service its parameters, and a
ConfigError names fields, which each front end spells its own way. Free of torch, faiss and click."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["MISSING", "Option", "declared", "fraction", "option"]

MISSING = dataclasses.MISSING


@dataclass(frozen=True)
class Option:
    """One field as a front end offers it.

    kind: how a value is written when the field's type does not say it: "duration" (300, 80m, 1.5h),
    "ints" (64,96,128), "path". bounds: (low, high) either None; open_low / open_high: that end itself excluded.
    multiple: the option may be given several times (a tuple field).
    choices: an Enum whose values are the allowed spellings (values: the subset offered). negatable: a --name/--no-name switch.
    flag: the spelling when it is not --field-name; short: a one-letter alias."""

    help: str
    section: str = ""
    flag: str | None = None
    short: str | None = None
    kind: str | None = None
    bounds: tuple[float | None, float | None] | None = None
    open_low: bool = False
    open_high: bool = False
    multiple: bool = False
    hidden: bool = False  # accepted but not listed (an old spelling kept working)
    flag_value: str | None = None  # the value of the option given without one (an optional value)
    choices: type[Enum] | None = None
    values: tuple[str, ...] | None = None  # of the choices, those this request accepts (default: all)
    negatable: bool = False
    metavar: str | None = None
    envvar: str | None = None
    show_default: bool = True


def option(default: Any = MISSING, help: str = "", **how: Any) -> Any:
    """A dataclass field with its default and how people see it (see Option)."""
    meta = {"option": Option(help=help, **how)}
    if isinstance(default, (list, dict, set)):
        raise TypeError("a mutable default: use a tuple")
    return dataclasses.field(default=default, metadata=meta)


def fraction(help: str, **how: Any) -> Any:
    """An optional share strictly between 0 and 1, such as a target FPIR or FNIR: None unless given."""
    return option(None, help, bounds=(0.0, 1.0), open_low=True, open_high=True, **how)


@dataclass(frozen=True)
class Declared:
    """A field of a request as declared: its name, default (MISSING when required), type and Option."""

    name: str
    default: Any
    type: Any
    option: Option

    @property
    def required(self) -> bool:
        return self.default is MISSING


def declared(*classes: type) -> Iterator[Declared]:
    """The declared fields of these request classes in order; a name met again (a field two kinds of run
    share) is given once, as first declared."""
    seen: set[str] = set()
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            opt = f.metadata.get("option")
            if opt is None or f.name in seen:
                continue
            seen.add(f.name)
            yield Declared(f.name, f.default, hints[f.name], opt)
