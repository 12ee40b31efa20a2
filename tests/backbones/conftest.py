"""The backbone tests need the optional libraries; any failure to import them (absent, or torchvision's
operators missing beside a mismatched torch) skips the file, as a user's clone without the extras does."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def need(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except Exception as err:
        pytest.skip(f"{module} does not import here ({type(err).__name__}: {err})", allow_module_level=True)
