"""The engine in-process: build, sync, add, remove, query and identify by path, PIL image and array,
calibration and duplicate groups, each checked against brute-force numpy over the same embeddings."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from simsearch.embed import Embedder
from simsearch.engine import (
    IndexStoreError,
    Searcher,
    StrictModeError,
    add_files,
    build_index,
    calibrate,
    duplicate_rows,
    find_duplicates,
    index_info,
    remove_entries,
    verify,
)
from simsearch.errors import DataError, EncoderMismatchError, ImageError
from simsearch.images import scan_folder


@pytest.fixture
def built(tmp_path, gallery, random_model):
    idx = tmp_path / "g.idx"
    report = build_index(gallery, idx, model=str(random_model), progress=False)
    return idx, report


def test_build_reports_and_info_agree_with_the_folder(built, gallery):
    idx, report = built
    files = scan_folder(gallery).files
    assert report.created and report.indexed == report.total == len(files) == 16 and not report.skipped
    info = index_info(idx)
    assert info["count"] == 16 and info["classes"] == 4 and info["unlabelled"] == 0 and info["kind"] == "flat"


def test_query_matches_brute_force_over_the_embedder(built, gallery, random_model):
    idx, _ = built
    paths = sorted(str(f.path) for f in scan_folder(gallery).files)
    emb = Embedder.load(str(random_model), "cpu")
    vecs, failed = emb.embed_paths(paths)
    assert not failed and vecs.shape == (16, 32) and np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)
    with Searcher(idx, device="cpu") as s:
        res = s.query(paths[3], k=4)[0]
        want = np.argsort(-(vecs @ vecs[3]), kind="stable")[:4]
        assert res.results[0].path == paths[3]
        assert np.allclose([h.score for h in res.results], (vecs @ vecs[3])[want], atol=1e-5)
        # the same image as a PIL image and as a numpy array: the same answer
        pic = Image.open(paths[3]).convert("RGB")
        by_pil = s.query(pic, k=4)[0]
        by_array = s.query(np.asarray(pic), k=4)[0]
        assert by_pil.query == "<image 0>"
        assert [h.id for h in by_pil.results] == [h.id for h in by_array.results] == [h.id for h in res.results]


def test_identify_names_the_class_and_says_unknown_below_the_threshold(built, gallery):
    idx, _ = built
    star = str(gallery / "star" / "star_01.png")
    with Searcher(idx, device="cpu") as s:
        known = s.identify([star], threshold=0.99)[0]
        assert known.known and known.label == "star" and known.score == pytest.approx(1.0, abs=1e-4)
        # the best score over this gallery never reaches 1.01: unknown, but the closest class is still named
        unknown = s.identify(star, threshold=1.0 + 1e-3)[0]
        assert not unknown.known and unknown.to_dict()["label"] is None and unknown.label == "star"
        answers, failed = s.identify_paths([star, "/nonexistent.png"])
        assert len(answers) == 1 and failed[0][0] == "/nonexistent.png"
        with pytest.raises(ImageError):
            s.query("/nonexistent.png")


def test_sync_add_remove_and_strict(tmp_path, built, gallery, random_model):
    idx, _ = built
    moved = gallery / "circle" / "circle_01.png"
    os.rename(moved, gallery / "circle" / "renamed.png")
    (gallery / "circle" / "circle_02.png").unlink()
    (gallery / "broken.png").write_bytes(b"not an image")
    report = build_index(gallery, idx, progress=False)
    assert (report.moved, report.removed, report.added, report.total) == (1, 1, 0, 15)
    assert [s.path for s in report.skipped] == [str(gallery / "broken.png")]
    with pytest.raises(StrictModeError):
        build_index(gallery, tmp_path / "strict.idx", model=str(random_model), strict=True, progress=False)
    with pytest.raises(IndexStoreError):  # nothing was committed there
        index_info(tmp_path / "strict.idx")
    extra = tmp_path / "extra"
    shutil.copytree(gallery / "star", extra / "star2")
    added = add_files(idx, [str(extra)], label="newstar", progress=False)
    assert added.added == 4 and added.total == 19
    removed, unmatched = remove_entries(idx, [str(extra), "/no/such/file.png"])
    assert removed == 4 and unmatched == ["/no/such/file.png"]
    assert index_info(idx)["count"] == 15


def test_another_encoder_is_refused(built, gallery):
    idx, _ = built
    with pytest.raises(EncoderMismatchError, match="fingerprint"):
        Searcher(idx, model="characters", device="cpu")
    with pytest.raises(EncoderMismatchError):
        build_index(gallery, idx, model="characters", progress=False)


def test_verify_uses_the_index_threshold_and_its_encoder(built, gallery):
    idx, _ = built
    a, b = gallery / "star" / "star_01.png", gallery / "star" / "star_02.png"
    same = verify(a, a, index=idx, threshold=0.999, device="cpu")
    assert same.same and same.score == pytest.approx(1.0, abs=1e-4)
    other = verify(a, b, index=idx, threshold=1.0, device="cpu")
    assert not other.same and other.score < 1.0


def test_calibration_threshold_is_the_impostor_quantile(tmp_path, built, gallery, random_model):
    idx, _ = built
    c = calibrate(gallery, idx, far=0.1, device="cpu", progress=False)
    # recompute from the embeddings by hand: every pair of the 16 images
    paths = [str(f.path) for f in scan_folder(gallery).files]
    labels = np.array([f.label for f in scan_folder(gallery).files])
    vecs, _ = Embedder.load(str(random_model), "cpu").embed_paths(paths)
    i, j = np.triu_indices(len(paths), k=1)
    scores = np.einsum("ij,ij->i", vecs[i], vecs[j])
    impostor = scores[labels[i] != labels[j]]
    assert c.genuine_pairs == int((labels[i] == labels[j]).sum()) == 4 * 6 and c.impostor_pairs == len(impostor)
    # the lowest threshold that accepts at most 10% of the impostor pairs: the next score down is accepted
    allowed = int(np.floor(0.1 * len(impostor)))
    assert np.mean(impostor >= c.threshold) <= 0.1
    assert c.threshold == pytest.approx(np.sort(impostor)[::-1][allowed], abs=1e-6)
    assert index_info(idx)["threshold"] == pytest.approx(c.threshold)
    with Searcher(idx, device="cpu") as s:
        assert s.threshold() == pytest.approx(c.threshold)
    with pytest.raises(DataError, match="two class subfolders"):
        calibrate(gallery / "star", idx, device="cpu", progress=False)


def test_duplicate_groups_are_the_connected_components(tmp_path, gallery, random_model):
    folder = tmp_path / "dups"
    shutil.copytree(gallery, folder)
    # two exact copies of one drawing and one of another: two groups, whatever the threshold below 1
    shutil.copy(folder / "star" / "star_01.png", folder / "star" / "copy_a.png")
    shutil.copy(folder / "star" / "star_01.png", folder / "cross" / "copy_b.png")
    shutil.copy(folder / "circle" / "circle_01.png", folder / "circle" / "copy_c.png")
    idx = tmp_path / "d.idx"
    build_index(folder, idx, model=str(random_model), progress=False)
    groups = find_duplicates(idx, 0.9999)
    names = [sorted(os.path.basename(r.path) for r, _ in g) for g in groups]
    assert names == [["copy_a.png", "copy_b.png", "star_01.png"], ["circle_01.png", "copy_c.png"]]
    rows = duplicate_rows(groups)
    assert [r["group"] for r in rows] == [1, 2] and rows[0]["size"] == 3
    assert all(m["best_score"] >= 0.9999 for r in rows for m in r["members"])
    # at -1 every image links to every other: one group of all 19
    assert [len(g) for g in find_duplicates(idx, -1.0)] == [19]
    with pytest.raises(ValueError):
        find_duplicates(idx, 1.5)
