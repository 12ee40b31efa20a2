"""Click options made from the fields a request declares in simsearch.config: one field, one option, with
its default, help text, type, bounds and --help section, so adding an option is adding a field."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import click

from simsearch.cli.common import DURATION, INT_LIST
from simsearch.config.options import Declared, declared

__all__ = ["options_from", "sections_from", "take"]

T = TypeVar("T")


def _base(tp: Any) -> Any:
    """int from `int | None`, tuple from `tuple[int, ...]`."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _base(args[0]) if len(args) == 1 else str
    return typing.get_origin(tp) or tp


def _click_option(d: Declared) -> Callable[[Any], Any]:
    o, base = d.option, _base(d.type)
    default = None if d.required else d.default
    flag = o.flag or "--" + d.name.replace("_", "-")
    names = [flag, *([o.short] if o.short else []), d.name]
    kw: dict[str, Any] = {"help": o.help or None, "required": d.required, "metavar": o.metavar, "envvar": o.envvar}
    if isinstance(default, Enum):
        default = default.value
    if o.multiple:
        kw["multiple"] = True
        default = default or None  # click gives () when none is given
    if o.hidden:
        kw["hidden"] = True
    if o.flag_value is not None:
        kw.update(is_flag=False, flag_value=o.flag_value)
    if o.negatable:
        names[0] = f"{flag}/--no-{flag[2:]}"
        kw.update(default=default, show_default=o.show_default)
    elif base is bool:
        kw.update(is_flag=True, default=bool(default))
    else:
        kw.update(default=default, show_default=o.show_default and default is not None)
        if o.choices is not None or o.values is not None:
            kw["type"] = click.Choice(list(o.values or [str(c.value) for c in o.choices or ()]))
        elif o.kind == "channels":
            kw.update(type=click.Choice(["1", "3"]), default=str(default))
        elif o.kind == "duration":
            kw["type"] = DURATION
        elif o.kind == "ints":
            kw["type"] = INT_LIST
            if isinstance(default, tuple):
                kw["default"] = ",".join(str(v) for v in default)
        elif o.kind == "path":
            kw["type"] = click.Path(path_type=Path)
        elif o.bounds is not None:
            lo, hi = o.bounds
            if base is int:
                kw["type"] = click.IntRange(None if lo is None else int(lo), None if hi is None else int(hi))
            else:
                kw["type"] = click.FloatRange(lo, hi, min_open=o.open_low, max_open=o.open_high)
        elif base in (int, float, str):
            kw["type"] = base
    return click.option(*names, **kw)


def options_from(
    *classes: type, skip: Sequence[str] = (), only: Sequence[str] = (), order: Sequence[str] = ()
) -> Callable[[Any], Any]:
    """A decorator adding an option for every declared field of `classes` (first declaration of a name
    wins), in declaration order (or in `order`, which must name them all), except those named in `skip`
    (or, with `only`, just those)."""
    fields = [d for d in declared(*classes) if d.name not in skip and (not only or d.name in only)]
    if order:
        by_name = {d.name: d for d in fields}
        if set(order) != set(by_name):
            raise ValueError(f"order names {sorted(set(order) ^ set(by_name))} wrongly")
        fields = [by_name[n] for n in order]

    def decorate(fn: Any) -> Any:
        for d in reversed(fields):  # click lists options in the order their decorators are applied, inside out
            fn = _click_option(d)(fn)
        return fn

    return decorate


def sections_from(order: Sequence[str], *classes: type) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """--help's headings in `order`, each with the names of the declared fields in it."""
    by: dict[str, list[str]] = {title: [] for title in order}
    for d in declared(*classes):
        by.setdefault(d.option.section, []).append(d.name)
    return tuple((title, tuple(names)) for title, names in by.items() if names)


def take(cls: type[T], opts: dict[str, Any]) -> T:
    """The request `cls` made of its fields' values in a command's keyword arguments, which it removes from
    `opts` (what is left is for the shared options: --device, --json, ...)."""
    return cls(**{f.name: opts.pop(f.name) for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
