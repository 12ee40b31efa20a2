"""The Siamese encoder networks: one shared-weight network maps images to L2-normalized embeddings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from simsearch.choices import parse_choice
from simsearch.preprocess import Preprocess

# A checkpoint whose config asks for more than this is refused before anything is allocated (400 MB of float32).
_MAX_PARAMETERS = 100_000_000

__all__ = ["Arch", "Encoder", "EncoderConfig", "Pool", "build_encoder"]


class Arch(str, Enum):
    """Encoder architectures; the checkpoint's config names one."""

    CONV4 = "conv4"
    RESNET = "resnet"

    @classmethod
    def parse(cls, value: str) -> Arch:
        return parse_choice(cls, value, "architecture")


MIN_CONTRAST = 0.05  # autocontrast stretches at most 20x, so a blank page's noise stays noise


class Pool(str, Enum):
    """How the last stage's feature map becomes one vector: averaged over its positions, or flattened
    (each position keeps its own channels, so where a part of the drawing sits counts)."""

    AVG = "avg"
    FLATTEN = "flatten"

    @classmethod
    def parse(cls, value: str) -> Pool:
        return parse_choice(cls, value, "pooling")


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture and input of an encoder: everything needed to rebuild it from its weights."""

    arch: Arch = Arch.CONV4
    preprocess: Preprocess = field(default_factory=Preprocess)
    widths: tuple[int, ...] = (64, 96, 128, 256)
    embedding_dim: int = 256
    pool: Pool = Pool.AVG

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch", Arch.parse(str(getattr(self.arch, "value", self.arch))))
        object.__setattr__(self, "pool", Pool.parse(str(getattr(self.pool, "value", self.pool))))
        if not self.widths or any(w <= 0 for w in self.widths):
            raise ValueError("widths must be a non-empty list of positive channel counts")
        if self.embedding_dim <= 0:
            raise ValueError("embedding_dim must be positive")
        if self.preprocess.size < 2 ** len(self.widths):
            raise ValueError(f"input size {self.preprocess.size} is too small for {len(self.widths)} stages")
        if self.parameter_bound > _MAX_PARAMETERS:  # refuse before anything is allocated
            raise ValueError(
                f"widths {list(self.widths)} and embedding_dim {self.embedding_dim} make a network of about "
                f"{self.parameter_bound:,} parameters, over the limit of {_MAX_PARAMETERS:,}"
            )

    @property
    def parameter_bound(self) -> int:
        """An upper bound on the parameter count (two 3x3 convolutions a stage, the head), from the config alone."""
        chans = [self.preprocess.channels, *self.widths]
        convs = sum(9 * a * b + 9 * b * b + a * b for a, b in pairwise(chans))
        return convs + self.feature_dim * self.embedding_dim

    @property
    def feature_dim(self) -> int:
        """Length of the vector the stages hand to the head: the last width, times the final map's
        positions when it is flattened (each stage halves the side, rounding down)."""
        side = self.preprocess.size
        for _ in self.widths:
            side //= 2
        return self.widths[-1] * (side * side if self.pool is Pool.FLATTEN else 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["arch"] = self.arch.value
        d["pool"] = self.pool.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        return cls(
            arch=Arch.parse(d["arch"]),
            preprocess=Preprocess.from_dict(d.get("preprocess", {})),
            widths=tuple(int(w) for w in d["widths"]),
            embedding_dim=int(d["embedding_dim"]),
            pool=Pool.parse(d.get("pool", Pool.AVG.value)),
        )


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class _ResidualStage(nn.Module):
    """Two 3x3 conv layers with a projected shortcut, then 2x downsampling."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return self.pool(F.relu(out + self.shortcut(x), inplace=True))


class Encoder(nn.Module):
    """Shared-weight embedding network.

    forward: (N, C, H, W) float in [0, 1] -> (N, D) float32, each row of unit L2 norm.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        pre = config.preprocess
        stages: list[nn.Module] = []
        c = pre.channels
        for w in config.widths:
            stages.append(_conv_block(c, w) if config.arch is Arch.CONV4 else _ResidualStage(c, w))
            c = w
        self.features = nn.Sequential(*stages)
        c = config.feature_dim
        self.head: nn.Module = nn.Identity() if c == config.embedding_dim else nn.Linear(c, config.embedding_dim)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(pre.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pre.std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.preprocess.invert:
            x = 1.0 - x
        if self.config.preprocess.autocontrast:
            low = x.amin(dim=(1, 2, 3), keepdim=True)
            x = (x - low) / (x.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(MIN_CONTRAST)
        x = (x - self.mean) / self.std
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1) if self.config.pool is Pool.AVG else x, 1)
        x = self.head(x)
        return F.normalize(x.float(), dim=1)


def build_encoder(config: EncoderConfig) -> Encoder:
    """A freshly initialized encoder for `config`."""
    return Encoder(config)
