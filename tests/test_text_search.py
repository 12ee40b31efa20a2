"""Text search end to end: a small CLIP-style encoder trained by `simsearch train --captions` on generated
captioned shapes finds the right pictures for words (CLI and service); image-only encoders refuse text;
freezing keeps the frozen weights as they were."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import torch

from simsearch.shapes import all_captions, write_captioned_shapes
from tests.conftest import run_cli
from tests.test_service import CHROMIUM, _artifacts, request, start_server, upload

N_TRAIN, N_GALLERY = 900, 225  # 20 and 5 pictures of each of the 45 captions


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clip")
    write_captioned_shapes(root / "train", N_TRAIN, seed=1, size=32)
    pairs = write_captioned_shapes(root / "gallery", N_GALLERY, seed=2, size=32)
    for p, _ in pairs:  # the gallery's captions are not the index's business
        p.with_suffix(".txt").unlink()
    proc = run_cli(
        "train", root / "train", "--captions", "--out", root / "model", "--channels", "3", "--size", "32",
        "--widths", "32,64,128", "--embedding-dim", "64", "--steps", "150", "--val-every", "150",
        "--batch", "128", "--lr", "2e-3", "--json", check=True,
    )  # fmt: skip
    result = json.loads(proc.stdout)
    run_cli("index", "build", root / "gallery", "--model", root / "model", "--index", root / "idx", "-q", check=True)
    truth = {str(p): c for p, c in pairs}
    return {"root": root, "model": root / "model", "index": root / "idx", "result": result, "truth": truth}  # type: ignore[dict-item]


def test_trained_text_tower_finds_the_described_pictures(tiny_clip: dict) -> None:
    """Every caption as a text query over pictures the encoder never saw: precision@5 far above chance
    (5 right pictures of 225: 2.2%)."""
    captions = all_captions()
    args = [a for c in captions for a in ("--text", c)]
    proc = run_cli("query", *args, "--index", tiny_clip["index"], "-k", "5", "--json", check=True)
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["query"] for a in answers] == [f"text: {c}" for c in captions]
    precision = np.mean(
        [
            np.mean([tiny_clip["truth"][h["path"]] == c for h in a["results"]])
            for a, c in zip(answers, captions, strict=True)
        ]
    )
    chance = 5 / N_GALLERY
    assert precision > 10 * chance, precision
    # the checkpoint records the held-out text recall it was chosen on
    meta = json.loads((tiny_clip["model"] / "model.json").read_text())
    assert meta["config"]["text"]["vocabulary"] and meta["training"]["best_val_text_recall_at_5"] > 0.5
    assert tiny_clip["result"]["step_s"] > 0


def test_text_query_usage_errors(tiny_clip: dict, tmp_path: Path) -> None:
    idx = tiny_clip["index"]
    picture = next(iter(tiny_clip["truth"]))
    proc = run_cli("query", picture, "--text", "two red circles", "--index", idx)
    assert proc.returncode == 2 and "not both" in proc.stderr
    proc = run_cli("query", "--index", idx)
    assert proc.returncode == 2 and "--text" in proc.stderr
    proc = run_cli("query", "--text", "  ", "--index", idx)
    assert proc.returncode == 2 and "needs some words" in proc.stderr
    # words the tower never saw still give an answer (one unknown token), not an error
    proc = run_cli("query", "--text", "zebra", "--index", idx, "--json", check=True)
    assert len(json.loads(proc.stdout)["results"]) == 5


def test_image_only_encoder_refuses_text(gallery: Path, tmp_path: Path) -> None:
    run_cli("index", "build", gallery, "--index", tmp_path / "idx", "-q", check=True)
    proc = run_cli("query", "--text", "a circle", "--index", tmp_path / "idx")
    assert proc.returncode == 1 and "embeds images only" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_service_text_search(tiny_clip: dict) -> None:
    proc, base = start_server(tiny_clip["index"])
    try:
        assert json.loads(request(base + "/stats")[1])["text_search"] is True
        body = urllib.parse.urlencode({"text": "three blue squares"}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        status, raw, _ = request(base + "/search?k=5", "POST", body, headers)
        assert status == 200, raw
        res = json.loads(raw)
        assert res["query"] == "text: three blue squares" and len(res["results"]) == 5
        # paging goes on where the first page stopped
        status, raw, _ = request(base + "/search?k=5&offset=5", "POST", body, headers)
        assert [h["rank"] for h in json.loads(raw)["results"]] == [6, 7, 8, 9, 10]
        # neither an image nor a text, and both: refused
        status, raw, _ = request(base + "/search", "POST", b"", headers)
        assert status == 422
        picture = Path(next(iter(tiny_clip["truth"]))).read_bytes()
        status, res = upload(base, "/search", picture)
        assert status == 200 and res["results"][0]["score"] > 0.99  # an image still searches
        status, raw, _ = request(
            base + "/search", "POST", urllib.parse.urlencode({"text": "x" * 1001}).encode(), headers
        )
        assert status == 422
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_service_image_only_index_refuses_text(gallery: Path, tmp_path: Path) -> None:
    run_cli("index", "build", gallery, "--index", tmp_path / "idx", "-q", check=True)
    proc, base = start_server(tmp_path / "idx")
    try:
        assert json.loads(request(base + "/stats")[1])["text_search"] is False
        body = urllib.parse.urlencode({"text": "a circle"}).encode()
        status, raw, _ = request(base + "/search", "POST", body, {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 422 and "images only" in json.loads(raw)["detail"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_captions_need_captions(tmp_path: Path) -> None:
    pairs = write_captioned_shapes(tmp_path / "d", 20, seed=0, size=32)
    for p, _ in pairs:
        p.with_suffix(".txt").unlink()
    proc = run_cli("train", tmp_path / "d", "--captions", "--out", tmp_path / "m", "--channels", "3", "--size", "32")
    assert proc.returncode == 1 and "no image has a caption" in proc.stderr
    proc = run_cli("train", tmp_path / "d", "--captions", "--self-supervised", "--out", tmp_path / "m")
    assert proc.returncode == 2 and "two kinds of run" in proc.stderr
    proc = run_cli("train", tmp_path / "d", "--head", "16", "--out", tmp_path / "m")
    assert proc.returncode == 2 and "--init" in proc.stderr
    assert not (tmp_path / "m").exists()


def test_train_blocks_leaves_frozen_weights_alone(random_model: Path, tmp_path: Path) -> None:
    """Fine-tuning with --train-blocks 1: the last block and the head change, every other weight (and
    the frozen batch-norm statistics) stays exactly as it was."""
    from simsearch.checkpoint import load_checkpoint
    from simsearch.symbols import write_symbol_set

    data = tmp_path / "data"
    for group in ("a", "b"):
        write_symbol_set(data / group, ["circle", "triangle", "star", "cross", "square"], per_class=4, seed=1)
    proc = run_cli(
        "train", data, "--init", random_model, "--train-blocks", "1", "--out", tmp_path / "ft", "--steps", "3",
        "--classes-per-batch", "4", "--per-class", "2", "--val-every", "3", "--val-fraction", "0.5", "--json",
        check=True,
    )  # fmt: skip
    assert json.loads(proc.stdout)["step_s"] > 0
    before = load_checkpoint(str(random_model)).encoder.state_dict()
    after = load_checkpoint(str(tmp_path / "ft")).encoder.state_dict()
    last = max(int(k.split(".")[1]) for k in before if k.startswith("features."))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "nothing was trained"
    assert all(k.startswith((f"features.{last}.", "head.")) for k in changed), sorted(changed)[:5]


def test_the_page_searches_by_text_in_headless_chromium(tiny_clip: dict) -> None:
    """The page over an index whose encoder reads text: a text box, words in, pictures out (and no
    identification for words); a screenshot is kept as a test artefact."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    proc, base = start_server(tiny_clip["index"])
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=flags)
            try:
                expect = sync_api.expect
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                page.goto(base + "/")
                expect(page.locator("#text-form")).to_be_visible()
                page.fill("#k", "5")
                page.fill("#text", "two yellow squares")
                page.click("#text-form button")
                expect(page.locator("#results .hit")).to_have_count(5)
                expect(page.locator("#query-text")).to_have_text('"two yellow squares"')
                expect(page.locator("#query-img")).to_be_hidden()
                expect(page.locator("#identity")).to_be_empty()
                expect(page.locator("#status")).to_contain_text(f"showing 5 of {N_GALLERY}")
                # the pictures shown are the ones the words describe (the caption files say so)
                names = page.locator("#results .hit .name").all_inner_texts()
                right = [
                    tiny_clip["truth"][str(tiny_clip["root"] / "gallery" / n)] == "two yellow squares" for n in names
                ]
                assert sum(right) >= 3, names
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(_artifacts() / "9-text-search.png"), full_page=True)
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
