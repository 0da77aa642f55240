"""Metrics against hand-computed values and scikit-learn as a reference."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as sk
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, precision_score, recall_score, roc_auc_score

from mura_cli.metrics import (
    aggregate_by_study,
    binary_metrics,
    calibration_bin_ids,
    calibration_bins,
    classification_report,
    cohen_kappa,
    cohen_kappa_from_counts,
    confusion,
    count_metrics,
    expected_calibration_error,
    roc_auc,
    roc_curve,
    weighted_calibration_error,
    weighted_roc_auc,
)

NAMES = ["normal", "abnormal"]


def _sk_report(y, p):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sk.classification_report(y, p, labels=[0, 1], target_names=NAMES, output_dict=True, zero_division=0)


def _sk_kappa(y, p):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one label only: sklearn warns and returns NaN
        return cohen_kappa_score(y, p)


def _random(seed, n=300):
    """Labels, tied scores (two decimals) and predictions at 0.5."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1), 2)
    return y, s, (s >= 0.5).astype(int)


def _same_report(ours, theirs):
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        if isinstance(value, dict):
            assert set(ours[key]) == set(value)
            for k, v in value.items():
                assert ours[key][k] == pytest.approx(v, abs=1e-12, nan_ok=True), (key, k)
        else:
            assert ours[key] == pytest.approx(value, abs=1e-12, nan_ok=True), key


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


EDGE_CASES = {
    "one class, predictions mixed": ([1, 1, 1, 1], [1, 0, 1, 1]),
    "one class, predictions agree": ([1, 1, 1], [1, 1, 1]),
    "negatives only, predicted positive": ([0, 0, 0], [1, 1, 1]),
    "all predictions abnormal": ([0, 1, 0, 1, 1], [1, 1, 1, 1, 1]),
    "all predictions normal": ([0, 1, 0, 1, 1], [0, 0, 0, 0, 0]),
    "single row": ([1], [0]),
}


@pytest.mark.parametrize("seed", range(6))
def test_classification_report_matches_sklearn(seed):
    y, _, p = _random(seed)
    _same_report(classification_report(y, p), _sk_report(y, p))


@pytest.mark.parametrize("case", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_classification_report_edge_cases_match_sklearn(case):
    y, p = case
    _same_report(classification_report(y, p), _sk_report(y, p))


def test_classification_report_of_nothing_is_nan_not_an_exception():
    rep = classification_report([], [])
    assert rep["normal"] == {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0}
    assert math.isnan(rep["accuracy"]) and math.isnan(rep["macro avg"]["f1-score"])
    assert math.isnan(rep["weighted avg"]["precision"]) and rep["weighted avg"]["support"] == 0


@pytest.mark.parametrize("seed", range(6))
def test_count_metrics_match_sklearn(seed):
    y, _, p = _random(seed)
    tn, fp, fn, tp = confusion(y, p)
    assert [[tn, fp], [fn, tp]] == sk.confusion_matrix(y, p, labels=[0, 1]).tolist()
    m = count_metrics(tn, fp, fn, tp)
    prec, rec, f1, _ = sk.precision_recall_fscore_support(y, p, labels=[0, 1], zero_division=0)
    assert float(m["precision"]) == pytest.approx(prec[1]) and float(m["npv"]) == pytest.approx(prec[0])
    assert float(m["sensitivity"]) == pytest.approx(rec[1]) and float(m["specificity"]) == pytest.approx(rec[0])
    assert float(m["f1"]) == pytest.approx(f1[1]) and float(m["macro_f1"]) == pytest.approx(f1.mean())
    weighted = sk.precision_recall_fscore_support(y, p, labels=[0, 1], average="weighted", zero_division=0)
    for name, value in zip(("precision", "recall", "f1"), weighted[:3], strict=True):
        assert float(m[f"weighted_{name}"]) == pytest.approx(value)
    assert float(m["kappa"]) == pytest.approx(cohen_kappa_score(y, p), abs=1e-12)
    assert float(m["accuracy"]) == pytest.approx(accuracy_score(y, p))


def test_count_metrics_are_nan_on_zero_denominators_and_work_elementwise():
    m = count_metrics(np.array([0, 5]), np.array([0, 1]), np.array([1, 0]), np.array([3, 0]))  # two count sets
    assert m["kappa"].shape == (2,)
    assert math.isnan(m["specificity"][0]) and m["specificity"][1] == pytest.approx(5 / 6)
    assert math.isnan(m["sensitivity"][1]) and m["precision"][1] == 0.0  # no positives; one false positive
    assert m["macro_f1"][1] == pytest.approx((10 / 11 + 0.0) / 2)  # as sklearn's zero_division=0
    empty = count_metrics(0, 0, 0, 0)
    assert all(math.isnan(float(v)) for v in empty.values())


@pytest.mark.parametrize("case", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_kappa_from_counts_matches_sklearn_including_nan(case):
    y, p = case
    ours = float(cohen_kappa_from_counts(*confusion(y, p)))
    assert ours == pytest.approx(_sk_kappa(y, p), abs=1e-12, nan_ok=True)


def test_kappa_one_class_conventions():
    """sklearn 1.9 gives NaN when both raters use one class only; cohen_kappa keeps its historical 0."""
    assert math.isnan(_sk_kappa([1, 1, 1], [1, 1, 1]))
    assert math.isnan(float(cohen_kappa_from_counts(0, 0, 0, 3)))
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) == 0.0
    assert _sk_kappa([1, 1, 1], [0, 1, 1]) == 0.0 == float(cohen_kappa_from_counts(*confusion([1, 1, 1], [0, 1, 1])))
    assert math.isnan(cohen_kappa([], [])) and math.isnan(float(cohen_kappa_from_counts(0, 0, 0, 0)))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("drop", [False, True])
def test_roc_curve_matches_sklearn(seed, drop):
    y, s, _ = _random(seed)
    for ours, theirs in zip(
        roc_curve(y, s, drop_intermediate=drop), sk.roc_curve(y, s, drop_intermediate=drop), strict=True
    ):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_roc_curve_edge_cases():
    fpr, tpr, thr = roc_curve([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])  # all tied: one step
    assert fpr.tolist() == [0.0, 1.0] and tpr.tolist() == [0.0, 1.0] and thr.tolist() == [np.inf, 0.5]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = sk.roc_curve([1, 1, 1], [0.2, 0.9, 0.4], drop_intermediate=False)
    for ours, theirs in zip(roc_curve([1, 1, 1], [0.2, 0.9, 0.4]), expected, strict=True):
        np.testing.assert_allclose(ours, theirs)  # fpr NaN without negatives, as sklearn
    fpr, tpr, thr = roc_curve([], [])
    assert math.isnan(fpr[0]) and math.isnan(tpr[0]) and thr.tolist() == [np.inf]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_bins", [5, 10])
def test_calibration_bins_match_sklearn(seed, n_bins):
    y, s, _ = _random(seed)
    s = np.r_[s, 0.0, 0.1, 0.3, 0.7, 1.0]  # values on the bin edges
    y = np.r_[y, 0, 1, 0, 1, 1]
    mean_pred, frac_pos, counts = calibration_bins(y, s, n_bins)
    prob_true, prob_pred = calibration_curve(y, s, n_bins=n_bins)
    np.testing.assert_allclose(mean_pred, prob_pred, atol=1e-12)
    np.testing.assert_allclose(frac_pos, prob_true, atol=1e-12)
    assert counts.sum() == y.size
    assert calibration_bin_ids([0.0, 0.1, 0.1000001, 1.0], 10).tolist() == [0, 0, 1, 9]


def test_expected_calibration_error_by_hand():
    # bins (0.1, 0.2] holds 0.15, 0.15 (one positive) and (0.8, 0.9] holds 0.85 (positive)
    y, p = [0, 1, 1], [0.15, 0.15, 0.85]
    assert expected_calibration_error(y, p) == pytest.approx((2 * abs(0.5 - 0.15) + abs(1 - 0.85)) / 3)
    assert expected_calibration_error([1, 0], [1.0, 0.0]) == 0.0
    assert math.isnan(expected_calibration_error([], []))
    mean_pred, frac_pos, counts = calibration_bins([], [])
    assert mean_pred.size == frac_pos.size == counts.size == 0
    with pytest.raises(ValueError):
        calibration_bins([1], [1.5])


@pytest.mark.parametrize("seed", range(4))
def test_weighted_metrics_equal_plain_ones_on_repeated_rows(seed):
    y, s, _ = _random(seed, 120)
    rng = np.random.default_rng(seed + 10)
    w = rng.integers(0, 3, (5, y.size))  # five weightings, like bootstrap counts
    auc, ece = weighted_roc_auc(y, s, w), weighted_calibration_error(y, s, w)
    for k in range(5):
        idx = np.repeat(np.arange(y.size), w[k])
        assert auc[k] == pytest.approx(roc_auc(y[idx], s[idx]), abs=1e-12)
        assert auc[k] == pytest.approx(roc_auc_score(y[idx], s[idx]), abs=1e-12)
        assert ece[k] == pytest.approx(expected_calibration_error(y[idx], s[idx]), abs=1e-12)
    assert weighted_roc_auc(y, s, np.ones(y.size))[0] == pytest.approx(roc_auc(y, s), abs=1e-12)
    assert math.isnan(weighted_roc_auc([1, 1], [0.2, 0.3], [1, 1])[0])
    assert math.isnan(weighted_roc_auc([], [], np.ones((2, 0)))[1])
