"""The Siamese encoder networks: one shared-weight network maps images to L2-normalized embeddings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from simsearch.config.choices import Arch, Pool
from simsearch.errors import ConfigError
from simsearch.preprocess import Preprocess

if TYPE_CHECKING:
    from simsearch.backbones import Backbone
    from simsearch.text import TextConfig

# A checkpoint whose config asks for more than this is refused before anything is allocated (400 MB of float32).
_MAX_PARAMETERS = 100_000_000

__all__ = ["Arch", "Encoder", "EncoderConfig", "Pool", "build_encoder"]


HEADS = ("linear", "trunk+projection")
MIN_CONTRAST = 0.05  # autocontrast stretches at most 20x, so a blank page's noise stays noise
DCT_SIDE = 32  # a DCT part's picture side (pHash's)
_LUMA = torch.tensor([0.299, 0.587, 0.114])  # ITU-R 601 luma, as Pillow's "L"


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture and input of an encoder: everything needed to rebuild it from its weights."""

    arch: Arch = Arch.CONV4
    preprocess: Preprocess = field(default_factory=Preprocess)
    widths: tuple[int, ...] = (64, 96, 128, 256)
    embedding_dim: int = 256
    pool: Pool = Pool.AVG
    # arch "backbone": the library network (its own stages; widths and pool are unused)
    backbone: Backbone | None = None
    # a text tower of simsearch's own (simsearch.text) beside the image network: text queries
    text: TextConfig | None = None
    # "linear": the embedding is a projection of the features (or the features themselves);
    # "trunk+projection": the centred features and a projection of them, side by side with equal weight
    # (embedding_dim = feature_dim + the projection's length): a trunk's generality kept beside a learnt view
    head: str = "linear"
    projection_weight: float = 0.5  # trunk+projection: the projection's share of the cosine
    # a second, whole-picture network beside this one (its own config and weights, fed the same input shrunk
    # to its size): the embedding is [its embedding, this network's], the cosine companion_weight x its
    # cosine + the rest x this network's; embedding_dim counts both
    companion: EncoderConfig | None = None
    companion_weight: float = 0.5
    # a part beside the network(s) with no learnt weights: pHash's measurement kept as numbers (DctPart), the
    # dct x dct lowest frequencies of the picture's 32x32 grayscale, less the constant one (dct**2 - 1 numbers,
    # counted in embedding_dim): the cosine dct_weight x that part's + the rest x the networks'. 0: none
    dct: int = 0
    dct_weight: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch", Arch.parse(str(getattr(self.arch, "value", self.arch))))
        object.__setattr__(self, "pool", Pool.parse(str(getattr(self.pool, "value", self.pool))))
        if (self.arch is Arch.BACKBONE) != (self.backbone is not None):
            raise ValueError('arch "backbone" and a backbone description go together')
        if self.embedding_dim <= 0:
            raise ConfigError("{fields} must be positive", ["embedding_dim"])
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, not {self.head!r}")
        if not 0.0 < self.projection_weight < 1.0:
            raise ValueError("projection_weight must be between 0 and 1")
        if self.head == "trunk+projection" and self.head_dim <= self.feature_dim:
            raise ValueError("a trunk+projection head's embedding_dim is the features' length plus the projection's")
        if self.companion is not None:
            self._check_companion(self.companion)
        if (self.dct > 0) != (self.dct_weight > 0) or not (self.dct == 0 or 2 <= self.dct <= DCT_SIDE):
            raise ValueError(f"a DCT part keeps 2 to {DCT_SIDE} frequencies a side (dct) with a weight, or neither")
        if not 0.0 <= self.dct_weight < 1.0 or self.head_dim <= 0:
            raise ValueError("dct_weight must be at least 0 and below 1, and embedding_dim count the DCT part")
        if self.backbone is not None:
            if self.text is not None:
                raise ValueError("a library backbone brings its own text tower, if any")
            return  # its size is bounded when it is built (simsearch.backbones.build_trunk)
        if not self.widths or any(w <= 0 for w in self.widths):
            raise ConfigError("{fields} must be a non-empty list of positive channel counts", ["widths"])
        if self.preprocess.size < 2 ** len(self.widths):
            raise ConfigError(
                f"input size ({{size}}) {self.preprocess.size} is too small for {len(self.widths)} stages ({{widths}})",
                size="size",
                widths="widths",
            )
        if self.parameter_bound > _MAX_PARAMETERS:  # refuse before anything is allocated
            raise ValueError(
                f"widths {list(self.widths)} and embedding_dim {self.embedding_dim} make a network of about "
                f"{self.parameter_bound:,} parameters, over the limit of {_MAX_PARAMETERS:,}"
            )

    def _check_companion(self, other: EncoderConfig) -> None:
        mine, its = self.preprocess, other.preprocess
        if other.companion is not None or other.dct or other.supports_text or self.supports_text:
            raise ValueError("a companion network is one image network beside an image network, no more")
        if its.channels != mine.channels or its.size > mine.size:
            raise ValueError("a companion network takes the same channels at the same size or smaller")
        if its.crop != mine.crop or its.fit_ink or its.face or mine.fit_ink or mine.face:
            raise ValueError("a companion network sees the same centre crop of the picture (no ink or face framing)")
        if not 0.0 < self.companion_weight < 1.0 or self.head_dim <= 0:
            raise ValueError("companion_weight must be between 0 and 1, and embedding_dim count both networks")

    @property
    def head_dim(self) -> int:
        """The length of this network's own embedding (embedding_dim less a companion's and a DCT part's)."""
        return self.embedding_dim - (self.companion.embedding_dim if self.companion is not None else 0) - self.dct_dim

    @property
    def dct_dim(self) -> int:
        """The DCT part's length (0: none)."""
        return self.dct * self.dct - 1 if self.dct else 0

    @property
    def parameter_bound(self) -> int:
        """An upper bound on the parameter count (two 3x3 convolutions a stage, the head), from the config alone."""
        chans = [self.preprocess.channels, *self.widths]
        convs = sum(9 * a * b + 9 * b * b + a * b for a, b in pairwise(chans))
        return convs + self.feature_dim * self.embedding_dim

    @property
    def supports_text(self) -> bool:
        """Whether text can be embedded beside images (a CLIP-family backbone, or simsearch's own text tower)."""
        return self.text is not None or (self.backbone is not None and self.backbone.has_text)

    @property
    def feature_dim(self) -> int:
        """Length of the vector the stages hand to the head: the last width, times the final map's
        positions when it is flattened (each stage halves the side, rounding down); a backbone's own."""
        if self.backbone is not None:
            return self.backbone.feature_dim
        side = self.preprocess.size
        for _ in self.widths:
            side //= 2
        return self.widths[-1] * (side * side if self.pool is Pool.FLATTEN else 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        d["arch"] = self.arch.value
        d["pool"] = self.pool.value
        if self.backbone is None:
            del d["backbone"]
        else:
            d["backbone"] = self.backbone.to_dict()
        if self.text is None:
            del d["text"]
        else:
            d["text"] = self.text.to_dict()
        if self.head == "linear":  # model.json files written before heads had a name stay as they were
            del d["head"], d["projection_weight"]
        if self.companion is None:  # nor those written before companions
            del d["companion"], d["companion_weight"]
        else:
            d["companion"] = self.companion.to_dict()
        if not self.dct:  # nor those written before DCT parts
            del d["dct"], d["dct_weight"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        backbone = text = None
        if d.get("backbone") is not None:
            from simsearch.backbones import Backbone

            backbone = Backbone.from_dict(d["backbone"])
        if d.get("text") is not None:
            from simsearch.text import TextConfig

            text = TextConfig.from_dict(d["text"])
        return cls(
            arch=Arch.parse(d["arch"]),
            preprocess=Preprocess.from_dict(d.get("preprocess", {})),
            widths=tuple(int(w) for w in d.get("widths", ())),
            embedding_dim=int(d["embedding_dim"]),
            pool=Pool.parse(d.get("pool", Pool.AVG.value)),
            backbone=backbone,
            text=text,
            head=str(d.get("head", "linear")),
            projection_weight=float(d.get("projection_weight", 0.5)),
            companion=cls.from_dict(d["companion"]) if d.get("companion") is not None else None,
            companion_weight=float(d.get("companion_weight", 0.5)),
            dct=int(d.get("dct", 0)),
            dct_weight=float(d.get("dct_weight", 0.0)),
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


class TrunkAndProjection(nn.Module):
    """The features as they are and a learnt projection of them (centred first on `center`, the mean of the
    training images' features), each of unit length, weighted so that the cosine of two embeddings is
    (1 - weight) x the trunk's own cosine + weight x the projection's."""

    def __init__(self, features: int, projection: int, weight: float) -> None:
        super().__init__()
        self.center = nn.Parameter(torch.zeros(features), requires_grad=False)
        self.project = nn.Linear(features, projection, bias=False)
        # kept with the weights, so that the fingerprint covers it
        self.share: torch.Tensor
        self.register_buffer("share", torch.tensor(float(weight)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = F.normalize(self.project(x - self.center), dim=1)
        return torch.cat([F.normalize(x, dim=1) * (1 - self.share).sqrt(), p * self.share.sqrt()], dim=1)


class DctPart(nn.Module):
    """pHash's measurement kept as numbers (Zauner 2010): the picture's luminance box-filtered to 32x32, its
    2-D DCT, the `keep` x `keep` lowest frequencies less the constant one, each divided by `spread` (its
    spread over training photos, so that no frequency outweighs the rest; a buffer kept with the weights), of
    unit length. Blind to brightness, contrast and blocks (a faded or pixelated copy keeps it); no learnt
    weights, so training leaves it as it is."""

    def __init__(self, keep: int) -> None:
        super().__init__()
        k = torch.arange(DCT_SIDE, dtype=torch.float64)
        basis = (2.0 / DCT_SIDE) ** 0.5 * torch.cos(torch.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * DCT_SIDE))
        basis[0] /= 2.0**0.5
        self.keep = keep
        self.basis: torch.Tensor
        self.register_buffer("basis", basis[:keep].float(), persistent=False)
        self.spread: torch.Tensor
        self.register_buffer("spread", torch.ones(keep * keep - 1))

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """(N, keep**2 - 1) DCT coefficients of (N, C, H, W) input in [0, 1], before `spread`."""
        gray = x[:, 0] if x.shape[1] == 1 else torch.tensordot(x[:, :3].float(), _LUMA.to(x.device), dims=([1], [0]))
        small = F.adaptive_avg_pool2d(gray[:, None].float(), DCT_SIDE)[:, 0] * 255.0
        coeffs = self.basis @ small @ self.basis.T
        return coeffs.flatten(1)[:, 1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.coefficients(x) / self.spread.clamp_min(1e-6), dim=1)


class Encoder(nn.Module):
    """Shared-weight embedding network.

    forward: (N, C, H, W) float in [0, 1] -> (N, D) float32, each row of unit L2 norm.
    embed_text (encoders with `config.supports_text`): N strings -> (N, D) rows in the same space.

    `features` is the stack of stages (conv4, resnet) or a library network (simsearch.backbones,
    which hands the head pooled features); `head` maps the features to the embedding (or is the
    identity); `text` is simsearch's own text tower when the config has one.
    """

    def __init__(self, config: EncoderConfig, trunk: nn.Module | None = None) -> None:
        """`trunk`: the backbone's library network itself (an import), instead of building one."""
        super().__init__()
        self.config = config
        pre = config.preprocess
        self.frozen: list[nn.Module] = []  # modules that training leaves alone (kept in eval mode): freeze()
        if config.backbone is not None:
            from simsearch.backbones import build_trunk

            self.features: nn.Module = build_trunk(config.backbone, trunk)
        else:
            stages: list[nn.Module] = []
            c = pre.channels
            for w in config.widths:
                stages.append(_conv_block(c, w) if config.arch is Arch.CONV4 else _ResidualStage(c, w))
                c = w
            self.features = nn.Sequential(*stages)
        c = config.feature_dim
        self.head: nn.Module
        own = config.head_dim
        if config.head == "trunk+projection":
            self.head = TrunkAndProjection(c, own - c, config.projection_weight)
        else:
            self.head = nn.Identity() if c == own else nn.Linear(c, own)
        self.companion = Encoder(config.companion) if config.companion is not None else None
        self.dct = DctPart(config.dct) if config.dct else None
        self.text: nn.Module | None = None
        if config.text is not None:
            from simsearch.text import TextTower

            self.text = TextTower(config.text, config.embedding_dim)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(pre.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pre.std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.normalize(self.head(self.pooled(x)).float(), dim=1)
        if self.companion is not None:
            side = self.companion.config.preprocess.size
            small = x if x.shape[-1] == side else F.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
            w = self.config.companion_weight
            out = torch.cat([self.companion(small) * w**0.5, out * (1 - w) ** 0.5], dim=1)
        if self.dct is not None:
            a = self.config.dct_weight
            out = torch.cat([out * (1 - a) ** 0.5, self.dct(x) * a**0.5], dim=1)
        return out

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """What the head receives: the pooled features of (N, C, H, W) input in [0, 1], before any projection."""
        if self.config.preprocess.invert:
            x = 1.0 - x
        if self.config.preprocess.autocontrast:
            low = x.amin(dim=(1, 2, 3), keepdim=True)
            x = (x - low) / (x.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(MIN_CONTRAST)
        x = (x - self.mean) / self.std
        x = self.features(x)
        if self.config.backbone is None:
            x = torch.flatten(F.adaptive_avg_pool2d(x, 1) if self.config.pool is Pool.AVG else x, 1)
        return x

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """(N, D) unit rows for N strings, in the images' space. Raises ValueError for an image-only encoder."""
        if self.text is not None:
            x = self.text(self.text.tokenize(texts).to(self.mean.device))  # type: ignore[operator]
        elif self.config.backbone is not None and self.config.backbone.has_text:
            x = self.head(self.features.encode_text(texts))  # type: ignore[operator]
        else:
            raise ValueError("this encoder embeds images only; text queries need a CLIP-family encoder")
        return F.normalize(x.float(), dim=1)

    def train(self, mode: bool = True) -> Encoder:
        super().train(mode)
        for m in self.frozen:  # frozen stages keep their batch-norm statistics
            m.eval()
        return self


def build_encoder(config: EncoderConfig, pretrained: bool = True) -> Encoder:
    """A freshly initialized encoder for `config`: a trunk whose weights ship in an installed package
    (simsearch.backbones) gets them, unless `pretrained` is off (weights that are about to be replaced)."""
    encoder = Encoder(config)
    bb = config.backbone
    if pretrained and bb is not None and bb.package_weights:
        encoder.features.load_package_weights(bb)  # type: ignore[operator]
    return encoder
