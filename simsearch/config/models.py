"""`simsearch models import` and `demo`'s settings, each declared once with its default and help text. Free of
torch, faiss and click; the CLI builds its options from these fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simsearch.config.options import option

__all__ = ["DemoOptions", "ImportOptions"]


@dataclass(frozen=True)
class ImportOptions:
    out: Path = option(help="Folder for the checkpoint.", kind="path")
    weights: Path | None = option(
        None,
        "The network's weights from a file you have (.safetensors, or a PyTorch .pth/.pt/.bin state dict, read "
        "without running code). The classifier's weights, if any, are dropped.",
        kind="path",
    )
    pretrained: str | None = option(
        None,
        "Let the library download its pretrained weights (needs the network): alone, timm's or torchvision's "
        "default; or a tag (OpenCLIP needs one: e.g. openai, laion2b_s34b_b79k; torchvision: IMAGENET1K_V1; timm: a "
        "pretrained tag such as in1k).",
        metavar="[TAG]",
        flag_value="default",
    )
    random_init: bool = option(False, "Random weights: for trying the pipeline, or training from scratch.")
    size: int | None = option(
        None,
        "Input side in pixels (default: the network's own, e.g. 224). Networks that pool their last map take "
        "any size; smaller is faster.",
        bounds=(8, 512),
    )
    config_path: Path | None = option(
        None,
        "OpenCLIP only: a model config JSON (embed_dim, vision_cfg, text_cfg) for a model the library does not name.",
        flag="--config",
        kind="path",
    )


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path = option(
        Path("simsearch-demo"), "Folder for the demo's gallery, queries and index.", flag="--out", kind="path"
    )
    data: Path | None = option(
        None, "Use this folder-per-class set as the gallery instead of drawing one.", kind="path"
    )
