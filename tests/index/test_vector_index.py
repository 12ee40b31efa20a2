import io

import numpy as np
import pytest

from index.errors import IndexCorruptError, VectorError
from index.vector_index import IndexKind, KindParams, VectorIndex, check_vectors
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
    with pytest.raises(ValueError, match="allowed: flat, hnsw, ivfpq"):
        IndexKind.parse("annoy")


def clustered_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 200 centres: structured like real embeddings, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    centres = unit_rows(200, d, seed + 1)
    v = centres[rng.integers(0, 200, n)] + rng.normal(0, 0.35 / np.sqrt(d) * 4, (n, d)).astype(np.float32)
    return np.ascontiguousarray(v / np.linalg.norm(v, axis=1, keepdims=True), dtype=np.float32)


def recall_at(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


def reloaded(idx: VectorIndex) -> VectorIndex:
    """Through bytes, as the store saves and loads it."""
    raw = idx.exact_bytes()
    exact = None if raw is None else (np.load(io.BytesIO(raw[0])), np.load(io.BytesIO(raw[1])))
    return VectorIndex.from_bytes(idx.to_bytes(), idx.dim, idx.kind, idx.params, idx.tombstone_bytes(), exact)


@pytest.mark.parametrize("kind, min_recall", [(IndexKind.HNSW, 0.95), (IndexKind.IVFPQ, 0.95)])
def test_approximate_kinds_recall_and_removal(kind, min_recall):
    g, q = clustered_rows(6000, 32, seed=3), clustered_rows(100, 32, seed=4)
    ids = np.arange(6000, dtype=np.int64) + 100
    idx = VectorIndex(32, kind, KindParams(pq_m=16))
    idx.add(g, ids)
    _, exact = brute_force(g, ids, q, 10)
    _, got = idx.search(q, 10)
    assert recall_at(got, exact) >= min_recall
    # remove the true nearest neighbour of every query: it must never come back
    gone = np.unique(exact[:, 0])
    assert idx.remove(gone) == len(gone)
    assert len(idx) == 6000 - len(gone) and not np.isin(gone, idx.ids()).any()
    _, after = idx.search(q, 10)
    assert not np.isin(after, gone).any()
    again = reloaded(idx)
    assert len(again) == len(idx)
    assert not np.isin(again.search(q, 10)[1], gone).any()


def test_hnsw_compaction_purges_tombstones():
    g = clustered_rows(1000, 16)
    idx = VectorIndex(16, IndexKind.HNSW)
    idx.add(g, np.arange(1000, dtype=np.int64))
    assert idx.remove(np.array([999])) == 1 and len(idx) == 999  # still buffered: simply dropped
    idx.finalize()  # inserted into the graph: from now on removal leaves tombstones
    idx.remove(np.arange(100))
    assert idx.tombstones == 100 and not idx.compact()  # 10% is below the rebuild share
    idx.remove(np.arange(100, 300))
    assert idx.compact() and idx.tombstones == 0 and len(idx) == 699
    assert sorted(idx.ids().tolist()) == list(range(300, 999))
    np.testing.assert_array_equal(idx.reconstruct(500), g[500])


def test_ivfpq_scores_are_exact_and_its_exact_file_must_match():
    g = clustered_rows(3000, 32, seed=8)
    ids = np.arange(3000, dtype=np.int64) * 7
    idx = VectorIndex(32, IndexKind.IVFPQ, KindParams(pq_m=8))
    idx.add(g, ids)
    scores, found = idx.search(g[:20], 5)
    rows = found // 7
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", g[:20], g[rows]), atol=1e-5)
    assert (found[:, 0] == ids[:20]).all()
    raw = idx.exact_bytes()
    assert raw is not None
    exact_ids, exact_vecs = np.load(io.BytesIO(raw[0])), np.load(io.BytesIO(raw[1]))
    with pytest.raises(IndexCorruptError, match="rows"):
        VectorIndex.from_bytes(idx.to_bytes(), 32, IndexKind.IVFPQ, exact=(exact_ids[1:], exact_vecs[1:]))
    with pytest.raises(IndexCorruptError, match="exact vector file"):
        VectorIndex.from_bytes(idx.to_bytes(), 32, IndexKind.IVFPQ)


def test_ivfpq_refuses_too_few_vectors():
    idx = VectorIndex(8, IndexKind.IVFPQ)
    idx.add(unit_rows(50, 8), np.arange(50, dtype=np.int64))
    with pytest.raises(VectorError, match="at least"):
        idx.to_bytes()


def test_range_search_matches_brute_force():
    g = clustered_rows(800, 16)
    idx = VectorIndex(16)
    idx.add(g, np.arange(800, dtype=np.int64))
    res = idx.range_search(g[:5], 0.9)
    for row, (ids, scores) in zip(g[:5], res, strict=True):
        want = set(np.flatnonzero(g @ row >= 0.9).tolist())
        assert set(ids.tolist()) == want and (scores >= 0.9 - 1e-6).all()


@pytest.mark.parametrize("kind", [IndexKind.FLAT, IndexKind.HNSW, IndexKind.IVFPQ])
def test_a_filtered_search_is_exact_over_the_allowed_rows(kind, monkeypatch):
    """Allowed ids (a class, a folder): exactly the best of them, removed ones never, for every kind; and
    past EXACT_SUBSET rows through FAISS's id selector, where flat stays exact."""
    import index.vector_index as vi

    g, q = clustered_rows(3000, 16, seed=5), clustered_rows(12, 16, seed=6)
    ids = np.arange(3000, dtype=np.int64) * 3 + 7
    idx = VectorIndex(16, kind, KindParams(pq_m=8))
    idx.add(g, ids)
    allow = ids[::7]
    gone = allow[:20]
    idx.remove(gone)
    keep = np.isin(ids, allow) & ~np.isin(ids, gone)
    want_s, want_i = brute_force(g[keep], ids[keep], q, 10)
    scores, got = idx.search(q, 10, allow=np.concatenate([allow, [10**9]]))  # an id never stored is ignored
    np.testing.assert_array_equal(got, want_i)
    np.testing.assert_allclose(scores, want_s, atol=1e-5)
    # more wanted than allowed: padded
    few = ids[keep][:3]
    s3, i3 = idx.search(q[:2], 5, allow=few)
    assert set(i3[0, :3].tolist()) == set(few.tolist()) and i3[0, 3:].tolist() == [-1, -1]
    assert np.isneginf(s3[:, 3:]).all()
    assert (idx.search(q[:1], 4, allow=np.zeros(0, np.int64))[1] == -1).all()
    # the selector path (a large allowed set)
    monkeypatch.setattr(vi, "EXACT_SUBSET", 10)
    _, sel = idx.search(q, 10, allow=allow)
    assert not np.isin(sel, gone).any() and np.isin(sel[sel >= 0], allow).all()
    if kind is IndexKind.FLAT:
        np.testing.assert_array_equal(sel, want_i)
    else:
        assert recall_at(sel, want_i) >= 0.8


@pytest.mark.parametrize("kind", list(IndexKind))
def test_vectors_of_gives_back_the_stored_rows_of_search_hits(kind):
    """Search's second stage reads the stored vectors of its candidates back (exactly, for every kind), also
    after a reload and with tombstones."""
    g = clustered_rows(3000, 32, seed=9)
    ids = np.arange(3000, dtype=np.int64) * 3 + 5
    idx = VectorIndex(32, kind, KindParams(pq_m=8))
    idx.add(g, ids)
    idx.finalize()
    idx.remove(ids[:50])
    for index in (idx, reloaded(idx)):
        _, found = index.search(g[60:63], 40)
        assert (found >= 0).all() and not np.isin(found, ids[:50]).any()
        np.testing.assert_array_equal(index.vectors_of(found.ravel()), g[(found.ravel() - 5) // 3])
