"""Backbone descriptions and freezing, without the model libraries: what a clone without the extras
must still get right (specs, model.json round trips, a clear message where a library is missing)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from simsearch.backbones import Backbone, parse_spec
from simsearch.encoder import Arch, EncoderConfig, build_encoder
from simsearch.errors import ModelError
from simsearch.preprocess import Preprocess
from simsearch.train.freeze import freeze, trainable_blocks
from tests.conftest import run_cli


def test_parse_spec() -> None:
    assert parse_spec("timm:resnet18") == ("timm", "resnet18")
    assert parse_spec("OpenCLIP:ViT-B-32") == ("openclip", "ViT-B-32")
    assert parse_spec("open_clip:RN50") == ("openclip", "RN50")
    for bad in ("resnet18", "keras:resnet", "timm:", ":x"):
        with pytest.raises(ValueError, match="LIBRARY:MODEL"):
            parse_spec(bad)


def test_backbone_config_round_trip() -> None:
    cfg = EncoderConfig(
        arch=Arch.BACKBONE,
        preprocess=Preprocess(channels=3, size=224, invert=False, mean=(0.5,) * 3, std=(0.25,) * 3),
        widths=(),
        embedding_dim=128,
        backbone=Backbone("openclip", "tiny", 32, {"embed_dim": 32, "vision_cfg": {"layers": [2, 2]}}),
    )
    again = EncoderConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.feature_dim == 32 and again.supports_text
    assert not EncoderConfig().supports_text
    with pytest.raises(ValueError, match="go together"):
        EncoderConfig(arch=Arch.BACKBONE)


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed here")
def test_missing_library_is_named_with_its_extra(tmp_path: Path) -> None:
    proc = run_cli("models", "import", "timm:resnet18", "--random-init", "--out", tmp_path / "m")
    assert proc.returncode == 1 and "pip install 'simsearch[backbones]'" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "m").exists()
    # a checkpoint of a backbone, opened where its library is missing: the same message, not a traceback
    from simsearch.checkpoint import load_checkpoint

    model = tmp_path / "imported"
    model.mkdir()
    cfg = EncoderConfig(
        arch=Arch.BACKBONE,
        preprocess=Preprocess(channels=3, size=64, invert=False, mean=(0.5,) * 3, std=(0.25,) * 3),
        widths=(),
        embedding_dim=512,
        backbone=Backbone("timm", "resnet18", 512),
    )
    (model / "model.json").write_text(json.dumps({"format_version": 1, "config": cfg.to_dict()}))
    (model / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match=r"needs timm.*simsearch\[backbones\]"):
        load_checkpoint(str(model))


def test_freeze_keeps_all_but_the_last_blocks_and_their_batch_norm_still() -> None:
    enc = build_encoder(EncoderConfig(widths=(8, 8, 16, 16), embedding_dim=8))
    blocks = trainable_blocks(enc)
    assert len(blocks) == 4 and all(len(g) == 1 for g in blocks)
    trainable, total = freeze(enc, 1)
    last = blocks[-1][0]
    assert trainable == sum(p.numel() for p in last.parameters()) + sum(p.numel() for p in enc.head.parameters())
    assert 0 < trainable < total
    enc.train()
    bn_first = blocks[0][0][1]
    assert not bn_first.training and last[1].training
    before = bn_first.running_mean.clone()
    enc(torch.rand(4, 1, 28, 28))
    assert torch.equal(before, bn_first.running_mean)
    with pytest.raises(ValueError, match="nothing left to train"):
        freeze(build_encoder(EncoderConfig(widths=(8, 8, 16, 16), embedding_dim=16)), 0)


def test_starting_weights_may_lack_only_a_new_head_or_text_tower() -> None:
    from simsearch.errors import SimSearchError
    from simsearch.text import TextConfig
    from simsearch.train.loop import training_encoder

    cfg = EncoderConfig(widths=(8, 8, 16, 16), embedding_dim=16)
    weights = build_encoder(cfg).state_dict()
    with_text = EncoderConfig(widths=(8, 8, 16, 16), embedding_dim=16, text=TextConfig(vocabulary=("red",)))
    assert training_encoder(with_text, torch.device("cpu"), weights).text is not None  # a new text tower: fine
    with pytest.raises(SimSearchError, match="no place for"):
        training_encoder(cfg, torch.device("cpu"), {**weights, "stray.weight": torch.zeros(1)})
    with pytest.raises(SimSearchError, match="lack 1 "):
        training_encoder(cfg, torch.device("cpu"), {k: v for k, v in weights.items() if k != "features.0.0.weight"})
