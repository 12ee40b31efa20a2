import json

import pytest
import torch

from simsearch.checkpoint import load_checkpoint, save_checkpoint, weights_bytes
from simsearch.encoder import Arch, EncoderConfig, Pool, build_encoder
from simsearch.errors import ModelError
from simsearch.preprocess import Preprocess


@pytest.mark.parametrize("arch, channels, pool", [("conv4", 1, "avg"), ("resnet", 3, "avg"), ("conv4", 1, "flatten")])
def test_round_trip_is_bit_for_bit(tmp_path, arch, channels, pool):
    torch.manual_seed(0)
    pre = Preprocess(channels=channels, size=32, invert=channels == 1, mean=(0.5,) * channels, std=(0.25,) * channels)
    enc = build_encoder(EncoderConfig(arch=Arch(arch), preprocess=pre, widths=(8, 16), embedding_dim=12, pool=pool))
    fp = save_checkpoint(enc, tmp_path, {"note": "test"})
    loaded = load_checkpoint(str(tmp_path))
    assert loaded.fingerprint == fp and loaded.config == enc.config
    assert weights_bytes(loaded.encoder) == weights_bytes(enc)
    x = torch.rand(3, channels, 32, 32)
    enc.eval()
    out = loaded.encoder(x)
    assert torch.equal(out, enc(x)) and out.shape == (3, 12)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)


def test_flattened_features_keep_where_each_part_sits(tmp_path):
    # two stages halve 32 pixels twice: an 8 x 8 map of 16 channels, 1,024 numbers once flattened
    pre = Preprocess(size=32)
    flat = EncoderConfig(preprocess=pre, widths=(8, 16), embedding_dim=12, pool=Pool.FLATTEN)
    assert flat.feature_dim == 16 * 8 * 8 and EncoderConfig(preprocess=pre, widths=(8, 16)).feature_dim == 16
    assert EncoderConfig(preprocess=Preprocess(size=28), widths=(4, 4, 4, 4), pool="flatten").feature_dim == 4
    head = build_encoder(flat).head
    assert isinstance(head, torch.nn.Linear) and head.in_features == 1024
    # a drawing turned upside down has the same values in other places: averaging the map cannot
    # tell them apart, flattening can
    torch.manual_seed(0)
    x = torch.zeros(1, 1, 32, 32)
    x[..., 4:12, 4:28] = 1.0
    both = torch.cat([x, x.flip(-1).flip(-2)])
    for pool, differs in (("avg", False), ("flatten", True)):
        torch.manual_seed(0)
        enc = build_encoder(
            EncoderConfig(preprocess=Preprocess(size=32, invert=False), widths=(8, 8), pool=pool)
        ).eval()
        with torch.no_grad():
            make_kernels_half_turn_symmetric(enc)
            out = enc(both)
        assert (not torch.allclose(out[0], out[1], atol=1e-5)) == differs
    # models written before the option existed are averaged
    save_checkpoint(build_encoder(flat), tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["config"]["pool"] == "flatten"
    del meta["config"]["pool"]
    assert EncoderConfig.from_dict(meta["config"]).pool is Pool.AVG
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        EncoderConfig(pool="max")


def make_kernels_half_turn_symmetric(enc: torch.nn.Module) -> None:
    """Make every kernel symmetric under a half turn, so a half-turned input gives a half-turned map."""
    for m in enc.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.weight.copy_((m.weight + m.weight.flip(-1).flip(-2)) / 2)


def test_tampered_weights_and_bad_names_are_refused(tmp_path):
    save_checkpoint(build_encoder(EncoderConfig(widths=(4, 4), embedding_dim=4)), tmp_path)
    data = bytearray((tmp_path / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="fingerprint"):
        load_checkpoint(str(tmp_path))
    with pytest.raises(ModelError, match="not a built-in encoder"):
        load_checkpoint("no-such-model")
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"missing model\.safetensors"):
        load_checkpoint(str(tmp_path))


def test_config_validation():
    with pytest.raises(ValueError, match="allowed: conv4, resnet"):
        EncoderConfig(arch="vit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channels"):
        Preprocess(channels=2, mean=(0, 0), std=(1, 1))
    with pytest.raises(ValueError, match="too small"):
        EncoderConfig(preprocess=Preprocess(size=8), widths=(4, 4, 4, 4))


def test_default_encoder_is_shipped_and_loads():
    loaded = load_checkpoint(None)
    assert loaded.source == "characters"
    meta = json.loads(json.dumps(loaded.meta))
    assert meta["fingerprint"] == loaded.fingerprint


def test_autocontrast_makes_a_faint_drawing_look_like_a_bold_one(tmp_path):
    torch.manual_seed(0)
    bold = torch.ones(2, 1, 28, 28)
    bold[0, :, 8:20, 13:15] = 0.0  # black strokes on white paper
    bold[1, :, 13:15, 6:22] = 0.0
    faint = 1.0 - 0.25 * (1.0 - bold)  # the same strokes in light pencil, on grey-ish paper below
    faint_on_grey = faint * 0.9
    plain = build_encoder(EncoderConfig(widths=(8, 16), embedding_dim=8)).eval()
    cfg = EncoderConfig(preprocess=Preprocess(autocontrast=True), widths=(8, 16), embedding_dim=8)
    stretched = build_encoder(cfg).eval()
    stretched.load_state_dict(plain.state_dict())
    with torch.no_grad():
        assert torch.allclose(stretched(faint), stretched(bold), atol=1e-5)
        assert torch.allclose(stretched(faint_on_grey), stretched(bold), atol=1e-5)
        assert not torch.allclose(plain(faint), plain(bold), atol=1e-3)
    # the option is part of the saved configuration; a model.json written before it existed loads as off
    save_checkpoint(stretched, tmp_path)
    assert load_checkpoint(str(tmp_path)).config.preprocess.autocontrast is True
    meta = json.loads((tmp_path / "model.json").read_text())
    del meta["config"]["preprocess"]["autocontrast"]
    (tmp_path / "model.json").write_text(json.dumps(meta))
    assert load_checkpoint(str(tmp_path)).config.preprocess.autocontrast is False


def _small_checkpoint(folder, widths=(8, 16)):
    torch.manual_seed(0)
    pre = Preprocess(channels=1, size=32, invert=True, mean=(0.5,), std=(0.25,))
    save_checkpoint(build_encoder(EncoderConfig(preprocess=pre, widths=widths, embedding_dim=12)), folder, {})
    return folder


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda f: (f / "model.json").write_text("[]"), "is a list, not an object"),
        (lambda f: (f / "model.json").write_text("null"), "is a NoneType, not an object"),
        (lambda f: (f / "model.json").write_text(_nested(200_000)), "unreadable checkpoint"),
        (lambda f: (f / "model.safetensors").write_bytes(b"garbage!"), "not a readable safetensors"),
        (lambda f: (f / "model.safetensors").write_bytes(b""), "not a readable safetensors"),
        (
            lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:300]),
            "not a readable safetensors",
        ),
        (
            lambda f: (f / "model.safetensors").write_bytes((2**62).to_bytes(8, "little") + b"{}"),
            "not a readable safetensors",
        ),
        (lambda f: ((f / "model.json").unlink(), (f / "model.json").symlink_to("/dev/zero")), "not a regular file"),
        (
            lambda f: (f / "model.json").write_text(
                json.dumps(
                    dict(
                        json.loads((f / "model.json").read_text()),
                        config=dict(json.loads((f / "model.json").read_text())["config"], widths=[20000, 20000, 20000]),
                    )
                )
            ),
            "over the limit",
        ),
    ],
)
def test_a_damaged_checkpoint_is_one_clear_line(tmp_path, damage, why):
    folder = _small_checkpoint(tmp_path / "ck")
    meta = json.loads((folder / "model.json").read_text())
    meta.pop("fingerprint", None)  # so that damaged weights reach the reader, not the fingerprint check
    (folder / "model.json").write_text(json.dumps(meta))
    damage(folder)
    with pytest.raises(ModelError, match=why) as err:
        load_checkpoint(str(folder))
    assert "\n" not in str(err.value)


def test_weights_of_another_shape_are_one_line(tmp_path):
    folder = _small_checkpoint(tmp_path / "ck")
    other = _small_checkpoint(tmp_path / "other", widths=(8, 24))
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    meta = json.loads((folder / "model.json").read_text())
    meta.pop("fingerprint")
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="does not fit its config") as err:
        load_checkpoint(str(folder))
    assert "\n" not in str(err.value)
