"""simsearch's own text tower: captions and queries in the images' embedding space (CLIP-style).

A small transformer over words. Its vocabulary is the words of the training captions (kept in
model.json, so a checkpoint tokenizes on its own); a word it never saw maps to one unknown token.
Trained beside an image encoder with `simsearch train --captions` (simsearch.train.captions).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PAD", "UNKNOWN", "TextConfig", "TextTower", "build_vocabulary", "words"]

PAD, UNKNOWN = 0, 1  # token ids; words start at 2
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_VOCABULARY = 50_000


def words(text: str) -> list[str]:
    """Lower-cased words (letters and digits) of a caption or query."""
    return _WORD.findall(text.lower())


def build_vocabulary(captions: Iterable[str], limit: int = MAX_VOCABULARY) -> tuple[str, ...]:
    """The words of `captions`, most frequent first (ties alphabetical), at most `limit`."""
    counts = Counter(w for c in captions for w in words(c))
    return tuple(w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit])


@dataclass(frozen=True)
class TextConfig:
    """A text tower, as data: its vocabulary and size."""

    vocabulary: tuple[str, ...]
    context: int = 16  # words read from a caption; the rest are cut off
    width: int = 128
    layers: int = 2
    heads: int = 4

    def __post_init__(self) -> None:
        if not self.vocabulary or len(self.vocabulary) > MAX_VOCABULARY:
            raise ValueError(f"a text tower needs 1 to {MAX_VOCABULARY:,} words")
        if len(set(self.vocabulary)) != len(self.vocabulary):
            raise ValueError("the vocabulary repeats a word")
        if not 1 <= self.context <= 256 or not 1 <= self.layers <= 12:
            raise ValueError("context must be in 1..256 and layers in 1..12")
        if self.width < 8 or self.width > 1024 or self.width % self.heads:
            raise ValueError("width must be in 8..1024 and a multiple of heads")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["vocabulary"] = list(self.vocabulary)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TextConfig:
        return cls(
            vocabulary=tuple(str(w) for w in d["vocabulary"]),
            context=int(d.get("context", 16)),
            width=int(d.get("width", 128)),
            layers=int(d.get("layers", 2)),
            heads=int(d.get("heads", 4)),
        )


class TextTower(nn.Module):
    """Words -> embedding: token and position embeddings, a transformer encoder, the mean over the
    caption's words, a linear map to the image embedding's size (the caller normalizes)."""

    def __init__(self, config: TextConfig, embedding_dim: int) -> None:
        super().__init__()
        self.config = config
        self.ids = {w: i + 2 for i, w in enumerate(config.vocabulary)}
        self.tokens = nn.Embedding(len(config.vocabulary) + 2, config.width, padding_idx=PAD)
        self.positions = nn.Parameter(torch.randn(config.context, config.width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            config.width, config.heads, dim_feedforward=2 * config.width, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.width)
        self.project = nn.Linear(config.width, embedding_dim)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        """(N, context) token ids; an empty text is one unknown token."""
        out = torch.full((len(texts), self.config.context), PAD, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [self.ids.get(w, UNKNOWN) for w in words(t)][: self.config.context] or [UNKNOWN]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = tokens == PAD
        x = self.tokens(tokens) + self.positions[: tokens.shape[1]]
        x = self.norm(self.encoder(x, src_key_padding_mask=pad))
        keep = (~pad).unsqueeze(-1).float()
        return self.project((x * keep).sum(1) / keep.sum(1).clamp_min(1.0))


def clip_loss(images: torch.Tensor, texts: torch.Tensor, same: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of (image, caption) pairs, CLIP's objective. `same[i, j]` says
    whether image i and caption j say the same thing (equal captions), so a repeated caption is not
    pushed away from its other pictures: the target is spread over every match."""
    # `same` is symmetric, so its normalized rows are the targets of both directions
    logits = scale.exp().clamp(max=100) * images @ texts.T
    target = same.float() / same.float().sum(1, keepdim=True)
    return 0.5 * (
        -(target * F.log_softmax(logits, 1)).sum(1).mean() - (target * F.log_softmax(logits.T, 1)).sum(1).mean()
    )
