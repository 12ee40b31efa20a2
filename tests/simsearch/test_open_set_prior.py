"""The encoder's open-set prior (simsearch.measures.prior) with query scores: a copies encoder is queried with
edited copies, while a gallery can probe itself only with its own unedited pictures; the prior reads the
target's threshold from the queries and the level a gallery measured from the unedited pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simsearch.measures.prior import OpenSetPrior, combine


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _pictures_and_copies(n: int = 400, seed: int = 0, edit: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Pictures of a few kinds (unrelated ones of a kind score high together) and a copy of each that an
    edit moved off its kind (so it scores lower against every other picture)."""
    rng = np.random.default_rng(seed)
    kinds = _unit(rng.normal(size=(4, 16)))
    pictures = _unit(kinds[rng.integers(0, 4, n)] + 0.35 * rng.normal(size=(n, 16)))
    copies = _unit(pictures + edit * _unit(rng.normal(size=(n, 16))))
    return pictures, copies


def test_thresholds_come_from_the_queries_and_the_gallerys_level_from_its_own_pictures():
    pictures, copies = _pictures_and_copies()
    labels = np.arange(len(pictures))
    plain = OpenSetPrior.measure(pictures, labels, "generated", sizes=(10, 50), shots=())
    queried = OpenSetPrior.measure(
        pictures, labels, "generated", sizes=(10, 50), shots=(), queries=copies, queries_are="noisy copies"
    )
    for size in (10, 50):  # the same galleries and probes: the unedited scores are the same
        assert np.array_equal(plain.impostor[size], queried.impostor[size])
    t_plain, t_queried = plain.threshold_at_fpir(50, 0.01), queried.threshold_at_fpir(50, 0.01)
    assert t_plain is not None and t_queried is not None
    assert t_queried.value < t_plain.value - 0.02
    # the threshold is the queries' 1% tail
    assert abs(np.mean(queried.query_impostor[50] >= t_queried.value) - 0.01) <= 0.005
    # a gallery that measured its own median joins the prior the same way, with the queries' threshold
    own = np.sort(plain.impostor[50])[::5]
    a = combine(0.99, own, len(own), 50, 0.01, plain)
    b = combine(0.99, own, len(own), 50, 0.01, queried)
    assert a.level == b.level and b.value < a.value < 1


def test_a_gallery_never_gets_a_threshold_below_the_quantile_it_measured_itself():
    pictures, copies = _pictures_and_copies(600, seed=2, edit=3.0)
    labels = np.arange(len(pictures))
    queried = OpenSetPrior.measure(
        pictures, labels, "generated", sizes=(10, 50), shots=(), queries=copies, queries_are="noisy copies"
    )
    own = np.sort(OpenSetPrior.measure(pictures, labels, "generated", sizes=(50,), shots=(), seed=1).impostor[50])
    got = combine(0.99, own[-500:], 500, 50, 0.01, queried)  # 500 unknown probes: its 98th percentile measured
    assert got.level == pytest.approx(0.98) and got.prior is not None
    assert got.prior.value > 1  # the copies' 1% sits below the unedited 98th percentile: the prior says "below"
    assert got.value == pytest.approx(float(np.quantile(own[-500:], got.level)))


def test_query_scores_survive_model_json_and_a_record_without_them_still_loads():
    pictures, copies = _pictures_and_copies(300, seed=1)
    queried = OpenSetPrior.measure(
        pictures, np.arange(300), "generated", sizes=(10, 50), shots=(), queries=copies, queries_are="noisy copies"
    )
    record = json.loads(json.dumps(queried.to_dict()))
    back = OpenSetPrior.from_dict(record)
    assert back.queries == "noisy copies" and back.sizes == (10, 50)
    t, u = back.threshold_at_fpir(50, 0.01), queried.threshold_at_fpir(50, 0.01)
    assert t is not None and u is not None and t.value == pytest.approx(u.value, abs=1e-5)
    older = {k: v for k, v in record.items() if k not in ("queries", "query_impostor")}
    assert OpenSetPrior.from_dict(older).query_impostor == {}
    wrong = {**record, "query_impostor": {"3": [0.5]}}
    with pytest.raises(ValueError, match="query scores"):
        OpenSetPrior.from_dict(wrong)
    # query scores are of the same probes as the impostor scores: never more of them than were measured
    n10 = record["n_impostor"]["10"]
    mismatched = {**record, "query_impostor": {**record["query_impostor"], "10": [0.5] * (n10 + 1)}}
    with pytest.raises(ValueError, match="do not agree"):
        OpenSetPrior.from_dict(mismatched)


def test_a_share_read_against_the_queries_own_level_uses_their_scores():
    # level_of_queries: for a gallery that probed itself with edited copies, the share of the distance to 1 is
    # taken against the queries' own quantile, not the unedited pictures'
    pictures, copies = _pictures_and_copies(600, seed=3)
    labels = np.arange(len(pictures))
    queried = OpenSetPrior.measure(
        pictures, labels, "generated", sizes=(50,), shots=(), queries=copies, queries_are="noisy copies"
    )
    plain_share = queried.threshold_at_fpir(50, 0.01, above_level=0.5)
    query_share = queried.threshold_at_fpir(50, 0.01, above_level=0.5, level_of_queries=True)
    assert plain_share is not None and query_share is not None
    t = queried.threshold_at_fpir(50, 0.01)
    assert t is not None
    q_med = float(np.quantile(queried.query_impostor[50], 0.5))
    u_med = float(np.quantile(queried.impostor[50], 0.5))
    assert query_share.value == pytest.approx((1 - t.value) / (1 - q_med))
    assert plain_share.value == pytest.approx((1 - t.value) / (1 - u_med))
    assert query_share.value < plain_share.value  # the copies sit lower than the pictures: a smaller share


def test_a_prior_on_few_classes_measures_larger_galleries_only_when_asked():
    rng = np.random.default_rng(4)
    centres = _unit(rng.normal(size=(8, 16)))
    labels = np.repeat(np.arange(8), 10)
    emb = _unit(centres[labels] + 0.3 * rng.normal(size=(80, 16)))
    assert OpenSetPrior.measure(emb, labels, "8 classes", sizes=(2, 3, 6), shots=()).sizes == (2, 3)
    wide = OpenSetPrior.measure(emb, labels, "8 classes", sizes=(2, 3, 6), shots=(), others_at_least=1)
    assert wide.sizes == (2, 3, 6)
    # the best of more classes is higher: the 1% threshold grows with the gallery
    t = [wide.threshold_at_fpir(s, 0.01) for s in wide.sizes]
    assert all(x is not None for x in t) and t[0].value < t[-1].value  # type: ignore[union-attr]
