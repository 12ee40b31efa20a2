"""`simsearch models import`: a library network (timm, torchvision, OpenCLIP) and its weights made into an
ordinary simsearch checkpoint. Weights come from a file the user gives, or from the library's own cache
(--pretrained), never fetched here; the checkpoint then records the network as data (simsearch.backbones),
so loading it needs no download either."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simsearch.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    openclip_model,
    openclip_tokenizer,
    parse_spec,
    require,
    strip_torchvision_classifier,
)
from simsearch.checkpoint import save_checkpoint
from simsearch.encoder import Arch, Encoder, EncoderConfig
from simsearch.errors import ConfigError, ModelError, first_line, literal
from simsearch.preprocess import Preprocess

__all__ = ["Imported", "import_backbone"]


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
    return strip_torchvision_classifier(model), pre


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
    openclip_tokenizer(open_clip, name, cfg)  # refuse hub tokenizers before building anything
    if pretrained is not None and not pretrained:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise ModelError(f"openclip:{name}: say which pretrained weights, --pretrained TAG (its tags: {tags})")
    if pretrained is not None:
        model = open_clip.create_model(name, pretrained=pretrained)
    else:
        model = openclip_model(open_clip, cfg)
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
        raise ConfigError(
            "say where the weights come from: a weights file ({weights}), the library's download ({pretrained}) "
            "or random initialization ({random_init})" + (f"; not {literal(' and '.join(chosen))}" if chosen else ""),
            weights="weights",
            pretrained="pretrained",
            random_init="random_init",
        )
    if config is not None and library != "openclip":
        raise ConfigError(
            "{fields} is an OpenCLIP model config; timm and torchvision models are named", ["config_path"]
        )
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
