"""Label-free training: an interrupted run resumes exactly, and a foreign state is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simsearch.checkpoint import load_checkpoint, weights_bytes
from simsearch.datasets import load_pictures
from simsearch.encoder import Arch, EncoderConfig
from simsearch.errors import SimSearchError
from simsearch.preprocess import Preprocess
from simsearch.symbols import write_photos
from simsearch.train import SelfSupConfig, train_self_supervised
from tests.conftest import interrupted_then_resumed

TINY = EncoderConfig(
    arch=Arch.RESNET,
    preprocess=Preprocess(channels=3, size=24, invert=False, mean=(0.5,) * 3, std=(0.25,) * 3),
    widths=(8, 16),
    embedding_dim=16,
)


def test_self_supervised_resume_continues_exactly(tmp_path: Path) -> None:
    pictures, _ = load_pictures(write_photos(tmp_path / "pics", 48, seed=3), max_side=48, progress=False)
    cfg = SelfSupConfig(batch=12, steps=6, val_every=2, val_fraction=0.25, seed=1, device="cpu")
    straight = train_self_supervised(pictures, TINY, cfg, tmp_path / "a", progress=False)

    resumed = interrupted_then_resumed(
        lambda out, **kw: train_self_supervised(pictures, TINY, cfg, out, progress=False, **kw), tmp_path / "b", stop=4
    )
    assert resumed.steps == 6
    assert [h["step"] for h in resumed.history] == [0, 2, 4, 6]
    assert [h["loss"] for h in resumed.history[1:]] == [h["loss"] for h in straight.history[1:]]
    assert resumed.history == json.loads((tmp_path / "b" / "history.json").read_text())
    assert resumed.fingerprint == straight.fingerprint
    a, b = load_checkpoint(str(tmp_path / "a")), load_checkpoint(str(tmp_path / "b"))
    assert weights_bytes(a.encoder) == weights_bytes(b.encoder)
    # the final weights (not only the best checkpoint) match too
    assert (tmp_path / "a" / "resume.safetensors").read_bytes() == (tmp_path / "b" / "resume.safetensors").read_bytes()

    # other settings, or another picture set, cannot continue this state; nothing is overwritten
    before = (tmp_path / "b" / "model.safetensors").read_bytes()
    with pytest.raises(SimSearchError, match="other settings"):
        train_self_supervised(
            pictures, TINY, SelfSupConfig(batch=12, steps=8, val_every=2, val_fraction=0.25, seed=1), tmp_path / "b",
            progress=False, resume=True,
        )  # fmt: skip
    with pytest.raises(SimSearchError, match="other settings"):
        train_self_supervised(pictures[:-1], TINY, cfg, tmp_path / "b", progress=False, resume=True)
    with pytest.raises(SimSearchError, match="nothing to resume"):
        train_self_supervised(pictures, TINY, cfg, tmp_path / "empty", progress=False, resume=True)
    assert (tmp_path / "b" / "model.safetensors").read_bytes() == before


def test_wide_views_change_the_run_and_are_recorded(tmp_path: Path) -> None:
    pictures, _ = load_pictures(write_photos(tmp_path / "pics", 32, seed=4), max_side=48, progress=False)
    runs = {}
    for views in ("classic", "wide"):
        cfg = SelfSupConfig(batch=12, steps=2, val_every=2, val_fraction=0.25, seed=1, device="cpu", views=views)
        runs[views] = train_self_supervised(pictures, TINY, cfg, tmp_path / views, progress=False)
        meta = json.loads((tmp_path / views / "model.json").read_text())
        assert meta["training"]["train"]["views"] == views
    assert runs["classic"].fingerprint != runs["wide"].fingerprint
