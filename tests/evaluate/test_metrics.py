import numpy as np
import pytest

from simsearch.measures.metrics import equal_error_rate, few_shot_accuracy, roc_auc, threshold_at_far, verification
from tests.conftest import unit_rows


def clustered(n_classes=30, per=6, dim=16, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = unit_rows(n_classes, dim, seed)
    emb = np.repeat(centres, per, 0) + rng.normal(0, noise, (n_classes * per, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float32), np.repeat(np.arange(n_classes), per)


def test_few_shot_separable_and_random():
    emb, labels = clustered()
    r = few_shot_accuracy(emb, labels, way=20, shot=1, episodes=200)
    assert r.accuracy == 1.0 and r.ci95 == 0.0
    rnd = few_shot_accuracy(unit_rows(180, 16, 5), labels, way=5, shot=1, episodes=2000, seed=1)
    assert abs(rnd.accuracy - 0.2) < 3 * rnd.ci95 + 0.01
    with pytest.raises(ValueError, match="30-way"):
        few_shot_accuracy(emb, labels, way=30, shot=6, episodes=1)
    assert few_shot_accuracy(emb, labels, 5, 1, 50, seed=3) == few_shot_accuracy(emb, labels, 5, 1, 50, seed=3)


def test_roc_by_hand():
    gen, imp = np.array([0.9, 0.8, 0.3]), np.array([0.7, 0.2, 0.1, 0.05])
    # AUC = fraction of (g, i) pairs with g > i: 0.9 and 0.8 beat all 4; 0.3 beats 3 of 4 -> 11 / 12
    assert roc_auc(gen, imp) == pytest.approx(11 / 12)
    eer, thr = equal_error_rate(gen, imp)
    assert 0.0 < eer < 0.5 and 0.2 < thr <= 0.8
    assert roc_auc(np.array([1.0, 0.9]), np.array([0.1])) == 1.0
    t = threshold_at_far(imp, 0.25)  # one of four impostors may pass: the 0.7 one, not the 0.2
    assert 0.2 < t <= 0.7 and np.mean(imp >= t) <= 0.25


def test_verification_on_separable_clusters():
    emb, labels = clustered()
    v = verification(emb, labels, n_pairs=500)
    assert v.auc > 0.99 and v.eer < 0.01 and v.accuracy > 0.99


def test_best_accuracy_threshold_by_hand():
    from simsearch.measures.metrics import best_accuracy_threshold

    genuine = np.array([0.9, 0.8, 0.4])
    impostor = np.array([0.5, 0.3, 0.2, 0.1])
    # accepting >= 0.8 gets 2 genuine + 4 impostors right (6 of 7); >= 0.4 gets 3 + 3 (6 of 7) too,
    # >= 0.5 gets 2 + 3: the first (highest) best threshold wins
    assert best_accuracy_threshold(genuine, impostor) == pytest.approx(0.8)
    assert best_accuracy_threshold(np.array([0.9]), np.array([0.1])) == pytest.approx(0.9)
