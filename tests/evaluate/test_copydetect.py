"""Copy-detection measures against values worked out by hand, and seeded query sets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from simsearch.evaluate.copydetect import copy_detection_table, make_copy_queries, ranks_of_truth
from simsearch.evaluate.reports import Candidate
from simsearch.symbols import write_photos


def test_ranks_cosine_by_hand() -> None:
    gallery = np.eye(3, dtype=np.float32)
    queries = np.array([[0.9, 0.1, 0.0], [0.8, 0.6, 0.0], [0.0, 0.6, 0.8]], dtype=np.float32)
    # query 0 is a copy of item 0 (rank 1), query 1 of item 1 (item 0 scores higher: rank 2),
    # query 2 of item 1 (item 2 scores 0.8 > 0.6: rank 2)
    ranks = ranks_of_truth(gallery, queries, np.array([0, 1, 1]), "cosine")
    assert ranks.tolist() == [1, 2, 2]


def test_ranks_hamming_counts_equal_bits_and_breaks_ties_at_random() -> None:
    gallery = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=bool)
    query = np.array([[1, 1, 0, 0]], dtype=bool)
    # items 0 and 2 tie (4 equal bits) ahead of item 1 (3): the truth item 0 ranks 1 or 2
    seen = {int(ranks_of_truth(gallery, query, np.array([0]), "hamming", seed=s)[0]) for s in range(40)}
    assert seen == {1, 2}
    assert ranks_of_truth(gallery, query, np.array([1]), "hamming")[0] == 3


def test_table_by_hand() -> None:
    ranks = np.array([1, 3, 20, 1])
    rows = copy_detection_table(ranks, ["crop", "crop", "flip", "flip"])
    crop, flip, overall = rows
    assert crop == {
        "edit": "crop",
        "queries": 2,
        "recall@1": 0.5,
        "recall@10": 1.0,
        "mAP": pytest.approx((1 + 1 / 3) / 2),
    }
    assert flip["recall@1"] == 0.5 and flip["recall@10"] == 0.5 and flip["mAP"] == pytest.approx((1 / 20 + 1) / 2)
    assert overall["queries"] == 4 and overall["recall@1"] == 0.5 and overall["recall@10"] == 0.75


def test_queries_are_seeded_and_point_at_their_originals(tmp_path) -> None:
    root = write_photos(tmp_path / "p", 12, seed=1, side=64)
    pics = [Image.open(p).convert("RGB") for p in sorted(root.glob("*.jpg"))]
    a = make_copy_queries(pics, 4, ["crop", "flip"], seed=3)
    b = make_copy_queries(pics, 4, ["crop", "flip"], seed=3)
    assert len(a.images) == 8 and a.edits == ["crop", "flip"] * 4
    assert a.truth.tolist() == b.truth.tolist() and len(set(a.truth.tolist())) == 4
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, b.images, strict=True))
    # a flipped copy is its original mirrored
    j = a.edits.index("flip")
    assert np.array_equal(np.asarray(a.images[j]), np.asarray(pics[a.truth[j]])[:, ::-1])
    # raw pixels find unedited-looking copies: the flip of a photo is not the photo itself
    g, metric = Candidate("raw-pixels").pictures(pics)
    assert metric == "cosine" and g.shape == (12, 3 * 32 * 32)
    with pytest.raises(ValueError, match="unknown edit"):
        make_copy_queries(pics, 2, ["sepia"])


def test_the_pdq_baseline_finds_a_recompressed_copy_and_tells_photos_apart(tmp_path):
    pytest.importorskip("pdqhash")  # a source package (compiles C++), in the bench-pdq extra only
    import io

    from PIL import Image

    from simsearch.evaluate.baselines import hash_codes
    from simsearch.symbols import write_photos

    root = write_photos(tmp_path / "p", 3, seed=2, side=128)
    pics = [Image.open(p).convert("RGB") for p in sorted(root.glob("*.jpg"))]
    buf = io.BytesIO()
    pics[0].save(buf, format="JPEG", quality=30)
    copy = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    codes = hash_codes([*pics, copy], "pdq")
    assert codes.shape == (4, 256) and codes.dtype == bool
    assert (codes[0] != codes[3]).sum() < 40 < min((codes[0] != codes[1]).sum(), (codes[0] != codes[2]).sum())
