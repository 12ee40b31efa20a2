"""Freezing an encoder for fine-tuning: all but the last N blocks of its image network (and batch norm's
statistics with them), the head and simsearch's own text tower left to train."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from simsearch.errors import ConfigError

if TYPE_CHECKING:
    from simsearch.encoder import Encoder

__all__ = ["freeze", "trainable_blocks"]


def _units(module: nn.Module) -> list[nn.Module]:
    """A network's blocks in order: its children with parameters, with containers of blocks (a Sequential
    or ModuleList of modules that have parts of their own) and single-child wrappers opened up, so a
    ResNet's stages give their residual blocks, a ViT its transformer blocks, and simsearch's conv4 its
    four conv-norm-pool stages."""
    out: list[nn.Module] = []
    for child in module.children():
        if not any(True for _ in child.parameters()):
            continue
        kids = [c for c in child.children() if any(True for _ in c.parameters())]
        # a container of blocks (not of single layers, as a conv-norm-pool stage is), or a wrapper
        of_blocks = isinstance(child, (nn.Sequential, nn.ModuleList)) and not any(_leaf(k) for k in kids)
        if of_blocks or (len(kids) == 1 and not any(True for _ in child.parameters(recurse=False))):
            out.extend(_units(child))
        else:
            out.append(child)
    return out


def _leaf(m: nn.Module) -> bool:
    return not any(True for _ in m.children())


def trainable_blocks(encoder: Encoder) -> list[list[nn.Module]]:
    """The blocks of an encoder's image network that `freeze` counts, first to last. A single layer
    between blocks (a stem's convolution and norm, a ViT's final norm, a MobileNet's head convolution)
    goes with the block before it (the stem's with the first), so the last block is a real one with
    what follows it."""
    features = encoder.features
    image_modules = getattr(features, "image_modules", None)  # an OpenCLIP trunk: its image tower alone
    if image_modules is not None:
        units = _units(image_modules())
    else:
        inner: nn.Module = getattr(features, "model", features)
        units = _units(inner)
    groups: list[list[nn.Module]] = []
    for u in units:
        if groups and (_leaf(u) or all(_leaf(m) for m in groups[-1])):
            groups[-1].append(u)
        else:
            groups.append([u])
    return groups


def freeze(encoder: Encoder, train_blocks: int) -> tuple[int, int]:
    """Train only the last `train_blocks` blocks of the image network and the head (0: the head alone);
    everything else is frozen: no gradients, batch norm kept in eval mode, and so are parameters the
    network holds directly (a ViT's position embedding, CLIP's projection). An OpenCLIP text tower is
    frozen; simsearch's own text tower (captions training) is not.
    Returns (trainable parameters, all parameters)."""
    if train_blocks < 0:
        raise ConfigError("{fields} must be 0 or more", ["train_blocks"])
    blocks = trainable_blocks(encoder)
    keep = [m for group in blocks[len(blocks) - train_blocks :] for m in group] if train_blocks > 0 else []
    kept = {id(m) for k in keep for m in k.modules()}
    for p in encoder.parameters():
        p.requires_grad_(False)
    text = [encoder.text] if encoder.text is not None else []  # simsearch's own: captions train it
    for m in [*keep, encoder.head, *text]:
        for p in m.parameters():
            p.requires_grad_(True)
    # the frozen leaves of the network, kept in eval mode by Encoder.train (batch norm statistics, dropout)
    encoder.frozen = [m for m in encoder.features.modules() if id(m) not in kept and _leaf(m)]
    trainable = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    if trainable == 0:
        raise ConfigError(
            "nothing left to train: give {train_blocks} 1 or more, or a {head}",
            train_blocks="train_blocks",
            head="head",
        )
    return trainable, sum(p.numel() for p in encoder.parameters())
