import dataclasses
import json

import numpy as np
import pytest
import torch

from simsearch.checkpoint import load_checkpoint, weights_bytes
from simsearch.datasets import load_labelled, split_by_group
from simsearch.device import resolve_device
from simsearch.embed import Embedder
from simsearch.encoder import EncoderConfig, build_encoder
from simsearch.errors import DataError
from simsearch.measures.metrics import few_shot_accuracy
from simsearch.preprocess import Preprocess
from simsearch.symbols import SYMBOLS, write_symbol_set
from simsearch.train import TrainConfig, train
from simsearch.train.augment import augment, elastic_field
from simsearch.train.labelled import augment_of
from tests.conftest import interrupted_then_resumed

SMALL = EncoderConfig(preprocess=Preprocess(size=28), widths=(16, 16, 32, 32), embedding_dim=32)


@pytest.fixture(scope="module")
def symbols(tmp_path_factory):
    root = tmp_path_factory.mktemp("symbols")
    write_symbol_set(root, list(SYMBOLS), per_class=12, seed=7)
    return load_labelled(root, Preprocess.plain(1, 28), progress=False)


def val_accuracy(encoder, data, cfg):
    _, val_ids = split_by_group(data, cfg.val_fraction, cfg.seed)
    val = data.subset(val_ids)
    emb = Embedder(encoder, resolve_device("cpu")).embed_arrays(val.images)
    return few_shot_accuracy(emb, val.labels, cfg.val_way, 1, cfg.val_episodes, seed=cfg.seed).accuracy


def small_config(**settings) -> TrainConfig:
    """A short CPU run on the small symbol set, validated on 3-way episodes of 30% of its classes."""
    return TrainConfig(**{"val_fraction": 0.3, "val_way": 3, "device": "cpu", **settings})


@pytest.mark.parametrize("loss", ["episodic", "triplet", "contrastive"])
def test_short_run_lowers_loss_and_raises_validation_accuracy(tmp_path, symbols, loss):
    cfg = small_config(loss=loss, classes_per_batch=7, per_class=4, steps=60, val_every=20, val_episodes=300)
    cfg = dataclasses.replace(cfg, lr=3e-3, warmup_steps=5, seed=1)
    torch.manual_seed(cfg.seed)
    before = val_accuracy(build_encoder(SMALL), symbols, cfg)
    result = train(symbols, SMALL, cfg, tmp_path, progress=False)
    assert result.steps == 60 and len(result.history) == 3
    first_losses = result.history[0]["loss"]
    assert result.history[-1]["loss"] < first_losses
    assert json.loads((tmp_path / "history.json").read_text()) == result.history
    assert result.best_val_accuracy is not None and result.best_val_accuracy > before
    loaded = load_checkpoint(str(tmp_path))
    assert loaded.meta["training"]["best_val_accuracy"] == pytest.approx(result.best_val_accuracy, abs=1e-4)
    assert val_accuracy(loaded.encoder, symbols, cfg) == pytest.approx(result.best_val_accuracy, abs=1e-6)


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_resume_continues_exactly_where_it_stopped(tmp_path, symbols, ema):
    cfg = small_config(ema=ema, classes_per_batch=5, per_class=3, steps=30, val_every=10, val_episodes=50, seed=2)
    straight = train(symbols, SMALL, cfg, tmp_path / "a", progress=False)
    resumed = interrupted_then_resumed(
        lambda out, **kw: train(symbols, SMALL, cfg, out, progress=False, **kw), tmp_path / "b", stop=20
    )
    assert resumed.steps == 30
    assert [h["step"] for h in resumed.history] == [10, 20, 30]
    assert [h["val_accuracy"] for h in resumed.history] == [h["val_accuracy"] for h in straight.history]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    a, b = load_checkpoint(str(tmp_path / "a")), load_checkpoint(str(tmp_path / "b"))
    assert weights_bytes(a.encoder) == weights_bytes(b.encoder)


def test_weight_average_is_what_validation_sees_and_the_checkpoint_keeps(tmp_path, symbols):
    from safetensors.torch import load_file

    cfg = TrainConfig(classes_per_batch=5, per_class=3, steps=8, val_every=8, val_fraction=0.3, val_way=3, ema=0.8)
    result = train(symbols, SMALL, cfg, tmp_path, progress=False)
    saved = load_file(str(tmp_path / "resume.safetensors"))
    loaded = load_checkpoint(str(tmp_path))
    kept = loaded.encoder.state_dict()
    for name, w in kept.items():
        assert torch.equal(w, saved[f"ema.module.{name}"]), name
    assert any(not torch.equal(w, saved[f"model.{name}"]) for name, w in kept.items() if w.is_floating_point())
    assert saved["ema.n_averaged"].item() == 8
    assert result.best_val_accuracy == pytest.approx(val_accuracy(loaded.encoder, symbols, cfg))


def test_group_split_keeps_alphabets_apart(tmp_path):
    for alphabet in ("Greek", "Latin", "Runic", "Braille"):
        write_symbol_set(tmp_path / alphabet, ["circle", "star"], per_class=2, seed=0)
    data = load_labelled(tmp_path, Preprocess.plain(1, 28), progress=False)
    assert data.classes[0] == "Braille/circle" and len(data.classes) == 8
    train_ids, val_ids = split_by_group(data, 0.25, seed=0)
    train_groups = {data.groups[i] for i in train_ids}
    val_groups = {data.groups[i] for i in val_ids}
    assert len(val_groups) == 1 and not train_groups & val_groups and len(train_ids) + len(val_ids) == 8
    assert np.array_equal(split_by_group(data, 0.25, seed=0)[1], val_ids)
    # the folds are disjoint blocks of whole groups that together cover all of them; fold 0 is the split above
    folds = [split_by_group(data, 0.25, seed=0, fold=f)[1] for f in range(4)]
    assert np.array_equal(folds[0], val_ids)
    assert sorted(np.concatenate(folds).tolist()) == list(range(8))
    assert all(len({data.groups[i] for i in f}) == 1 for f in folds)
    with pytest.raises(DataError, match="folds 0 to 3"):
        split_by_group(data, 0.25, seed=0, fold=4)


def test_a_run_validates_on_its_fold_and_records_which_classes_it_held_out(tmp_path, symbols):
    cfg = TrainConfig(classes_per_batch=4, per_class=3, steps=1, val_every=1, val_fraction=0.3, val_way=3, val_fold=1)
    train(symbols, SMALL, cfg, tmp_path, progress=False)
    held = load_checkpoint(str(tmp_path)).meta["training"]["held_out_classes"]
    fold0, fold1 = (split_by_group(symbols, 0.3, cfg.seed, fold=f)[1] for f in (0, 1))
    assert held == sorted(symbols.classes[i] for i in fold1) and not set(fold0) & set(fold1)


def test_bad_training_settings_are_refused():
    with pytest.raises(ValueError, match="shot"):
        TrainConfig(per_class=2, shot=2)
    with pytest.raises(ValueError, match="allowed"):
        TrainConfig(loss="arcface")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decay"):
        TrainConfig(ema=1.0)
    with pytest.raises(ValueError, match="fold"):
        TrainConfig(val_fold=-1)


def test_elastic_field_is_smooth_seeded_and_scales_with_strength():
    f1 = elastic_field(3, 28, 28, 1.0, torch.Generator().manual_seed(5))
    f2 = elastic_field(3, 28, 28, 1.0, torch.Generator().manual_seed(5))
    f3 = elastic_field(3, 28, 28, 2.0, torch.Generator().manual_seed(5))
    assert f1.shape == (3, 28, 28, 2)
    assert torch.equal(f1, f2)
    assert torch.allclose(f3, 2 * f1, atol=1e-6)
    # smooth: neighbouring pixels move almost together (a 4x4 lattice spread over 28 pixels),
    # so the step between neighbours is far smaller than the displacement itself
    step = (f1[:, 1:] - f1[:, :-1]).abs().mean()
    assert step < 0.25 * f1.abs().mean()


def test_elastic_warp_bends_strokes_but_keeps_the_ink(symbols):
    x = torch.from_numpy(symbols.images[:16]).float() / 255
    turns = torch.zeros(16, dtype=torch.long)
    cfg = TrainConfig(jitter=0.0, elastic=1.5)
    a = augment(x.clone(), turns, augment_of(cfg), torch.Generator().manual_seed(1))
    b = augment(x.clone(), turns, augment_of(cfg), torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    changed = (a - x).abs().flatten(1).sum(1)
    assert bool((changed > 1.0).all())  # every image is warped
    ink_before, ink_after = (1 - x).flatten(1).sum(1), (1 - a).flatten(1).sum(1)
    ratio = ink_after / ink_before  # strokes bend and stretch, they do not vanish or smear over the image
    assert bool(((ratio > 0.5) & (ratio < 2.0)).all())
    off = TrainConfig(jitter=0.0, elastic=0.0)
    assert torch.equal(augment(x.clone(), turns, augment_of(off), torch.Generator().manual_seed(1)), x)
