"""Batched tensor augmentations for labelled training: quarter turns, flips, affine jitter, elastic warp, colour."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Augment", "augment", "color_jitter", "elastic_field"]


@dataclass(frozen=True)
class Augment:
    """How strongly each batch is augmented (TrainConfig's augmentation fields, passed whole)."""

    flips: bool = False
    jitter: float = 1.0
    elastic: float = 0.0
    color_jitter: float = 0.0


def augment(x: torch.Tensor, turns: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Quarter turns per image, random flips, a small random affine jitter and an elastic warp,
    then colour changes; x: (N, C, H, W) float in [0, 1], turns: (N,) quarter turns."""
    for t in (1, 2, 3):
        sel = (turns == t).to(x.device)
        if sel.any():
            x[sel] = torch.rot90(x[sel], t, dims=(2, 3))
    n = x.shape[0]
    if aug.flips:
        flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        x[flip] = x[flip].flip(3)
    if aug.jitter > 0 or aug.elastic > 0:
        j = aug.jitter
        angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10) * j
        scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.1 * j
        shear = (torch.rand(n, generator=gen) * 2 - 1) * 0.15 * j
        shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * 0.08 * j
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [torch.stack([cos, -sin + shear, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        ).to(x.device, x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        if aug.elastic > 0:
            grid = grid + elastic_field(n, x.shape[2], x.shape[3], aug.elastic, gen).to(x.device, x.dtype)
        x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    if aug.color_jitter > 0:
        x = color_jitter(x, aug.color_jitter, gen)
    return x


def elastic_field(n: int, height: int, width: int, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Smooth random displacements (n, height, width, 2) in grid_sample's [-1, 1] coordinates: a 4x4
    lattice of random offsets (standard deviation 2.5% of the image side times `strength`), bicubically
    interpolated, so strokes bend and stretch locally as they do between two people's handwriting."""
    coarse = torch.randn(n, 2, 4, 4, generator=gen) * (0.05 * strength)
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)
    return field.permute(0, 2, 3, 1)


def color_jitter(x: torch.Tensor, strength: float, gen: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast and (on RGB) saturation factors in 1 ± 0.4 * strength per image,
    on a (N, C, H, W) batch in [0, 1]."""
    n = x.shape[0]

    def factors() -> torch.Tensor:
        f = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.4 * strength
        return f.clamp_min(0.0).to(x.device, x.dtype)

    x = x * factors()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factors() + mean
    if x.shape[1] == 3:
        gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
        x = (x - gray) * factors() + gray
    return x.clamp(0.0, 1.0)
