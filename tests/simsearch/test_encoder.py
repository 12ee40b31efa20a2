"""The encoder networks and their configuration: shapes, unit rows, shared weights, round trips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from simsearch.encoder import Arch, EncoderConfig, Pool, build_encoder
from simsearch.preprocess import Preprocess


@pytest.mark.parametrize("arch", [Arch.CONV4, Arch.RESNET])  # a backbone is built from a library (tests/backbones)
@pytest.mark.parametrize("pool", list(Pool))
def test_forward_gives_unit_rows_of_the_configured_size(arch, pool):
    cfg = EncoderConfig(
        arch=arch,
        preprocess=Preprocess(channels=3, size=32, invert=False, mean=(0.5,) * 3, std=(0.25,) * 3),
        widths=(4, 8, 8),
        embedding_dim=10,
        pool=pool,
    )
    enc = build_encoder(cfg).eval()
    x = torch.rand(5, 3, 32, 32)
    out = enc(x)
    assert out.shape == (5, 10) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)
    # one network for every input: a row does not depend on what else is in the batch
    assert torch.allclose(enc(x[2:3]), out[2:3], atol=1e-5)
    # feature_dim: 32 px halved three times is 4 x 4; flattening keeps every position's 8 channels
    assert cfg.feature_dim == (8 * 16 if pool is Pool.FLATTEN else 8)


def test_config_round_trips_and_old_configs_read_as_average_pooling():
    cfg = EncoderConfig(widths=(8, 16), embedding_dim=7, preprocess=Preprocess(size=16, framing="ink"))
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    old = cfg.to_dict()
    del old["pool"], old["preprocess"]["fit_ink"], old["preprocess"]["autocontrast"], old["preprocess"]["crop"]
    back = EncoderConfig.from_dict(old)
    assert back.pool is Pool.AVG and not back.preprocess.fit_ink and back.preprocess.crop == 1.0


def test_invalid_configs_name_what_is_wrong():
    with pytest.raises(ValueError, match="too small"):
        EncoderConfig(widths=(8, 8, 8, 8, 8), preprocess=Preprocess(size=16))
    with pytest.raises(ValueError, match="architecture"):
        EncoderConfig(arch="vit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fit_ink"):
        Preprocess(channels=3, mean=(0,) * 3, std=(1,) * 3, framing="ink")
    pre = Preprocess()
    assert dataclasses.replace(pre, size=64).size == 64 and pre.mode == "L"


def _assert_round_trip(enc, cfg: EncoderConfig, x: torch.Tensor, out: torch.Tensor, folder) -> None:
    """Saved and loaded back, the encoder has its fingerprint and config and embeds `x` as `out`."""
    from simsearch.checkpoint import load_checkpoint, save_checkpoint

    fp = save_checkpoint(enc, folder)
    back = load_checkpoint(str(folder))
    assert back.fingerprint == fp and back.config == cfg
    with torch.no_grad():
        assert torch.allclose(back.encoder(x), out, atol=1e-6)


def _rgb(size: int) -> Preprocess:
    return Preprocess(channels=3, size=size, invert=False, mean=(0.5,) * 3, std=(0.25,) * 3)


def test_a_companion_network_sits_beside_the_encoder_in_its_embedding_weights_and_checkpoint(tmp_path):
    small = EncoderConfig(arch=Arch.RESNET, preprocess=_rgb(16), widths=(4, 8), embedding_dim=6)
    cfg = EncoderConfig(preprocess=_rgb(32), widths=(4, 8), embedding_dim=10 + 6, companion=small, companion_weight=0.3)
    assert cfg.head_dim == 10 and EncoderConfig.from_dict(cfg.to_dict()) == cfg
    assert "companion" not in small.to_dict()  # model.json of encoders without one is as before
    torch.manual_seed(0)
    enc = build_encoder(cfg).eval()
    assert enc.companion is not None
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        out = enc(x)
        beside = enc.companion(torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", antialias=True))
    assert out.shape == (4, 16) and torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-5)
    # the first part is the companion's own embedding, weighted: cosine = 0.3 x its + 0.7 x the encoder's
    assert torch.allclose(out[:, :6], beside * 0.3**0.5, atol=1e-5)
    _assert_round_trip(enc, cfg, x, out, tmp_path / "m")
    with pytest.raises(ValueError, match="companion"):
        EncoderConfig(
            preprocess=_rgb(32),
            widths=(4, 8),
            embedding_dim=16,
            companion=dataclasses.replace(small, preprocess=_rgb(64)),
        )


def test_a_dct_part_sits_beside_the_networks_and_keeps_a_faded_or_blocky_copy(tmp_path):
    from PIL import Image

    from simsearch.edits import opacity_over, pixelization

    cfg = EncoderConfig(preprocess=_rgb(64), widths=(4, 8), embedding_dim=10 + 15, dct=4, dct_weight=0.2)
    assert cfg.head_dim == 10 and cfg.dct_dim == 15 and EncoderConfig.from_dict(cfg.to_dict()) == cfg
    assert "dct" not in dataclasses.replace(cfg, embedding_dim=10, dct=0, dct_weight=0.0).to_dict()  # as before
    torch.manual_seed(0)
    enc = build_encoder(cfg).eval()
    assert enc.dct is not None
    with torch.no_grad():
        enc.dct.spread.copy_(torch.linspace(1.0, 3.0, 15))  # as a recipe sets it: kept with the weights
    # a picture with structure at every scale; its faded and pixelated copies, and an unrelated picture
    rng = np.random.default_rng(0)
    base = Image.fromarray((rng.random((8, 8, 3)) * 255).astype("uint8")).resize((64, 64), Image.Resampling.BICUBIC)
    other = Image.fromarray((rng.random((8, 8, 3)) * 255).astype("uint8")).resize((64, 64), Image.Resampling.BICUBIC)
    pics = [base, opacity_over(base, rng), pixelization(base, rng), other]
    x = torch.stack([torch.from_numpy(np.array(p)).permute(2, 0, 1).float() / 255 for p in pics])
    with torch.no_grad():
        out = enc(x)
        part = enc.dct(x)
    assert out.shape == (4, 25) and torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-5)
    # the last part is the DCT part, weighted: cosine = 0.2 x its + 0.8 x the network's
    assert torch.allclose(out[:, 10:], part * 0.2**0.5, atol=1e-6)
    cos = part @ part[0]
    assert cos[1] > 0.99 and cos[2] > 0.9 and cos[3] < 0.8, cos  # brightness and contrast gone; blocks kept
    _assert_round_trip(enc, cfg, x, out, tmp_path / "m")
    with pytest.raises(ValueError, match="DCT part"):
        EncoderConfig(preprocess=_rgb(64), widths=(4, 8), embedding_dim=25, dct=4)  # a part with no weight
    with pytest.raises(ValueError, match="companion"):  # a companion is one network, no parts of its own
        EncoderConfig(preprocess=_rgb(64), widths=(4, 8), embedding_dim=10 + 25, companion=cfg)
