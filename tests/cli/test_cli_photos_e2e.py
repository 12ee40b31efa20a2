"""End to end on generated photos: label-free training, the copy-detection benchmark, and a
supervised RGB (photo/face) encoder with a threshold fitted on other classes."""

from __future__ import annotations

import json
from dataclasses import replace as dataclasses_replace
from pathlib import Path

from simsearch.edits import EDITS
from simsearch.symbols import draw_face, write_photos
from tests.conftest import run_cli


def test_self_supervised_training_raises_recall(tmp_path: Path, photos: Path) -> None:
    out = tmp_path / "ssl"
    args = ["--arch", "resnet", "--channels", "3", "--size", "32", "--widths", "16,32,64", "--batch", "32"]
    summary = json.loads(
        run_cli(
            "train",
            photos,
            "--self-supervised",
            "--out",
            out,
            *args,
            "--steps",
            "40",
            "--val-every",
            "20",
            "--val-fraction",
            "0.25",
            "--seed",
            "0",
            "--json",
            check=True,
        ).stdout
    )
    history = json.loads((out / "history.json").read_text())
    start = history[0]["val_recall@1"]
    assert history[0]["step"] == 0 and summary["steps"] == 40
    # validation also reports recall@1 per edit type, so a blind spot (say, grayscale) shows during training
    assert all(f"val_recall@1/{name}" in h for h in history for name in EDITS)
    assert all(0.0 <= h[f"val_recall@1/{name}"] <= 1.0 for h in history for name in EDITS)
    assert summary["best_val_accuracy"] > start, history
    meta = json.loads((out / "model.json").read_text())
    assert meta["config"]["preprocess"]["invert"] is False and meta["training"]["train"]["loss"] == "nt-xent"
    assert meta["threshold"] is not None
    # the result is an ordinary encoder: it indexes and searches
    run_cli("index", "build", photos, "--index", tmp_path / "idx", "--model", out, check=True)
    hit = json.loads(
        run_cli("query", photos / "p0005.jpg", "--index", tmp_path / "idx", "--json", check=True).stdout.splitlines()[0]
    )
    assert Path(hit["results"][0]["path"]).name == "p0005.jpg"


def test_self_supervised_needs_enough_images(tmp_path: Path) -> None:
    few = write_photos(tmp_path / "few", 10, seed=1)
    proc = run_cli("train", few, "--self-supervised", "--out", tmp_path / "m", "--channels", "3", "--batch", "32")
    assert proc.returncode == 1 and "fewer than the batch" in proc.stderr
    assert not (tmp_path / "m" / "model.json").exists()
    # an option the other kind of run uses is refused, not silently ignored
    proc = run_cli("train", few, "--self-supervised", "--out", tmp_path / "n", "--ema", "0.9", "--flips")
    assert proc.returncode == 2 and "--flips, --ema: only for labelled training" in proc.stderr
    proc = run_cli("train", few, "--out", tmp_path / "n", "--temperature", "0.2")
    assert proc.returncode == 2 and "--temperature: only for --self-supervised" in proc.stderr
    assert not (tmp_path / "n").exists()


def test_copy_detection_benchmark(tmp_path: Path, photos: Path) -> None:
    res = json.loads(
        run_cli(
            "evaluate",
            photos,
            "--copy-detection",
            "--model",
            "characters",
            "--compare",
            "raw-pixels",
            "--compare",
            "phash",
            "--compare",
            "dhash",
            "--queries",
            "10",
            "--edits",
            "jpeg,flip,crop",
            "--json",
            check=True,
        ).stdout
    )
    assert res["gallery"] == 120 and res["queries"] == 30 and res["originals_queried"] == 10
    by_model = {r["model"]: {row["edit"]: row for row in r["rows"]} for r in res["results"]}
    assert set(by_model) == {"characters", "raw-pixels", "phash", "dhash"}
    for rows in by_model.values():
        assert [e for e in rows] == ["jpeg", "flip", "crop", "overall"]
        assert all(row["queries"] == (30 if e == "overall" else 10) for e, row in rows.items())
        assert all(0 <= row["recall@1"] <= row["recall@10"] <= 1 and 0 < row["mAP"] <= 1 for row in rows.values())
    # a heavy JPEG keeps the layout: raw pixels and hashes find it; a mirror image defeats the hashes
    assert by_model["raw-pixels"]["jpeg"]["recall@1"] == 1.0
    assert by_model["phash"]["jpeg"]["recall@1"] >= 0.9
    assert by_model["phash"]["flip"]["recall@1"] < 0.5
    text = run_cli("evaluate", photos, "--copy-detection", "--queries", "5", "--edits", "blur", check=True).stdout
    assert "recall@1 / recall@10 / mAP" in text and "blur" in text and "overall" in text
    bad = run_cli("evaluate", photos, "--copy-detection", "--edits", "sepia")
    assert bad.returncode == 2 and "unknown edit 'sepia'" in bad.stderr


def test_rgb_resnet_training_with_fitted_threshold(tmp_path: Path) -> None:
    data = write_photos(tmp_path / "people", 72, seed=2, side=48, classes=12)
    out = tmp_path / "faces"
    run_cli(
        "train",
        data,
        "--out",
        out,
        "--arch",
        "resnet",
        "--channels",
        "3",
        "--size",
        "32",
        "--crop",
        "0.8",
        "--widths",
        "8,16,32",
        "--flips",
        "--color-jitter",
        "0.5",
        "--classes-per-batch",
        "4",
        "--per-class",
        "3",
        "--steps",
        "4",
        "--val-every",
        "2",
        "--val-fraction",
        "0.25",
        "--json",
        check=True,
    )
    pre = json.loads((out / "model.json").read_text())["config"]["preprocess"]
    assert pre == {
        "channels": 3, "size": 32, "invert": False, "mean": [0.5] * 3, "std": [0.25] * 3, "crop": 0.8, "autocontrast": False,
        "fit_ink": False, "face": False
    }  # fmt: skip
    # --resume takes the architecture and preprocessing from the run it continues
    config = json.loads((out / "model.json").read_text())["config"]
    more = "--classes-per-batch 4 --per-class 3 --steps 6 --val-every 2 --val-fraction 0.25".split()
    resumed = json.loads(run_cli("train", data, "--out", out, "--resume", *more, "--json", check=True).stdout)
    assert resumed["steps"] == 6 and json.loads((out / "model.json").read_text())["config"] == config
    clash = run_cli("train", data, "--out", out, "--resume", "--size", "64", *more)
    assert clash.returncode == 2 and "drop --size" in clash.stderr
    measure = ["evaluate", data, "--model", out, "--classes", "class0[6-9]", "--fit-classes", "class0[0-5]"]
    measure += ["--way", "3", "--episodes", "20", "--pairs", "200"]
    res = json.loads(run_cli(*measure, "--json", check=True).stdout)
    ver = res["verification"]
    assert res["classes"] == 4 and 0 <= ver["accuracy"] <= 1 and -1 <= ver["threshold"] <= 1.0001
    text = run_cli(*measure, check=True).stdout
    assert f"verification accuracy {ver['accuracy']:.4f} at threshold {ver['threshold']:.4f}" in text
    assert "(the best on 'class0[0-5]')" in text


def test_builtin_encoders_are_chosen_by_name(tmp_path: Path) -> None:
    listed = {m["name"]: m for m in json.loads(run_cli("models", "--json", check=True).stdout)}
    assert {"characters", "faces", "photos", "signatures", "objects"} <= set(listed)
    assert listed["faces"]["arch"] == "backbone" and listed["faces"]["input"] == "3x150x150"
    assert listed["objects"]["input"] == "3x224x224" and listed["objects"]["dim"] == 1280 + 256
    assert [m for m in listed.values() if m["default"]] == [listed["characters"]]
    pics = write_photos(tmp_path / "pics", 6, seed=4)
    people = tmp_path / "people"
    people.mkdir()
    for i, size in enumerate((160, 200, 240)):
        draw_face(size).save(people / f"p000{i + 1}.png")
    draw_face(180, hair=(150, 120, 40)).save(people / "p0003.jpg")
    for name in ("faces", "photos", "signatures", "objects"):
        idx = tmp_path / f"{name}.idx"
        folder = people if name == "faces" else pics  # faces finds the face first: generated photos have none
        run_cli("index", "build", folder, "--index", idx, "--model", name, check=True)
        manifest = json.loads((idx / "manifest.json").read_text())  # what `index info` reports, read directly
        assert manifest["encoder"]["source"] == name
        assert manifest["encoder"]["fingerprint"].startswith(listed[name]["fingerprint"])
        assert manifest["dim"] == listed[name]["dim"]
        hit = json.loads(run_cli("query", folder / "p0003.jpg", "--index", idx, "--json", check=True).stdout)
        assert Path(hit["results"][0]["path"]).name == "p0003.jpg"
    faceless = json.loads(
        run_cli("index", "build", pics, "--index", tmp_path / "nf.idx", "--model", "faces", "--json").stdout
    )
    assert faceless["added"] == 0 and {s["reason"] for s in faceless["skipped"]} == {"no face found"}
    refused = run_cli("query", pics / "p0003.jpg", "--index", tmp_path / "faces.idx", "--model", "characters")
    assert refused.returncode == 1 and "built with encoder 'faces'" in refused.stderr
    unknown = run_cli("index", "build", pics, "--index", tmp_path / "x.idx", "--model", "no-such-model")
    assert unknown.returncode == 1 and "not a built-in encoder" in unknown.stderr


def test_builtin_photos_encoder_finds_edited_copies(tmp_path: Path) -> None:
    """On generated (not natural) photos: the label-free encoder sees through mirroring and framing,
    where perceptual hashes and the character encoder fail, and wins overall."""
    pics = write_photos(tmp_path / "pics", 60, seed=21)
    res = json.loads(
        run_cli(
            "evaluate", pics, "--copy-detection", "--model", "photos", "--compare", "characters", "--compare", "phash",
            "--queries", "20", "--edits", "flip,border,rotate,jpeg,combined", "--json", check=True,
        ).stdout
    )  # fmt: skip
    rows = {r["model"]: {row["edit"]: row["recall@1"] for row in r["rows"]} for r in res["results"]}
    assert rows["photos"]["flip"] >= 0.9 and rows["phash"]["flip"] < 0.5 and rows["characters"]["flip"] < 0.5
    assert rows["photos"]["border"] >= 0.9 > rows["phash"]["border"]
    assert rows["photos"]["overall"] > max(rows["phash"]["overall"], rows["characters"]["overall"])


def test_fine_tuning_starts_from_the_given_weights(tmp_path: Path, photos: Path) -> None:
    shape = ["--arch", "resnet", "--channels", "3", "--size", "32", "--widths", "8,16,32"]
    common = ["--self-supervised", "--batch", "32", "--val-fraction", "0.25", "--seed", "0", "--json"]
    parent = json.loads(
        run_cli(
            "train", photos, "--out", tmp_path / "a", *shape, *common, "--steps", "6", "--val-every", "3", check=True
        ).stdout
    )
    run_cli("train", photos, "--out", tmp_path / "b", "--init", tmp_path / "a", *common, "--steps", "1", check=True)
    # the child's first validation (before any step) scores the parent's best checkpoint on the same split
    child = json.loads((tmp_path / "b" / "history.json").read_text())
    assert child[0]["step"] == 0 and abs(child[0]["val_recall@1"] - parent["best_val_accuracy"]) < 1e-4
    meta = json.loads((tmp_path / "b" / "model.json").read_text())
    assert meta["config"] == json.loads((tmp_path / "a" / "model.json").read_text())["config"]
    assert "fine-tuned from" in meta["training"]["data"]
    # the starting model fixes the architecture: contradicting it is a usage error, nothing written
    proc = run_cli("train", photos, "--out", tmp_path / "c", "--init", tmp_path / "a", "--widths", "8,16,64", *common)
    assert proc.returncode == 2 and "--widths" in proc.stderr and not (tmp_path / "c").exists()
    # the input is not the architecture: the same weights fine-tune at another size, the rest kept
    bigger_input = ["--init", tmp_path / "a", "--size", "48", "--steps", "1"]
    run_cli("train", photos, "--out", tmp_path / "d", *bigger_input, *common, check=True)
    bigger = json.loads((tmp_path / "d" / "model.json").read_text())["config"]
    assert bigger["preprocess"]["size"] == 48 and bigger["widths"] == meta["config"]["widths"]
    assert {k: v for k, v in bigger["preprocess"].items() if k != "size"} == {
        k: v for k, v in meta["config"]["preprocess"].items() if k != "size"
    }
    proc = run_cli("train", photos, "--out", tmp_path / "c", "--init", tmp_path / "nothing", *common)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and not (tmp_path / "c" / "model.json").exists()


def test_fine_tuning_a_model_with_parts_beside_its_network_keeps_them(tmp_path: Path, photos: Path) -> None:
    """A starting model with a companion network and a DCT part (as the built-in photos has) fine-tunes with a new
    --head: the new head is its own part, the companion and the DCT part (its spread too) are kept."""
    import torch

    from simsearch.checkpoint import load_checkpoint, save_checkpoint
    from simsearch.encoder import EncoderConfig, build_encoder
    from simsearch.preprocess import Preprocess

    rgb = Preprocess(channels=3, size=32, invert=False, mean=(0.5,) * 3, std=(0.25,) * 3)
    small = EncoderConfig(arch="resnet", preprocess=dataclasses_replace(rgb, size=16), widths=(4, 8), embedding_dim=6)
    cfg = EncoderConfig(
        arch="resnet", preprocess=rgb, widths=(8, 16), embedding_dim=10 + 6 + 15, companion=small, dct=4, dct_weight=0.1
    )
    start = build_encoder(cfg)
    assert start.dct is not None
    with torch.no_grad():
        start.dct.spread.copy_(torch.linspace(1.0, 2.0, 15))
    save_checkpoint(start, tmp_path / "a")
    common = ["--self-supervised", "--batch", "16", "--val-fraction", "0.25", "--seed", "0", "--steps", "1"]
    run_cli("train", photos, "--out", tmp_path / "b", "--init", tmp_path / "a", "--head", "12", *common, check=True)
    child = load_checkpoint(str(tmp_path / "b"))
    assert (child.config.head_dim, child.config.companion, child.config.dct) == (12, small, 4)
    assert child.config.embedding_dim == 12 + 6 + 15 and child.encoder.dct is not None
    assert torch.equal(child.encoder.dct.spread, torch.linspace(1.0, 2.0, 15))
