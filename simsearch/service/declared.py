"""The service's query parameters made from the same declarations as the CLI's options (simsearch.config): a
request class's fields become a FastAPI dependency that reads them from the query string, with the field's
default, help text and bounds, and hands the route the request itself. A field is spelled by its name, or as
SERVICE_NAMES says (the CLI's --label is the field `labels`, and the service's `label`)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Query

from simsearch.config.options import MISSING, declared

__all__ = ["SERVICE_NAMES", "query_params"]

T = TypeVar("T")

# how the service spells the fields whose CLI spelling is not their name (ConfigError names them so too)
SERVICE_NAMES = {"labels": "label", "texts": "text"}
_MAX_STRING = 4096  # characters of one string parameter
_MAX_REPEATS = 100  # values of one repeated parameter (label=a&label=b...)


def _query_type(tp: Any) -> Any:
    """The type FastAPI reads a field as: a tuple is a repeated parameter, a path a string."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is tuple:
        return list[args[0]] | None  # type: ignore[valid-type]
    if Path in args or tp is Path:
        return str | None
    return tp


def query_params(cls: type[T], only: Sequence[str]) -> Callable[..., T]:
    """A dependency reading the fields `only` of request class `cls` from the query string (the others keep
    their defaults) and returning the request."""
    fields = {d.name: d for d in declared(cls) if d.name in only}
    params = []
    for d in fields.values():
        opt = d.option
        low, high = opt.bounds or (None, None)
        limits: dict[str, Any] = {}
        if low is not None:
            limits["gt" if opt.open_low else "ge"] = low
        if high is not None:
            limits["lt" if opt.open_high else "le"] = high
        tp = _query_type(d.type)
        if tp is str or tp == str | None:
            limits["max_length"] = _MAX_STRING
        elif typing.get_origin(d.type) is tuple:
            limits["max_length"] = _MAX_REPEATS
        query = Query(description=opt.help, **limits)
        default = None if d.default is MISSING or isinstance(d.default, tuple) else d.default
        name = SERVICE_NAMES.get(d.name, d.name)
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[tp, query])
        )

    def read(**given: Any) -> T:
        values = {}
        for d in fields.values():
            v = given[SERVICE_NAMES.get(d.name, d.name)]
            if isinstance(v, list):
                v = tuple(v)
            elif v is None and isinstance(d.default, tuple):
                v = d.default
            values[d.name] = v
        return cls(**values)

    read.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    read.__name__ = f"{cls.__name__}_params"
    return read
