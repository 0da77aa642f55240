"""Metrics against hand-computed values and scikit-learn as a reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, precision_score, recall_score, roc_auc_score

from mura_cli.metrics import aggregate_by_study, binary_metrics, cohen_kappa, confusion, roc_auc


def test_hand_computed():
    y = [1, 1, 0, 0]
    p = [1, 0, 0, 0]
    assert confusion(y, p) == (2, 0, 1, 1)
    # p_o = 3/4, p_e = (1*2 + 3*2)/16 = 0.5 -> kappa 0.5
    assert cohen_kappa(y, p) == pytest.approx(0.5)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # ties count half
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))


@pytest.mark.parametrize("seed", range(5))
def test_against_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    s = np.round(np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1), 2)  # ties on purpose
    m = binary_metrics(y, s, 0.5)
    pred = (s >= 0.5).astype(int)
    assert m.auroc == pytest.approx(roc_auc_score(y, s))
    assert m.kappa == pytest.approx(cohen_kappa_score(y, pred))
    assert m.precision == pytest.approx(precision_score(y, pred))
    assert m.recall == pytest.approx(recall_score(y, pred))
    assert m.f1 == pytest.approx(f1_score(y, pred))
    assert m.accuracy == pytest.approx(accuracy_score(y, pred))


def test_aggregate_by_study_mean_and_max():
    ids, lab, sc = aggregate_by_study(["a", "b", "a"], [1, 0, 1], [0.2, 0.9, 0.6])
    assert ids == ["a", "b"] and lab.tolist() == [1, 0] and sc.tolist() == pytest.approx([0.4, 0.9])
    _, _, mx = aggregate_by_study(["a", "b", "a"], [1, 0, 1], [0.2, 0.9, 0.6], how="max")
    assert mx.tolist() == pytest.approx([0.6, 0.9])
    with pytest.raises(ValueError):
        aggregate_by_study(["a"], [1], [0.1], how="median")
