"""Signature verification protocol, class filters and groups, the raw-pixel baseline, group batches."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from simsearch.checkpoint import load_checkpoint
from simsearch.datasets import LabelledSet, class_group, load_labelled, split_by_group
from simsearch.device import resolve_device
from simsearch.embed import Embedder
from simsearch.encoder import EncoderConfig
from simsearch.errors import DataError
from simsearch.evaluate.baselines import raw_pixel_embeddings
from simsearch.evaluate.signatures import has_forgeries, signature_scores, signature_verification, writers
from simsearch.preprocess import Preprocess
from simsearch.symbols import write_symbol_set
from simsearch.train import Sampler, TrainConfig, train
from tests.conftest import run_cli, unit_rows


def signature_set(n_writers: int, genuine: int, forged: int, forgery_offset: float, seed: int = 0):
    """Embeddings: each writer's genuine signatures near a centre, its forgeries `forgery_offset` away."""
    rng = np.random.default_rng(seed)
    centres = unit_rows(n_writers, 16, seed)
    classes, labels, rows = [], [], []
    for w in range(n_writers):
        away = centres[w] + forgery_offset * unit_rows(1, 16, seed + 100 + w)[0]
        for kind, centre, n in (("genuine", centres[w], genuine), ("forgery", away, forged)):
            classes.append(f"train/{kind}/{w:03d}")
            for _ in range(n):
                v = centre + rng.normal(0, 0.05, 16)
                rows.append(v / np.linalg.norm(v))
                labels.append(len(classes) - 1)
    emb = np.array(rows, np.float32)
    data = LabelledSet(
        images=np.zeros((len(emb), 1, 4, 4), np.uint8),
        labels=np.array(labels, np.int64),
        classes=classes,
        groups=[class_group(c) for c in classes],
        paths=[str(i) for i in range(len(emb))],
    )
    return emb, data


def test_class_group_keeps_a_writer_together():
    assert class_group("train/genuine/001") == class_group("train/forgery/001") == "train/001"
    assert class_group("Latin/character01") == "Latin"
    assert class_group("Aaron_Eckhart") == "Aaron_Eckhart"


def test_forgeries_far_away_are_separated_and_look_alikes_are_not():
    emb, data = signature_set(6, genuine=8, forged=6, forgery_offset=1.0)
    assert sorted(writers(data)) == [f"train/{w:03d}" for w in range(6)]
    easy = signature_verification(emb, data, refs=1)
    assert easy.eer < 0.05 and easy.auc > 0.99 and easy.writers == 6
    assert easy.genuine == 6 * 7 and easy.forgeries == 6 * 6
    emb2, data2 = signature_set(6, genuine=8, forged=6, forgery_offset=0.0)
    hard = signature_verification(emb2, data2, refs=1)
    assert hard.eer > 0.25 and hard.auc < 0.8
    # a threshold chosen elsewhere is applied as given
    strict = signature_verification(emb, data, refs=5, threshold=1.01)
    assert strict.false_accept == 0.0 and strict.false_reject == 1.0 and strict.genuine == 6 * 3


def test_more_references_score_genuine_higher_and_bad_layouts_are_refused():
    emb, data = signature_set(5, genuine=10, forged=5, forgery_offset=0.3, seed=2)
    g1, _ = signature_scores(emb, data, refs=1)
    g5, _ = signature_scores(emb, data, refs=5)
    assert g5.mean() > g1.mean()
    plain = LabelledSet(data.images, data.labels, [f"c{i}" for i in range(len(data.classes))], data.groups, data.paths)
    with pytest.raises(DataError, match="genuine/<writer>"):
        writers(plain)
    assert has_forgeries(data) and not has_forgeries(plain)
    with pytest.raises(DataError, match="more than 20"):
        signature_scores(emb, data, refs=20)


def test_raw_pixel_embeddings_are_unit_and_compare_pixels():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 255, (5, 1, 64, 64), dtype=np.uint8)
    imgs[1] = imgs[0]
    e = raw_pixel_embeddings(imgs, 32)
    assert e.shape == (5, 32 * 32) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] == pytest.approx(1.0, abs=1e-5) and abs(float(e[0] @ e[2])) < 0.2
    assert raw_pixel_embeddings(rng.integers(0, 255, (2, 3, 50, 50), dtype=np.uint8), 32).shape == (2, 3 * 32 * 32)


def test_class_glob_selects_classes(tmp_path):
    write_symbol_set(tmp_path / "Anna", ["circle"], per_class=2)
    write_symbol_set(tmp_path / "Kurt", ["star"], per_class=2)
    got = load_labelled(tmp_path, Preprocess.plain(1, 16), progress=False, classes="[A-J]*")
    assert got.classes == ["Anna/circle"] and len(got.labels) == 2
    with pytest.raises(DataError, match="no class matches"):
        load_labelled(tmp_path, Preprocess.plain(1, 16), progress=False, classes="Z*")


def test_group_batches_hold_whole_groups():
    labels = np.repeat(np.arange(12), 4)
    groups = [f"w{c // 2}" for c in range(12)]  # six writers: genuine and forgery class each
    sampler = Sampler(labels, 12, rotations=False, gen=torch.Generator().manual_seed(0), groups=groups)
    for _ in range(20):
        idx, batch_labels, _ = sampler.sample(6, 3)
        classes = sorted({int(labels[i]) for i in idx.tolist()})
        assert len(classes) == 6 and len(batch_labels) == 18
        by_group: dict[str, int] = {}
        for c in classes:
            by_group[groups[c]] = by_group.get(groups[c], 0) + 1
        assert set(by_group.values()) == {2}  # both classes of every writer in the batch


def test_evaluate_signatures_end_to_end(tmp_path, random_model):
    data = tmp_path / "sig"
    for split, writers_ in (("train", ("001", "002", "003")), ("test", ("051", "052"))):
        for i, w in enumerate(writers_):
            genuine, forged = ["circle", "star", "cross", "triangle", "square"][i % 5], "spiral"
            write_symbol_set(tmp_path / "g", [genuine], per_class=7, seed=i)
            write_symbol_set(tmp_path / "f", [forged], per_class=3, seed=10 + i)
            shutil.move(tmp_path / "g" / genuine, data / split / "genuine" / w)
            shutil.move(tmp_path / "f" / forged, data / split / "forgery" / w)
    proc = run_cli(
        "evaluate", data, "--signatures", "--model", random_model, "--compare", "raw-pixels", "--json", check=True
    )
    out = json.loads(proc.stdout)
    assert out["classes"] == "test/*" and out["fit_classes"] == "train/*"
    rows = {(r["model"], r["refs"]): r for r in out["results"]}
    assert set(rows) == {(str(random_model), 1), (str(random_model), 5), ("raw-pixels", 1), ("raw-pixels", 5)}
    for r in rows.values():
        assert r["writers"] == 2 and r["forgeries"] == 6 and 0 <= r["eer"] <= 1 and 0 <= r["accuracy"] <= 1
    assert rows[("raw-pixels", 5)]["genuine"] == 2 * 2 and rows[("raw-pixels", 1)]["genuine"] == 2 * 6
    bad = run_cli("evaluate", data, "--signatures", "--refs", "0", "--model", random_model)
    assert bad.returncode == 2 and "--refs" in bad.stderr
    untrained = run_cli("evaluate", data, "--signatures", "--model", random_model, "--fit-classes", "held-out")
    assert untrained.returncode == 2 and "does not record" in untrained.stderr


def test_training_on_signatures_validates_on_held_out_writers_forgeries(tmp_path):
    root = tmp_path / "sig"
    shapes = ["circle", "star", "cross", "triangle", "square", "spiral"]
    for w in range(6):
        genuine, forged = shapes[w], shapes[(w + 1) % 6]  # a forgery of writer w looks like writer w+1's hand
        write_symbol_set(tmp_path / "g", [genuine], per_class=6, seed=w)
        write_symbol_set(tmp_path / "f", [forged], per_class=4, seed=20 + w)
        shutil.move(tmp_path / "g" / genuine, root / "train" / "genuine" / f"{w:03d}")
        shutil.move(tmp_path / "f" / forged, root / "train" / "forgery" / f"{w:03d}")
    data = load_labelled(root, Preprocess.plain(1, 28), progress=False)
    config = EncoderConfig(preprocess=Preprocess(size=28), widths=(8, 8, 16, 16), embedding_dim=16)
    cfg = TrainConfig(
        classes_per_batch=4, per_class=3, group_batches=True, steps=6, val_every=3, val_fraction=0.34, device="cpu"
    )
    result = train(data, config, cfg, tmp_path / "model", progress=False)
    assert result.val_measure.startswith("validation 1 - EER") and len(result.history) == 2

    _, val_ids = split_by_group(data, cfg.val_fraction, cfg.seed)
    val = data.subset(val_ids)
    assert len(writers(val)) == 2  # whole writers held out: genuine and forgeries together
    loaded = load_checkpoint(str(tmp_path / "model"))
    emb = Embedder(loaded.encoder, resolve_device("cpu")).embed_arrays(val.images)
    draws = [signature_verification(emb, val, 1, seed=cfg.seed + i) for i in range(5)]
    assert result.best_val_accuracy == pytest.approx(1 - np.mean([d.eer for d in draws]), abs=1e-6)
    assert loaded.meta["threshold"] == pytest.approx(np.mean([d.eer_threshold for d in draws]), abs=1e-5)
    assert loaded.meta["training"]["val"] == "1-reference signature verification, 1 - EER"
    assert max(h["val_accuracy"] for h in result.history) == pytest.approx(result.best_val_accuracy, abs=1e-5)

    # the held-out writers are recorded, and evaluate can choose its threshold on them
    assert loaded.meta["training"]["held_out_classes"] == sorted(val.classes)
    model = tmp_path / "model"
    fit_on = ["--signatures", "--model", model, "--refs", "1", "--classes", "train/*", "--fit-classes", "held-out"]
    out = json.loads(run_cli("evaluate", root, *fit_on, "--json", check=True).stdout)
    assert out["fit_classes"] == "held-out" and len(out["results"]) == 1
    assert out["results"][0]["threshold"] == pytest.approx(draws[0].eer_threshold, abs=1e-5)
    assert out["results"][0]["fit_eer"] == pytest.approx(draws[0].eer, abs=1e-6)
    assert out["results"][0]["writers"] == 6  # measured on every train writer, fitted on the held-out two
    raw = run_cli("evaluate", root, *fit_on[:2], "raw-pixels", *fit_on[3:])
    assert raw.returncode == 2 and "held-out" in raw.stderr and "Traceback" not in raw.stderr
