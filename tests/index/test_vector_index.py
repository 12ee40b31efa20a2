import numpy as np
import pytest

from index.errors import IndexCorruptError, VectorError
from index.vector_index import IndexKind, VectorIndex, check_vectors
from tests.conftest import unit_rows


def brute_force(gallery: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ gallery.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), ids[order]


def test_search_matches_brute_force():
    g, q = unit_rows(500, 32, seed=1), unit_rows(20, 32, seed=2)
    ids = np.arange(1000, 1500, dtype=np.int64)
    idx = VectorIndex(32)
    idx.add(g, ids)
    scores, got = idx.search(q, 10)
    want_scores, want_ids = brute_force(g, ids, q, 10)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    np.testing.assert_array_equal(got, want_ids)


def test_remove_and_pad_when_k_exceeds_count():
    g = unit_rows(5, 8)
    idx = VectorIndex(8)
    idx.add(g, np.arange(5, dtype=np.int64))
    assert idx.remove(np.array([1, 3, 99])) == 2
    assert sorted(idx.ids().tolist()) == [0, 2, 4]
    scores, ids = idx.search(g[:1], 5)
    assert ids[0, 0] == 0 and set(ids[0, :3].tolist()) == {0, 2, 4}
    assert ids[0, 3:].tolist() == [-1, -1] and np.isneginf(scores[0, 3:]).all()


def test_serialization_round_trip():
    g = unit_rows(50, 16)
    idx = VectorIndex(16)
    idx.add(g, np.arange(50, dtype=np.int64) * 7)
    again = VectorIndex.from_bytes(idx.to_bytes(), 16, IndexKind.FLAT)
    np.testing.assert_array_equal(again.ids(), idx.ids())
    np.testing.assert_allclose(again.reconstruct(49 * 7), g[49])
    with pytest.raises(IndexCorruptError):
        VectorIndex.from_bytes(b"not a faiss index", 16, IndexKind.FLAT)
    with pytest.raises(IndexCorruptError):
        VectorIndex.from_bytes(idx.to_bytes(), 32, IndexKind.FLAT)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.ones((2, 4), np.float64), "float32"),
        ((np.ones((2, 5)) / np.sqrt(5)).astype(np.float32), "shape"),
        (np.ones((2, 4), np.float32), "normalized"),
        (np.asfortranarray(unit_rows(3, 4).T.copy().T), "contiguous"),
        (np.full((1, 4), np.nan, np.float32), "NaN"),
    ],
)
def test_check_vectors_rejects_bad_input(bad, message):
    with pytest.raises(VectorError, match=message):
        check_vectors(bad, 4)


def test_unknown_kind_names_allowed_values():
    with pytest.raises(ValueError, match="allowed: flat"):
        IndexKind.parse("annoy")
