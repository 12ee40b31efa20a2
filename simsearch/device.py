"""Where the encoder runs: CUDA when present (or asked for), else every CPU core."""

from __future__ import annotations

import os

import torch

from simsearch.errors import ConfigError, SimSearchError, literal

__all__ = ["resolve_device"]


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu' and 'cuda' as asked (cuda must exist)."""
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"{{fields}}: unknown device {literal(repr(name))}; allowed: auto, cpu, cuda", ["device"])
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise SimSearchError("--device cuda was asked for but no CUDA GPU is available")
        return torch.device("cuda")
    # Use every core we are allowed to run on, not torch's guess.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, cores))
    return torch.device("cpu")
