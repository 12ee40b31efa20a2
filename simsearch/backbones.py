"""Networks from model libraries as simsearch encoders: timm and torchvision image models, OpenCLIP
image-text models.

A backbone is described by data (`Backbone`: library, model name, feature length, the library's own
options; for OpenCLIP the whole model config), so an imported encoder is an ordinary checkpoint:
model.safetensors holds the library network's weights under `features.model.`, model.json its
description, and load_checkpoint rebuilds it with random weights (nothing is downloaded) before
loading them. `import_backbone` makes such a checkpoint from a weights file the user gives, from
the library's own download (`pretrained`, where the machine can reach it), or from random weights.

The libraries are optional extras, imported only here and only when a backbone is built:
`simsearch[backbones]` (timm, torchvision), `simsearch[clip]` (OpenCLIP).
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from simsearch.errors import ModelError, first_line

if TYPE_CHECKING:
    from simsearch.encoder import Encoder

__all__ = [
    "LIBRARIES",
    "MAX_PARAMETERS",
    "Backbone",
    "build_trunk",
    "freeze",
    "import_backbone",
    "parse_spec",
    "trainable_blocks",
]

# library name in a spec -> (Python module, the simsearch extra that installs it)
LIBRARIES: dict[str, tuple[str, str]] = {
    "timm": ("timm", "backbones"),
    "torchvision": ("torchvision", "backbones"),
    "openclip": ("open_clip", "clip"),
}
# a backbone bigger than this is refused before its weights are allocated (ViT-bigG-14 has 2.5 G)
MAX_PARAMETERS = 3_000_000_000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_spec(spec: str) -> tuple[str, str]:
    """'timm:resnet18' -> ('timm', 'resnet18'). Raises ValueError naming the libraries for anything else."""
    library, sep, name = spec.partition(":")
    library = library.strip().lower().replace("_", "").replace("-", "")
    if not sep or library not in LIBRARIES or not name.strip():
        raise ValueError(
            f"{spec!r} names no backbone: say LIBRARY:MODEL with LIBRARY one of {', '.join(LIBRARIES)} "
            "(e.g. timm:resnet18, torchvision:resnet18, openclip:ViT-B-32)"
        )
    return library, name.strip()


def require(library: str) -> ModuleType:
    """The library's module, or ModelError saying which extra installs it."""
    module, extra = LIBRARIES[library]
    try:
        return importlib.import_module(module)
    except Exception as err:  # ImportError, or torchvision's operator errors beside a mismatched torch
        raise ModelError(
            f"this encoder needs {module}, which does not import here ({first_line(err)}); "
            f"install it with: pip install 'simsearch[{extra}]' (see docs/models/backbones.md)"
        ) from None


@dataclass(frozen=True)
class Backbone:
    """A library network, as data: rebuilt with random weights from this alone."""

    library: str  # timm | torchvision | openclip
    name: str  # the library's model name
    feature_dim: int  # length of the pooled features (OpenCLIP: the shared image-text space)
    options: Mapping[str, Any] = field(default_factory=dict)  # timm: create_model kwargs; openclip: model config

    def __post_init__(self) -> None:
        if self.library not in LIBRARIES:
            raise ValueError(f"unknown backbone library {self.library!r} (known: {', '.join(LIBRARIES)})")
        if self.feature_dim <= 0:
            raise ValueError("a backbone's feature_dim must be positive")
        _check_options(self.library, self.options)

    @property
    def has_text(self) -> bool:
        """OpenCLIP models carry a text tower in the images' space."""
        return self.library == "openclip"

    @property
    def spec(self) -> str:
        return f"{self.library}:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "library": self.library,
            "name": self.name,
            "feature_dim": self.feature_dim,
            "options": json.loads(json.dumps(self.options)),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Backbone:
        return cls(
            library=str(d["library"]),
            name=str(d["name"]),
            feature_dim=int(d["feature_dim"]),
            options=dict(d.get("options") or {}),
        )


# timm / torchvision create_model keywords a model.json may hold: shape and regularization, nothing that names
# a file or a download (timm's checkpoint_path, pretrained_cfg_overlay, ... are refused: every load would read it)
_NETWORK_OPTIONS = frozenset({"drop_rate", "drop_path_rate", "img_size", "in_chans", "global_pool", "num_frames"})
# anywhere in an OpenCLIP model config: keys that make the library download or read a file when it builds
_FETCHING_KEYS = ("pretrained", "checkpoint", "cache_dir", "hf_model_name", "hf_tokenizer_name", "url", "hub")


def _check_options(library: str, options: Mapping[str, Any]) -> None:
    """A model.json's library options are data, never a way to make a load download or read a path:
    timm/torchvision keywords from an allow-list; an OpenCLIP config without any download or file key
    (`timm_model_pretrained`, `hf_model_pretrained`, `checkpoint_path`, ...), at any depth."""
    if library in ("timm", "torchvision"):
        stray = sorted(k for k in options if k not in _NETWORK_OPTIONS)
        if stray:
            raise ValueError(
                f"backbone option(s) {', '.join(map(repr, stray))} are not allowed in model.json "
                f"(allowed: {', '.join(sorted(_NETWORK_OPTIONS))})"
            )
        return

    def walk(value: Any, where: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                key = str(k).lower()
                if any(bad in key for bad in _FETCHING_KEYS) or key.endswith(("_path", "_file", "_dir")):
                    if v not in (None, False, "", 0):
                        raise ValueError(
                            f"OpenCLIP config key {where}{k} = {v!r} would make loading download or read a file; "
                            "simsearch never does (remove it from model.json)"
                        )
                walk(v, f"{where}{k}.")
        elif isinstance(value, list):
            for v in value:
                walk(v, where)

    walk(options, "")


# ------------------------------------------------------------------ the trunks: library network -> (N, F)


class _TimmTrunk(nn.Module):
    """timm model without its classifier (num_classes=0): pooled features."""

    def __init__(self, bb: Backbone, model: nn.Module | None = None) -> None:
        super().__init__()
        if model is None:
            timm = require("timm")
            model = timm.create_model(bb.name, pretrained=False, num_classes=0, **dict(bb.options))
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.model(x), 1)


def _strip_torchvision_classifier(model: nn.Module) -> nn.Module:
    """Replace a torchvision classifier's last linear layer with the identity (fc, classifier, heads)."""
    for attr in ("fc", "heads", "head", "classifier"):
        part = getattr(model, attr, None)
        if part is None:
            continue
        if isinstance(part, nn.Linear):
            setattr(model, attr, nn.Identity())
            return model
        if isinstance(part, nn.Sequential):  # keep what comes before the last Linear (ConvNeXt's norm + flatten)
            idx = [i for i, m in enumerate(part) if isinstance(m, nn.Linear)]
            if idx:
                part[idx[-1]] = nn.Identity()
                return model
    raise ModelError(f"cannot find the classifier of torchvision model {type(model).__name__} to remove")


class _TorchvisionTrunk(nn.Module):
    def __init__(self, bb: Backbone, model: nn.Module | None = None) -> None:
        super().__init__()
        if model is None:
            tv = require("torchvision")
            model = _strip_torchvision_classifier(tv.models.get_model(bb.name, weights=None, **dict(bb.options)))
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if not isinstance(out, torch.Tensor):  # inception/googlenet in training mode return a tuple
            out = out[0]
        return torch.flatten(out, 1)


def _openclip_model(open_clip: ModuleType, cfg: Mapping[str, Any]) -> nn.Module:
    """An OpenCLIP model with random weights from its config, of the class open_clip.create_model would
    pick: CoCa or CustomTextCLIP for configs marked `custom_text` (EVA, CoCa), else CLIP. The marker
    itself is no argument of those classes."""
    kwargs = dict(cfg)
    custom = kwargs.pop("custom_text", False) or kwargs.get("text_cfg", {}).get("hf_model_name")
    cls = (open_clip.CoCa if "multimodal_cfg" in kwargs else open_clip.CustomTextCLIP) if custom else open_clip.CLIP
    return cls(**kwargs)  # type: ignore[no-any-return]


def _openclip_tokenizer(open_clip: ModuleType, bb_name: str, cfg: Mapping[str, Any]) -> Any:
    """OpenCLIP's own BPE tokenizer (its vocabulary ships in the wheel). Models whose text tower needs a
    Hugging Face tokenizer (fetched from the hub) are refused: nothing may be downloaded at run time."""
    text = cfg.get("text_cfg", {})
    if text.get("hf_tokenizer_name") or text.get("hf_model_name") or "siglip" in bb_name.lower():
        raise ModelError(
            f"openclip:{bb_name} tokenizes text with a Hugging Face tokenizer, which would be downloaded; "
            "simsearch supports OpenCLIP models with OpenCLIP's own tokenizer (CLIP, OpenCLIP ViT and RN models)"
        )
    kwargs = dict(text.get("tokenizer_kwargs", {}))
    return open_clip.tokenizer.SimpleTokenizer(context_length=int(text.get("context_length", 77)), **kwargs)


class _OpenClipTrunk(nn.Module):
    """An OpenCLIP model: images through its visual tower (the shared space), text through its text tower."""

    def __init__(self, bb: Backbone, model: nn.Module | None = None) -> None:
        super().__init__()
        open_clip = require("openclip")
        cfg = dict(bb.options)
        self.tokenizer = _openclip_tokenizer(open_clip, bb.name, cfg)
        if model is None:
            model = _openclip_model(open_clip, cfg)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)  # type: ignore[operator,no-any-return]

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model.encode_text(self.tokenizer(texts).to(device)).float()  # type: ignore[operator,no-any-return]

    def image_modules(self) -> nn.Module:
        return self.model.visual  # type: ignore[return-value]


_TRUNKS: dict[str, type[nn.Module]] = {"timm": _TimmTrunk, "torchvision": _TorchvisionTrunk, "openclip": _OpenClipTrunk}


def _count_on_meta(bb: Backbone) -> int:
    """Parameters of the backbone, counted on PyTorch's meta device (no memory allocated)."""
    try:
        with torch.device("meta"):
            trunk = _TRUNKS[bb.library](bb)
    except ModelError:
        raise
    except Exception as err:  # unchecked size is no size: refuse rather than allocate for real
        raise ModelError(f"cannot check the size of {bb.spec} before building it ({first_line(err)})") from None
    return sum(p.numel() for p in trunk.parameters())


def build_trunk(bb: Backbone, model: nn.Module | None = None) -> nn.Module:
    """The backbone with random weights (never downloaded), refused over MAX_PARAMETERS before
    allocation; or, given the library's `model` itself (an import), that model wrapped."""
    if model is not None:
        return _TRUNKS[bb.library](bb, model)
    try:
        n = _count_on_meta(bb)
        if n > MAX_PARAMETERS:
            raise ModelError(f"{bb.spec} has {n:,} parameters, over simsearch's limit of {MAX_PARAMETERS:,}")
        return _TRUNKS[bb.library](bb)
    except ModelError:
        raise
    except Exception as err:  # the library's own errors: an unknown model name, bad options
        raise ModelError(f"cannot build {bb.spec}: {first_line(err)}") from None


# ------------------------------------------------------------------ freezing for fine-tuning


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
    if isinstance(features, _OpenClipTrunk):
        units = _units(features.image_modules())
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
        raise ValueError("train_blocks must be 0 or more")
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
        raise ValueError("nothing left to train: give --train-blocks 1 or more, or a --head")
    return trainable, sum(p.numel() for p in encoder.parameters())


# ------------------------------------------------------------------ import: library network -> checkpoint


def _load_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a PyTorch file, never unpickling code (weights_only); common
    wrappings ({"state_dict": ...}, {"model": ...}, DataParallel's "module." prefix) unwrapped."""
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: Any = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelError(f"{path}: not a readable weights file ({first_line(err)})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"{path}: holds no state dict of tensors")
    return {re.sub(r"^module\.", "", k): v for k, v in sd.items()}


def _load_into(model: nn.Module, sd: Mapping[str, torch.Tensor], path: Path, spec: str, drop: tuple[str, ...]) -> None:
    """Load a state dict, tolerating only unexpected classifier keys (`drop` prefixes); every weight
    of the network must be in the file."""
    try:
        res = model.load_state_dict(dict(sd), strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ModelError(f"{path}: the weights do not fit {spec} ({first_line(err)})") from None
    missing = list(res.missing_keys)
    unexpected = [k for k in res.unexpected_keys if not k.startswith(drop)]
    if missing or unexpected:
        some = (missing or unexpected)[:3]
        raise ModelError(
            f"{path}: the weights do not fit {spec} ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"e.g. {', '.join(some)})"
        )


def _timm_network(name: str, weights: Path | None, pretrained: str | None) -> tuple[nn.Module, dict[str, Any]]:
    timm = require("timm")
    if weights is not None:
        model = timm.create_model(name, pretrained=False, num_classes=0)
        sd = _load_weights_file(weights)
        head = getattr(model, "default_cfg", {}).get("classifier", "head") or "head"
        heads = head if isinstance(head, (list, tuple)) else (head,)
        _load_into(model, sd, weights, f"timm:{name}", tuple(f"{h}." for h in heads))
    else:
        full = f"{name}.{pretrained}" if pretrained else name  # timm names its weights model.tag
        model = timm.create_model(full, pretrained=pretrained is not None, num_classes=0)
    cfg = dict(model.pretrained_cfg)
    pre = {
        "size": int(cfg.get("input_size", (3, 224, 224))[-1]),
        "mean": tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN)),
        "std": tuple(float(v) for v in cfg.get("std", IMAGENET_STD)),
    }
    return model, pre


def _torchvision_network(name: str, weights: Path | None, pretrained: str | None) -> tuple[nn.Module, dict[str, Any]]:
    tv = require("torchvision")
    tag = None if pretrained is None else (pretrained or "DEFAULT")
    model = tv.models.get_model(name, weights=tag)
    if weights is not None:
        _load_into(model, _load_weights_file(weights), weights, f"torchvision:{name}", ())
    pre: dict[str, Any] = {"size": 224, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    if tag is not None:
        w = tv.models.get_model_weights(name).verify(tag)
        t = w.transforms()
        pre = {"size": int(t.crop_size[0]), "mean": tuple(t.mean), "std": tuple(t.std)}
    return _strip_torchvision_classifier(model), pre


def _openclip_network(
    name: str, weights: Path | None, pretrained: str | None, config: Path | None
) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    open_clip = require("openclip")
    if config is not None:
        try:
            cfg = json.loads(Path(config).read_text())
        except (OSError, ValueError) as err:
            raise ModelError(f"{config}: not a readable OpenCLIP model config ({first_line(err)})") from None
        cfg = cfg.get("model_cfg", cfg)  # open_clip_config.json wraps it
    else:
        cfg = open_clip.get_model_config(name)
        if cfg is None:
            raise ModelError(f"OpenCLIP has no model {name!r} (open_clip.list_models() lists them; or give --config)")
    if not isinstance(cfg, dict) or "vision_cfg" not in cfg or "text_cfg" not in cfg:
        raise ModelError(f"openclip:{name}: a model config needs embed_dim, vision_cfg and text_cfg")
    _openclip_tokenizer(open_clip, name, cfg)  # refuse hub tokenizers before building anything
    if pretrained is not None and not pretrained:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise ModelError(f"openclip:{name}: say which pretrained weights, --pretrained TAG (its tags: {tags})")
    if pretrained is not None:
        model = open_clip.create_model(name, pretrained=pretrained)
    else:
        model = _openclip_model(open_clip, cfg)
        if weights is not None:
            try:
                open_clip.load_checkpoint(model, str(weights), strict=True, weights_only=True)
            except FileNotFoundError:
                raise ModelError(f"{weights}: no such weights file") from None
            except Exception as err:
                raise ModelError(f"{weights}: the weights do not fit openclip:{name} ({first_line(err)})") from None
    vis = cfg["vision_cfg"]
    size = vis.get("image_size", 224)
    pcfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    pre = {
        "size": int(size if isinstance(size, int) else size[0]),
        "mean": tuple(float(v) for v in pcfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        "std": tuple(float(v) for v in pcfg.get("std", open_clip.OPENAI_DATASET_STD)),
    }
    return model, pre, cfg


@dataclass(frozen=True)
class Imported:
    """What import_backbone wrote."""

    out: Path
    spec: str
    fingerprint: str
    parameters: int
    feature_dim: int
    embedding_dim: int
    size: int
    text: bool
    weights: str  # where the weights came from

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def import_backbone(
    spec: str,
    out: str | Path,
    weights: str | Path | None = None,
    pretrained: str | None = None,
    random_init: bool = False,
    size: int | None = None,
    config: str | Path | None = None,
    head_dim: int | None = None,
) -> Imported:
    """Make a simsearch checkpoint in `out` from a library network: weights from exactly one of a
    file (`weights`), the library's download (`pretrained`: "" for its default, or a tag such as
    OpenCLIP's "openai"; needs the network) or random initialization (`random_init`: tests, or
    training from scratch). `size` replaces the library's input side (networks that pool take any);
    `config` is an OpenCLIP model config JSON for a model the library does not name; `head_dim` adds
    a random linear projection head (usually left to train --head)."""
    from simsearch.checkpoint import save_checkpoint
    from simsearch.encoder import Arch, Encoder, EncoderConfig
    from simsearch.preprocess import Preprocess

    library, name = parse_spec(spec)
    chosen = [
        w
        for w, on in (
            ("a weights file", weights is not None),
            ("--pretrained", pretrained is not None),
            ("--random-init", random_init),
        )
        if on
    ]
    if len(chosen) != 1:
        raise ValueError(
            "say where the weights come from: a weights file (--weights), the library's download (--pretrained) "
            "or random initialization (--random-init)" + (f"; not {' and '.join(chosen)}" if chosen else "")
        )
    if config is not None and library != "openclip":
        raise ValueError("--config is an OpenCLIP model config; timm and torchvision models are named")
    wpath = Path(weights) if weights is not None else None
    options: dict[str, Any] = {}
    try:
        if library == "timm":
            model, pre = _timm_network(name, wpath, pretrained)
        elif library == "torchvision":
            model, pre = _torchvision_network(name, wpath, pretrained)
        else:
            model, pre, options = _openclip_network(name, wpath, pretrained, Path(config) if config else None)
    except ModelError:
        raise
    except Exception as err:  # the library's own: unknown model, no network for a download
        raise ModelError(f"cannot make {library}:{name}: {first_line(err)}") from None
    side = size or pre["size"]
    model.eval()
    with torch.no_grad():
        try:
            probe: Any = model.encode_image if library == "openclip" else model
            feats = probe(torch.zeros(1, 3, side, side))
        except Exception as err:
            raise ModelError(f"{library}:{name} does not take {side}-pixel input ({first_line(err)})") from None
    feature_dim = int(torch.flatten(feats if isinstance(feats, torch.Tensor) else feats[0], 1).shape[1])
    bb = Backbone(library=library, name=name, feature_dim=feature_dim, options=options)
    enc_cfg = EncoderConfig(
        arch=Arch.BACKBONE,
        preprocess=Preprocess(channels=3, size=side, invert=False, mean=tuple(pre["mean"]), std=tuple(pre["std"])),
        widths=(),
        embedding_dim=head_dim or feature_dim,
        backbone=bb,
    )
    encoder = Encoder(enc_cfg, trunk=model)
    source = (
        str(wpath)
        if wpath is not None
        else (f"{library} download ({pretrained or 'default'})" if pretrained is not None else "random initialization")
    )
    fp = save_checkpoint(
        encoder,
        out,
        {"backbone": bb.spec, "weights": source, "imported": True},
        description=f"{bb.spec} imported from {source}",
    )
    return Imported(
        out=Path(out),
        spec=bb.spec,
        fingerprint=fp,
        parameters=sum(p.numel() for p in encoder.parameters()),
        feature_dim=feature_dim,
        embedding_dim=enc_cfg.embedding_dim,
        size=side,
        text=bb.has_text,
        weights=source,
    )
