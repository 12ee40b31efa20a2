"""Open-set measures worked out by hand: best-of-gallery scores, FPIR/FNIR thresholds, the fitted tail."""

from __future__ import annotations

import numpy as np
import pytest

from simsearch.evaluate.openset import measure_runs, random_runs, within_alphabet_runs
from simsearch.measures.openset import (
    OpenSetCurve,
    ProbeScores,
    gallery_self_scores,
    open_set_rates,
    probe_scores,
)


def _unit(rows):
    a = np.asarray(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_probe_scores_by_hand():
    gallery = _unit([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    g_lab = np.array([0, 1, 2])
    probes = _unit([[0.9, 0.1, 0], [0.2, 0.8, 0.0], [0.5, 0.5, 0.7]])
    p_lab = np.array([0, 0, 7])  # right, wrong (nearest is class 1), unknown
    s = probe_scores(probes, p_lab, gallery, g_lab)
    assert s.known == pytest.approx([probes[0, 0], probes[1, 1]])
    assert s.correct.tolist() == [True, False]
    # unknowns: probe 0 and 1 with class 0 left out, then probe 2 as it is
    assert sorted(s.unknown) == pytest.approx(sorted([probes[0, 1], probes[1, 1], probes[2, 2]]))
    assert s.unknown_classes == pytest.approx((2 + 2 + 3) / 3)


def test_gallery_probes_itself_with_itself_left_out():
    vecs = _unit([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0.7, 0.7]])
    labels = np.array([0, 0, 1, 1, 2])
    s = gallery_self_scores(vecs, labels)
    # four images have a classmate (known probes), the fifth is alone in its class
    assert len(s.known) == 4 and s.correct.all() and len(s.unknown) == 5
    assert s.known[0] == pytest.approx(float(vecs[0] @ vecs[1]))


def test_fpir_threshold_from_the_empirical_tail():
    unknown = np.linspace(0.0, 0.99, 200)
    curve = OpenSetCurve.fit(ProbeScores(np.array([0.9, 0.8]), np.array([True, False]), unknown, 10.0), 10)
    t = curve.threshold_at_fpir(0.1)  # 20 of 200 may pass: the 21st best is rejected
    assert np.sum(unknown >= t) == 20 and t > np.sort(unknown)[::-1][20]
    assert curve.fpir(t) == pytest.approx(0.1)
    assert open_set_rates(ProbeScores(np.array([0.9, 0.8]), np.array([True, False]), unknown, 10.0), t) == (
        pytest.approx(0.1),
        pytest.approx(0.5),
    )


def test_fnir_threshold_by_hand():
    known = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([True, True, False, True, True])
    curve = OpenSetCurve.fit(ProbeScores(known, correct, np.linspace(0, 0.5, 50), 4.0), 4)
    # FNIR 0.4 lets two of five be missed: the wrong one and the lowest right one, so accept from 0.6
    assert curve.threshold_at_fnir(0.4) == pytest.approx(0.6)
    assert curve.fnir(0.6) == pytest.approx(0.4) and curve.rank1 == pytest.approx(0.8)
    with pytest.raises(ValueError, match="nearest class is wrong"):
        curve.threshold_at_fnir(0.1)


def test_the_fitted_tail_holds_its_fpir_on_a_known_law():
    # best impostor scores drawn from a Gumbel law; 100 of them, so 1% is read off the fitted tail
    rng = np.random.default_rng(0)
    loc, scale = 0.5, 0.05
    observed = []
    for _ in range(40):
        sample = loc - scale * np.log(-np.log(rng.random(100)))
        curve = OpenSetCurve.fit(ProbeScores(np.zeros(0), np.zeros(0, bool), sample, 20.0), 20)
        t = curve.threshold_at_fpir(0.01)
        observed.append(-np.expm1(-np.exp(-(t - loc) / scale)))  # the law's own tail beyond t
    assert 0.5 * 0.01 < np.mean(observed) < 2 * 0.01
    # a bigger gallery than the one measured needs a higher threshold for the same FPIR
    bigger = OpenSetCurve.fit(ProbeScores(np.zeros(0), np.zeros(0, bool), sample, 10.0), 20)
    same = OpenSetCurve.fit(ProbeScores(np.zeros(0), np.zeros(0, bool), sample, 20.0), 20)
    assert bigger.threshold_at_fpir(0.01) > same.threshold_at_fpir(0.01)


def test_curve_round_trip():
    rng = np.random.default_rng(1)
    curve = OpenSetCurve.fit(
        ProbeScores(rng.random(30), rng.random(30) > 0.2, rng.random(3000).astype(np.float32), 19.0), 20
    )
    again = OpenSetCurve.from_dict(curve.to_dict())
    for p in (0.001, 0.01, 0.1):
        assert again.threshold_at_fpir(p) == pytest.approx(curve.threshold_at_fpir(p), abs=2e-3)
    assert again.fnir(0.5) == curve.fnir(0.5)
    with pytest.raises(ValueError):
        OpenSetCurve.from_dict(dict(curve.to_dict(), gev=[0.1, -1.0, 0.1]))


def test_runs_and_measurement():
    rng = np.random.default_rng(2)
    centres = _unit(rng.normal(size=(60, 16)))
    labels = np.repeat(np.arange(60), 4)
    emb = _unit(centres[labels] + 0.08 * rng.normal(size=(240, 16)))
    runs = random_runs(labels, 20, 1, 5, seed=0)
    assert all(len(r.gallery) == 20 and len(r.known) == 60 and len(r.unknown) == 20 for r in runs)
    assert all(not set(labels[r.unknown]) & set(labels[r.gallery]) for r in runs)
    out = measure_runs(emb, labels, runs, encoder_threshold=0.5)
    assert out["gallery_classes"] == 20 and out["known_probes"] == 300 and out["unknown_probes"] == 100
    assert out["nearest_class_accuracy"] > 0.9
    names = [row["threshold"] for row in out["thresholds"]]
    assert names[:2] == ["gallery-fitted, FPIR 0.01", "gallery-fitted, FPIR 0.1"]
    drawers = np.tile(np.arange(4), 60)
    groups = [f"a{c // 20}" for c in range(60)]
    lake = within_alphabet_runs(labels, groups, drawers, 3, seed=0)
    for r in lake:
        assert len({groups[c] for c in labels[r.gallery]}) == 1 and len(set(drawers[r.gallery])) == 1
        assert labels[r.known].tolist() == labels[r.gallery].tolist()
        assert not {groups[c] for c in labels[r.unknown]} & {groups[c] for c in labels[r.gallery]}


def test_within_alphabet_runs_with_unknowns_of_the_same_alphabet():
    labels = np.repeat(np.arange(60), 4)
    drawers = np.tile(np.arange(4), 60)
    groups = [f"a{c // 30}" for c in range(60)]  # two alphabets of 30 characters
    for r in within_alphabet_runs(labels, groups, drawers, 4, seed=1, unknown_from="same"):
        alphabet = {groups[c] for c in labels[r.gallery]}
        assert len(alphabet) == 1 and {groups[c] for c in labels[r.unknown]} == alphabet
        assert not set(labels[r.unknown]) & set(labels[r.gallery]) and len(r.unknown) == 10
        assert len(set(drawers[r.unknown])) == 1 and set(drawers[r.unknown]) == set(drawers[r.known])
