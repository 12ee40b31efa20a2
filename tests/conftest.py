"""Shared fixtures: generated images, a small random encoder, and a runner for the real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def simsearch_cmd() -> list[str]:
    """The installed `simsearch` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "simsearch"
    if script.exists():
        return [str(script)]
    found = shutil.which("simsearch")
    if found:
        return [found]
    return [sys.executable, "-m", "simsearch"]


def run_cli(
    *args: str, cwd: Path | None = None, check: bool = False, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [*simsearch_cmd(), *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"simsearch {' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def cli():
    return run_cli


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return np.ascontiguousarray(v / np.linalg.norm(v, axis=1, keepdims=True))


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    """4 symbol classes x 4 drawings as PNG in class subfolders."""
    from simsearch.symbols import write_symbol_set

    root = tmp_path / "gallery"
    write_symbol_set(root, ["circle", "triangle", "star", "cross"], per_class=4, seed=0)
    return root


@pytest.fixture(scope="session")
def random_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small, randomly initialized checkpoint folder (not the shipped encoder)."""
    import torch

    from simsearch.checkpoint import save_checkpoint
    from simsearch.encoder import EncoderConfig, build_encoder

    torch.manual_seed(123)
    out = tmp_path_factory.mktemp("random_model")
    save_checkpoint(build_encoder(EncoderConfig(widths=(8, 16, 16, 32), embedding_dim=32)), out)
    return out


class Stop(Exception):
    """Raised from a training run's on_step to interrupt it, as Ctrl-C would."""


def interrupted_then_resumed(run, out: Path, stop: int):
    """Run `run(out, on_step=...)` until step `stop`, check the resume state says so, then run it
    again with resume=True and return that result."""
    import json

    def stop_here(step: int) -> None:
        if step == stop:
            raise Stop

    with pytest.raises(Stop):
        run(out, on_step=stop_here)
    assert json.loads((out / "resume.json").read_text())["step"] == stop
    return run(out, resume=True)


def needs_shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (optional shared data)")
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """120 generated photo-like JPEGs in one folder (no labels)."""
    from simsearch.symbols import write_photos

    return write_photos(tmp_path / "photos", 120, seed=7)
