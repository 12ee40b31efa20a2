"""End to end: the real `simsearch` command on real temporary folders."""

import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from simsearch.checkpoint import builtin_models
from simsearch.symbols import draw_symbol
from tests.conftest import run_cli, simsearch_cmd


def lines_json(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def built(tmp_path, gallery):
    idx = tmp_path / "g.idx"
    proc = run_cli("index", "build", gallery, "--index", idx, "--json", check=True)
    return idx, json.loads(proc.stdout)


def test_build_query_identify_json(tmp_path, gallery, built):
    idx, report = built
    assert report["added"] == 16 and report["total"] == 16 and report["skipped"] == []
    probe = tmp_path / "probe.png"
    draw_symbol("star", np.random.default_rng(99)).save(probe)
    out = lines_json(
        run_cli(
            "query", probe, gallery / "circle" / "circle_00.png", "--index", idx, "-k", "3", "--json", check=True
        ).stdout
    )
    assert [o["query"] for o in out] == [str(probe), str(gallery / "circle" / "circle_00.png")]
    first = out[0]["results"]
    assert [r["rank"] for r in first] == [1, 2, 3] and all(isinstance(r["id"], int) for r in first)
    assert first[0]["score"] >= first[1]["score"] >= first[2]["score"]
    assert all(-1.0 <= r["score"] <= 1.0 + 1e-6 for r in first)
    self_hit = out[1]["results"][0]
    assert self_hit["path"] == str(gallery / "circle" / "circle_00.png") and self_hit["score"] == pytest.approx(
        1.0, abs=1e-4
    )
    assert self_hit["label"] == "circle"
    ident = lines_json(run_cli("identify", gallery / "triangle", "--index", idx, "--json", check=True).stdout)
    assert len(ident) == 4
    for o in ident:
        assert set(o) >= {"query", "label", "known", "score", "match"}
        assert o["known"] and o["label"] == "triangle" and o["match"] == o["query"]
    human = run_cli("query", probe, "--index", idx, "-k", "2", check=True).stdout
    assert "query:" in human and "  1  " in human


def test_unknown_when_below_threshold(tmp_path, built):
    idx, _ = built
    probe = tmp_path / "p.png"
    draw_symbol("wave", np.random.default_rng(5)).save(probe)
    out = lines_json(run_cli("identify", probe, "--index", idx, "--threshold", "0.999", "--json", check=True).stdout)
    assert out[0]["known"] is False and out[0]["label"] is None and out[0]["score"] < 0.999
    assert "unknown" in run_cli("identify", probe, "--index", idx, "--threshold", "0.999").stdout


def test_sync_after_add_change_rename_delete(tmp_path, gallery, built):
    idx, _ = built
    rng = np.random.default_rng(3)
    draw_symbol("spiral", rng).save(gallery / "circle" / "extra.png")  # added
    draw_symbol("cross", rng).save(gallery / "star" / "star_00.png")  # changed
    os.utime(gallery / "star" / "star_00.png", (1, 1))
    (gallery / "triangle" / "triangle_00.png").rename(gallery / "triangle" / "renamed.png")  # moved
    (gallery / "cross" / "cross_03.png").unlink()  # deleted
    report = json.loads(run_cli("index", "build", gallery, "--index", idx, "--json", check=True).stdout)
    assert (report["added"], report["updated"], report["moved"], report["removed"]) == (1, 1, 1, 1)
    assert report["unchanged"] == 13 and report["total"] == 16
    info = json.loads(run_cli("index", "info", "--index", idx, "--json", check=True).stdout)
    assert info["count"] == 16 and info["classes"] == 4 and info["generation"] == 2
    assert "agree" in run_cli("index", "check", "--index", idx, check=True).stdout
    hit = lines_json(
        run_cli("query", gallery / "triangle" / "renamed.png", "--index", idx, "-k", "1", "--json", check=True).stdout
    )
    assert hit[0]["results"][0]["path"] == str(gallery / "triangle" / "renamed.png")


def test_bad_files_are_skipped_with_reasons_and_strict_fails(tmp_path, gallery):
    (gallery / "circle" / "empty.png").write_bytes(b"")
    (gallery / "circle" / "text.jpg").write_text("hello, I am not a JPEG")
    Image.new("RGB", (64, 64), "red").save(gallery / "star" / "cut.jpg")
    data = (gallery / "star" / "cut.jpg").read_bytes()
    (gallery / "star" / "cut.jpg").write_bytes(data[: len(data) // 2])
    Image.new("1", (9000, 8000)).save(gallery / "star" / "bomb.png")
    draw_symbol("circle", np.random.default_rng(1)).convert("CMYK").save(gallery / "circle" / "ünïcødé 画.jpg")
    idx = tmp_path / "bad.idx"
    strict = run_cli("index", "build", gallery, "--index", idx, "--strict")
    assert (
        strict.returncode == 1 and "nothing was written" in strict.stderr and not idx.joinpath("manifest.json").exists()
    )
    proc = run_cli("index", "build", gallery, "--index", idx, check=True)
    assert "17 indexed, 4 skipped" in proc.stdout
    for name, why in [
        ("empty.png", "empty file"),
        ("text.jpg", "not an image"),
        ("cut.jpg", "truncated"),
        ("bomb.png", "over the limit"),
    ]:
        assert any(name in line and why in line for line in proc.stderr.splitlines()), (name, proc.stderr)
    out = lines_json(
        run_cli("query", gallery / "circle" / "ünïcødé 画.jpg", "--index", idx, "-k", "1", "--json", check=True).stdout
    )
    assert out[0]["results"][0]["path"].endswith("ünïcødé 画.jpg")


def test_errors_are_one_line_with_exit_codes(tmp_path, gallery, built, random_model):
    idx, _ = built
    restyled = tmp_path / "restyled"
    restyled.mkdir()
    for f in builtin_models()["characters"].iterdir():
        restyled.joinpath(f.name).write_bytes(f.read_bytes())
    meta = json.loads((restyled / "model.json").read_text())
    meta["config"]["preprocess"]["autocontrast"] = not meta["config"]["preprocess"].get("autocontrast", False)
    (restyled / "model.json").write_text(json.dumps(meta))
    cases = [
        (["index", "build", tmp_path / "missing", "--index", tmp_path / "m.idx"], 1, "no such file or folder"),
        (["query", gallery / "star" / "star_00.png", "--index", tmp_path / "nope.idx"], 1, "no such index"),
        (["query", tmp_path / "missing.png", "--index", idx], 1, "no such file or folder"),
        (
            ["query", gallery / "star" / "star_00.png", "--index", idx, "--model", random_model],
            1,
            "was built with encoder",
        ),
        (["index", "build", gallery, "--index", idx, "--model", random_model], 1, "was built with encoder"),
        # the same weights with other preprocessing would give other vectors: refused too
        (["query", gallery / "star" / "star_00.png", "--index", idx, "--model", restyled], 1, "other preprocessing"),
        (["query", "x.png", "--index", idx, "-k", "0"], 2, "Invalid value"),
        (["train", gallery, "--out", tmp_path / "o", "--loss", "arcface"], 2, "Invalid value"),
    ]
    (tmp_path / "empty").mkdir()
    cases.append((["index", "build", tmp_path / "empty", "--index", tmp_path / "e.idx"], 1, "no image files"))
    not_image = tmp_path / "note.png"
    not_image.write_text("text")
    cases.append((["query", not_image, "--index", idx], 1, "cannot read query"))
    for args, code, message in cases:
        proc = run_cli(*args)
        assert proc.returncode == code, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    # a corrupt index directory
    manifest = idx / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"count": 16', '"count": 99'))
    proc = run_cli("query", gallery / "star" / "star_00.png", "--index", idx)
    assert proc.returncode == 1 and "damaged index" in proc.stderr and "Traceback" not in proc.stderr


def test_other_encoder_with_overwrite(tmp_path, gallery, built, random_model):
    idx, _ = built
    run_cli("index", "build", gallery, "--index", idx, "--model", random_model, "--overwrite", check=True)
    info = json.loads(run_cli("index", "info", "--index", idx, "--json", check=True).stdout)
    assert info["encoder"] == str(random_model.resolve()) and info["dim"] == 32
    assert (
        run_cli(
            "query", gallery / "star" / "star_00.png", "--index", idx, "--model", random_model, check=True
        ).returncode
        == 0
    )


def _wait_for(pred, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("sig, mode", [(signal.SIGKILL, "rebuild"), (signal.SIGKILL, "sync"), (signal.SIGINT, "sync")])
def test_killed_build_leaves_the_old_index_answering(tmp_path, gallery, built, sig, mode):
    idx, _ = built
    big = tmp_path / "big"
    rng = np.random.default_rng(0)
    for i in range(400):  # 2,000 files: embedding them one by one takes seconds, not a fraction of one
        (big / f"c{i % 4}").mkdir(parents=True, exist_ok=True)
        img = draw_symbol("star", rng)
        for copy in range(5):
            img.save(big / f"c{i % 4}" / f"{i}_{copy}.png")
    before = (idx / "manifest.json").read_bytes()
    extra = ["--overwrite"] if mode == "rebuild" else []
    proc = subprocess.Popen(
        [*simsearch_cmd(), "index", "build", str(big), "--index", str(idx), *extra, "--batch-size", "1", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a shell's background job (pytest ... &) would pass SIGINT on ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert _wait_for(lambda: any(p.name.startswith(".gen-tmp-") for p in idx.iterdir()))
    time.sleep(0.3)  # well inside the embedding loop
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 130)
    if sig == signal.SIGINT:
        assert "nothing was changed" in err
    assert (idx / "manifest.json").read_bytes() == before
    assert "16 images" in run_cli("index", "check", "--index", idx, check=True).stdout
    out = lines_json(
        run_cli("query", gallery / "star" / "star_01.png", "--index", idx, "-k", "1", "--json", check=True).stdout
    )
    assert out[0]["results"][0]["path"] == str(gallery / "star" / "star_01.png")
    # the next write cleans up what the killed one left behind
    run_cli("index", "build", gallery, "--index", idx, check=True)
    assert not [p for p in idx.iterdir() if p.name.startswith(".gen-tmp-")]


def test_demo_runs_offline(tmp_path):
    proc = run_cli("demo", "--out", tmp_path / "d", check=True)
    assert "gallery:" in proc.stdout and "index:" in proc.stdout and "identify:" in proc.stdout
    assert (tmp_path / "d" / "demo.idx" / "manifest.json").exists()
    idents = [line for line in proc.stdout.splitlines() if "new_" in line and "best" in line]
    assert len(idents) == 9  # at the default FPIR 1%, at 10%, and against the one-drawing-a-class gallery
    assert "identify: threshold" in proc.stdout and "[gallery+prior: FPIR 0.01;" in proc.stdout
    assert (tmp_path / "d" / "oneshot.idx" / "manifest.json").exists()
    # every drawn probe is marked right or wrong against what the answer should have been
    for line in idents:
        assert line.endswith("  right") or "WRONG (expected" in line
    spiral = next(line for line in idents if "new_spiral" in line)
    assert ": unknown" in spiral or "WRONG (expected unknown)" in spiral


def test_demo_with_data(tmp_path, gallery):
    proc = run_cli("demo", "--out", tmp_path / "d", "--data", gallery, check=True)
    assert "(16 images)" in proc.stdout


def test_train_evaluate_and_models(tmp_path, gallery):
    from simsearch.symbols import write_symbol_set

    data = tmp_path / "train"
    write_symbol_set(
        data,
        ["circle", "triangle", "star", "cross", "arrow", "wave", "spiral", "zigzag", "hourglass", "square"],
        per_class=6,
        seed=4,
    )
    out = tmp_path / "model"
    summary = json.loads(
        run_cli(
            "train",
            data,
            "--out",
            out,
            "--steps",
            "6",
            "--val-every",
            "3",
            "--classes-per-batch",
            "3",
            "--per-class",
            "3",
            "--widths",
            "8,16",
            "--val-fraction",
            "0.7",
            "--json",
            check=True,
        ).stdout
    )
    assert summary["steps"] == 6 and (out / "model.safetensors").exists() and (out / "model.json").exists()
    # the run measured its open-set prior on the 7 classes its validation held out
    prior = json.loads((out / "model.json").read_text())["open_set_prior"]
    assert prior["measured_on"].startswith("7 held-out classes") and "2" in prior["impostor"]
    res = json.loads(
        run_cli(
            "evaluate", data, "--model", out, "--way", "3", "--shot", "1", "--episodes", "50", "--json", check=True
        ).stdout
    )
    assert (
        {"way": 3, "shot": 1, "episodes": 50}.items() <= res.items() and 0 <= res["accuracy"] <= 1 and res["ci95"] >= 0
    )
    assert 0 <= res["verification"]["auc"] <= 1
    idx = tmp_path / "mine.idx"
    run_cli("index", "build", gallery, "--index", idx, "--model", out, check=True)
    assert run_cli("identify", gallery / "star" / "star_00.png", "--index", idx, check=True).returncode == 0
    models = json.loads(run_cli("models", "--json", check=True).stdout)
    assert any(m["name"] == "characters" and m["default"] for m in models)


def test_supervised_fine_tuning_keeps_the_starting_weights_at_a_tiny_rate(tmp_path, gallery, random_model):
    import torch

    from simsearch.checkpoint import load_checkpoint

    one_tiny_step = ["--steps", "1", "--lr", "1e-12", "--val-fraction", "0", "--classes-per-batch", "4", "-q"]
    run_cli("train", gallery, "--out", tmp_path / "ft", "--init", random_model, *one_tiny_step, check=True)
    start, tuned = load_checkpoint(str(random_model)), load_checkpoint(str(tmp_path / "ft"))
    assert tuned.config == start.config
    tuned_weights = dict(tuned.encoder.named_parameters())  # batch-norm statistics move with any forward pass
    for name, w in start.encoder.named_parameters():
        assert torch.allclose(tuned_weights[name], w, atol=1e-6), name
    # the same run without --init starts from fresh weights of the same shape
    shape = ["--widths", "8,16,16,32", "--embedding-dim", "32"]
    run_cli("train", gallery, "--out", tmp_path / "fresh", *shape, *one_tiny_step, check=True)
    fresh = dict(load_checkpoint(str(tmp_path / "fresh")).encoder.named_parameters())
    assert any(not torch.allclose(fresh[n], w, atol=1e-3) for n, w in start.encoder.named_parameters())


def test_a_flattening_model_trains_indexes_and_keeps_its_input_size(tmp_path, gallery):
    out = tmp_path / "flat"
    short = ["--classes-per-batch", "4", "--steps", "1", "--val-fraction", "0", "-q"]
    shape = ["--pool", "flatten", "--size", "32", "--widths", "8,16,16,32"]
    run_cli("train", gallery, "--out", out, *shape, *short, check=True)
    cfg = json.loads((out / "model.json").read_text())["config"]
    # 32 pixels halved four times leave a 2 x 2 map of 32 channels: 128 numbers, the embedding by default
    assert cfg["pool"] == "flatten" and cfg["embedding_dim"] == 128
    idx = tmp_path / "flat.idx"
    run_cli("index", "build", gallery, "--index", idx, "--model", out, check=True)
    star = gallery / "star" / "star_01.png"
    hit = lines_json(run_cli("query", star, "--index", idx, "-k", "1", "--json", check=True).stdout)[0]["results"][0]
    assert hit["path"].endswith("star_01.png") and hit["score"] > 0.999
    # its head was sized for that map: another input size cannot start from these weights
    proc = run_cli("train", gallery, "--out", tmp_path / "ft", "--init", out, "--size", "48", *short)
    assert proc.returncode == 2 and "keep its size 32" in proc.stderr and not (tmp_path / "ft").exists()
    proc = run_cli("train", gallery, "--out", tmp_path / "ft", "--init", out, "--pool", "avg", *short)
    assert proc.returncode == 2 and "--pool" in proc.stderr


def test_a_fit_ink_model_frames_drawings_at_index_and_query_time(tmp_path, gallery):
    out = tmp_path / "inked"
    short = ["--widths", "8,16,16,32", "--classes-per-batch", "4", "--per-class", "3", "--val-fraction", "0.25"]
    run_cli("train", gallery, "--out", out, "--fit-ink", "--autocontrast", *short, "--steps", "2", check=True)
    pre = json.loads((out / "model.json").read_text())["config"]["preprocess"]
    assert pre["fit_ink"] is True and pre["invert"] is True
    idx = tmp_path / "inked.idx"
    run_cli("index", "build", gallery, "--index", idx, "--model", out, check=True)
    # the same star drawn a third of the size in a corner of a bigger page: framed, it is the original
    original = Image.open(gallery / "star" / "star_01.png").convert("L")
    page = Image.new("L", (315, 315), 255)
    page.paste(original, (200, 10))
    probe = tmp_path / "small_star.png"
    page.save(probe)
    hit = lines_json(run_cli("query", probe, "--index", idx, "-k", "1", "--json", check=True).stdout)[0]["results"][0]
    assert hit["path"].endswith("star_01.png") and hit["score"] > 0.97
    # the same weights without the framing make other vectors: refused against this index
    meta = json.loads((out / "model.json").read_text())
    meta["config"]["preprocess"]["fit_ink"] = False
    (out / "model.json").write_text(json.dumps(meta))
    proc = run_cli("query", probe, "--index", idx, "--model", out)
    assert proc.returncode == 1 and "other preprocessing" in proc.stderr
    # framing is for one-channel drawings: asking it of colour photos is a usage error, nothing written
    proc = run_cli("train", gallery, "--out", tmp_path / "rgb", "--fit-ink", "--channels", "3", *short)
    assert proc.returncode == 2 and "--fit-ink" in proc.stderr and not (tmp_path / "rgb").exists()


def test_hostile_files_are_skipped_without_hanging_or_reading_them(tmp_path, gallery):
    """Issue 23: a FIFO named .png, a link to a character device, a huge non-image, a name that is not
    UTF-8 and a name holding a new-line: the build finishes, says why for each, and prints one line each."""
    os.mkfifo(gallery / "star" / "pipe.png")
    os.symlink("/dev/zero", gallery / "star" / "zero.png")
    with open(gallery / "circle" / "huge.jpg", "wb") as f:  # 3 GB, sparse: reading it whole would show
        f.truncate(3 << 30)
    shutil.copy(gallery / "cross" / "cross_00.png", os.fsencode(gallery / "cross") + b"/bad-\xff-name.png")
    shutil.copy(gallery / "cross" / "cross_01.png", gallery / "cross" / "two\nlines.png")
    idx = tmp_path / "hostile.idx"
    proc = run_cli("index", "build", gallery, "--index", idx, timeout=120)
    assert proc.returncode == 0, proc.stderr
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("skipped:")]
    reasons = "\n".join(skipped)
    assert "pipe.png: not a regular file" in reasons and "zero.png: not a regular file" in reasons
    assert "huge.jpg: " in reasons and "not valid UTF-8" in reasons
    # every skipped file is one line: the new-line is shown escaped, never as a line of its own
    assert all(not line.startswith("lines.png") for line in proc.stderr.splitlines())
    assert "two\\nlines.png" in proc.stdout + proc.stderr or "indexed" in proc.stdout
    hits = run_cli("query", gallery / "cross" / "two\nlines.png", "--index", idx, "-k", "1", check=True).stdout
    assert len(hits.splitlines()) == 2 and "two\\nlines.png" in hits
