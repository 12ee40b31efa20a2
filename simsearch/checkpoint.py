"""Encoder checkpoints on disk: safetensors weights + JSON config, a weights fingerprint, built-in names."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from simsearch.encoder import Encoder, EncoderConfig, build_encoder
from simsearch.errors import ModelError, first_line
from simsearch.files import NotReadable, commit_pair, read_regular, settled_json
from simsearch.model_files import (
    CONFIG_FILE,
    DEFAULT_MODEL,
    WEIGHTS_FILE,
    builtin_models,
    read_model_json,
    resolve_model,
)

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_MODEL",
    "FORMAT_VERSION",
    "WEIGHTS_FILE",
    "LoadedModel",
    "builtin_models",
    "fingerprint_of",
    "load_checkpoint",
    "resolve_model",
    "save_checkpoint",
    "weights_bytes",
]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class LoadedModel:
    """An encoder ready to embed, with where it came from and its weights fingerprint."""

    encoder: Encoder
    config: EncoderConfig
    fingerprint: str
    source: str  # a built-in name or a checkpoint folder path
    meta: dict[str, Any]


def weights_bytes(encoder: Encoder) -> bytes:
    """The canonical safetensors serialization of an encoder's weights (CPU, contiguous). A trunk whose weights
    are still exactly those of its weights package (simsearch.backbones) is left out: it loads from there."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in encoder.state_dict().items()}
    bb = encoder.config.backbone
    if bb is not None and bb.package_weights and encoder.features.is_as_packaged(bb):  # type: ignore[operator]
        tensors = {k: v for k, v in tensors.items() if not k.startswith(_TRUNK)}
        # the package file's hash goes with the weights, so that the fingerprint covers the trunk too
        tensors[_PACKAGE_SHA] = torch.tensor(list(bytes.fromhex(str(bb.options["trunk_sha256"]))), dtype=torch.uint8)
    return st_save(tensors)


_TRUNK = "features."
_PACKAGE_SHA = "trunk_package_sha256"


def _load_weights(encoder: Encoder, tensors: dict[str, torch.Tensor]) -> None:
    """All of the encoder's weights from `tensors`; for a package-weights trunk the checkpoint may hold the
    head alone, when the installed package must hold the weights model.json names (checked here)."""
    bb = encoder.config.backbone
    if bb is not None and bb.package_weights and not any(k.startswith(_TRUNK) for k in tensors):
        tensors = dict(tensors)
        recorded = tensors.pop(_PACKAGE_SHA, None)
        if recorded is None or bytes(recorded.tolist()).hex() != bb.options.get("trunk_sha256"):
            raise KeyError("the trunk's package hash (the weights and model.json name different trunks)")
        encoder.features.load_package_weights(bb)  # type: ignore[operator]
        missing, unexpected = encoder.load_state_dict(tensors, strict=False)
        stray = [k for k in missing if not k.startswith(_TRUNK)] + list(unexpected)
        if stray:
            raise KeyError(f"weights for {', '.join(stray[:3])}")
        return
    encoder.load_state_dict(tensors)


def fingerprint_of(data: bytes) -> str:
    """sha256 of the weights file: two encoders agree exactly when their fingerprints do."""
    return hashlib.sha256(data).hexdigest()


def save_checkpoint(
    encoder: Encoder,
    out_dir: str | os.PathLike[str],
    summary: dict[str, Any] | None = None,
    threshold: float | None = None,
    description: str = "",
) -> str:
    """Write model.safetensors and model.json into `out_dir`; returns the fingerprint.

    `threshold` is the encoder's recommended cosine score for accepting a match (identify's
    default when an index has no calibrated threshold of its own).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = weights_bytes(encoder)
    fp = fingerprint_of(data)
    meta = {
        "format_version": FORMAT_VERSION,
        "config": encoder.config.to_dict(),
        "fingerprint": fp,
        "parameters": sum(p.numel() for p in encoder.parameters()),
        "threshold": threshold,
        "description": description,
        "training": summary or {},
    }
    # one step: a stop between the two writes leaves the old pair or the new one (settled on load), never a mix
    commit_pair(out, WEIGHTS_FILE, data, CONFIG_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    return fp


# the largest weights an allowed config can have: a backbone of simsearch.backbones.MAX_PARAMETERS float32
_MAX_WEIGHTS = 13 << 30


def load_checkpoint(name_or_path: str | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Load an encoder by built-in name or checkpoint folder, never unpickling anything.

    Raises ModelError when files are missing, the JSON is malformed, or the weights do not match
    the fingerprint recorded beside them.
    """
    folder, source = resolve_model(name_or_path)
    try:
        meta = read_model_json(folder)
        config = EncoderConfig.from_dict(meta["config"])  # checked (and bounded) before the weights are read
        if config.backbone is not None:  # its library must be here: say which extra installs it
            from simsearch.backbones import require

            require(config.backbone.library)
        if config.preprocess.face and config.preprocess.face_align == "landmarks":
            from simsearch.faces_dlib import require_dlib

            require_dlib()
        data = read_regular(folder / WEIGHTS_FILE, _MAX_WEIGHTS)
    except FileNotFoundError as err:
        raise ModelError(f"{folder}: incomplete checkpoint, missing {Path(err.filename).name}") from None
    except NotReadable as err:
        raise ModelError(f"{folder}: unreadable checkpoint ({err})") from None
    except (OSError, ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise ModelError(f"{folder}: unreadable checkpoint ({first_line(err)})") from None
    except (KeyError, TypeError, AttributeError) as err:
        raise ModelError(f"{folder}: {CONFIG_FILE} has no usable config ({first_line(err)})") from None
    fp = fingerprint_of(data)
    if meta.get("fingerprint") and meta["fingerprint"] != fp:
        # a save stopped between its weights and its model.json: the new model.json is still pending
        settled = settled_json(folder, CONFIG_FILE, fp, lambda doc: doc.get("fingerprint"))
        if settled is not None:
            meta = settled
            config = EncoderConfig.from_dict(meta["config"])
    if meta.get("fingerprint") and meta["fingerprint"] != fp:
        raise ModelError(f"{folder}: weights do not match the fingerprint in {CONFIG_FILE} (corrupt or replaced)")
    try:
        tensors = st_load(data)
    except Exception as err:  # safetensors raises its own error type for damaged bytes
        raise ModelError(f"{folder}: {WEIGHTS_FILE} is not a readable safetensors file ({first_line(err)})") from None
    try:
        encoder = build_encoder(config, pretrained=False)  # _load_weights reads the package's, if it must
        _load_weights(encoder, tensors)
    except ModelError:
        raise
    except (KeyError, ValueError, TypeError, RuntimeError) as err:
        raise ModelError(f"{folder}: checkpoint does not fit its config ({first_line(err)})") from None
    encoder.eval().to(device)
    return LoadedModel(encoder=encoder, config=config, fingerprint=fp, source=source, meta=meta)
