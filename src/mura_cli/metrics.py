"""Classification metrics as pure NumPy functions: arrays in, numbers out, no I/O.

Scores are probabilities of the abnormal class; labels are 0/1. Study-level numbers come from
:func:`aggregate_by_study` (the MURA paper: study probability = mean of its images' probabilities).

Conventions on edge cases (checked against scikit-learn 1.9 in tests/test_metrics.py):

- Empty input never raises: ratios are NaN.
- :func:`count_metrics` and :func:`cohen_kappa_from_counts`: a ratio with a zero denominator is NaN
  (precision without predicted positives, sensitivity without positives, ...), except the class
  averages (``macro_f1``, ``weighted_*``), which follow :func:`classification_report`.
- :func:`classification_report` follows scikit-learn's ``zero_division=0``: an undefined per-class
  ratio is 0.0, and both classes are always reported (``labels=[0, 1]``).
- One kappa, :func:`cohen_kappa_from_counts` (scikit-learn's formula: NaN when both raters put everything in
  one class, as ``cohen_kappa_score``, with its warning). :func:`cohen_kappa` is that kappa of two label lists,
  with one named exception, :func:`kappa_or_zero`: perfect agreement on one class counts as 0.0, not NaN,
  because training selects checkpoints on it and must not see NaN.
- One safe division, :func:`safe_div`: NaN where the denominator is 0, without warnings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

# Inputs the metrics accept: plain sequences or 1-D numpy arrays (converted with np.asarray inside).
Labels = Sequence[int] | np.ndarray
Scores = Sequence[float] | np.ndarray


def confusion(y_true: Labels, y_pred: Labels) -> tuple[int, int, int, int]:
    """``(tn, fp, fn, tp)`` for binary labels."""
    t = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    return int((~t & ~p).sum()), int((~t & p).sum()), int((t & ~p).sum()), int((t & p).sum())


def cohen_kappa(y_true: Labels, y_pred: Labels) -> float:
    """Cohen's kappa between two binary raters (:func:`cohen_kappa_from_counts` of their confusion counts), with
    :func:`kappa_or_zero`'s exception: 0.0 where both use one and the same class only; NaN without rows."""
    return kappa_or_zero(*confusion(y_true, y_pred))


def kappa_or_zero(tn: float, fp: float, fn: float, tp: float) -> float:
    """:func:`cohen_kappa_from_counts`, but 0.0 instead of NaN for perfect agreement on one class (all ``tn`` or
    all ``tp``): what training selects checkpoints on (it must not see NaN). NaN without rows."""
    kappa = float(cohen_kappa_from_counts(tn, fp, fn, tp))
    one_class = fp == fn == 0 and (tn == 0 or tp == 0) and tn + tp > 0
    return 0.0 if one_class else kappa


def roc_auc(y_true: Labels, scores: Scores) -> float:
    """Area under the ROC curve (Mann-Whitney U with midranks for ties); NaN with only one class present."""
    t = np.asarray(y_true, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    midranks = ends - (counts - 1) / 2.0
    ranks = midranks[inverse]
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


@dataclass(frozen=True)
class BinaryMetrics:
    """Metrics of one set of predictions at one threshold."""

    n: int
    positives: int
    precision: float
    recall: float
    specificity: float
    f1: float
    accuracy: float
    kappa: float
    auroc: float
    threshold: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _ratio(a: float, b: float) -> float:
    return float(safe_div(a, b))


def binary_metrics(y_true: Labels, scores: Scores, threshold: float = 0.5) -> BinaryMetrics:
    """Precision, recall (sensitivity), specificity, F1, accuracy, Cohen's kappa and AUROC."""
    t = np.asarray(y_true, dtype=int)
    s = np.asarray(scores, dtype=np.float64)
    pred = (s >= threshold).astype(int)
    tn, fp, fn, tp = confusion(t, pred)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return BinaryMetrics(
        n=len(t),
        positives=int(t.sum()),
        precision=precision,
        recall=recall,
        specificity=_ratio(tn, tn + fp),
        f1=f1,
        accuracy=_ratio(tp + tn, len(t)),
        kappa=cohen_kappa(t, pred),
        auroc=roc_auc(t, s),
        threshold=threshold,
    )


def aggregate_by_study(
    studies: Sequence[str], labels: Labels, scores: Scores, how: str = "mean"
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Image predictions -> study predictions: ``(study ids, study labels, study scores)``.

    A study's label is the max of its images' labels (they agree in MURA); its score is the ``mean``
    (the MURA paper) or ``max`` of its images' scores. Studies keep the order of first appearance.
    """
    if how not in ("mean", "max"):
        raise ValueError(f"aggregate must be 'mean' or 'max', not {how!r}")
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(studies):
        groups.setdefault(s, []).append(i)
    lab = np.asarray(labels)
    sc = np.asarray(scores, dtype=np.float64)
    ids = list(groups)
    out_l = np.array([int(lab[groups[k]].max()) for k in ids], dtype=int)
    reduce = np.mean if how == "mean" else np.max
    out_s = np.array([float(reduce(sc[groups[k]])) for k in ids], dtype=np.float64)
    return ids, out_l, out_s


def finite_or_none(x: float) -> float | None:
    """``x`` for JSON output, ``None`` for NaN/inf."""
    return x if isinstance(x, int | float) and math.isfinite(x) else None


def format_metric(x: float) -> str:
    """A metric for tables: three decimals, ``n/a`` when undefined (NaN, inf or not a float)."""
    return f"{x:.3f}" if isinstance(x, float) and math.isfinite(x) else "n/a"


CLASS_NAMES = ("normal", "abnormal")


def safe_div(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """``num / den`` elementwise as float64, NaN where ``den == 0``, without warnings."""
    a, b = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    out = np.full(a.shape, np.nan)
    np.divide(a, b, out=out, where=b != 0)
    return out


def cohen_kappa_from_counts(
    tn: np.ndarray | float, fp: np.ndarray | float, fn: np.ndarray | float, tp: np.ndarray | float
) -> np.ndarray:
    """Cohen's kappa from confusion counts (weighted counts allowed), elementwise.

    Computed as scikit-learn does, ``1 - n (fp + fn) / E`` with ``E`` the disagreement expected by
    chance times ``n``, and NaN where ``E == 0`` (both raters use one and the same class only, or no rows).
    """
    tn, fp, fn, tp = (np.asarray(x, dtype=np.float64) for x in (tn, fp, fn, tp))
    n = tn + fp + fn + tp
    expected = (tn + fn) * (tp + fn) + (tp + fp) * (tn + fp)
    return 1.0 - safe_div(n * (fp + fn), expected)


def kappa_threshold(y_true: Labels, scores: Scores) -> float:
    """The threshold that maximises Cohen's kappa of ``scores >= threshold`` against ``y_true``.

    Candidates are midpoints between consecutive distinct scores (so the choice does not sit on one case);
    ties go to the candidate nearest 0.5. Returns 0.5 when there are not both labels.
    """
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(scores, dtype=np.float64)
    u = np.unique(s)
    if len(u) < 2 or len(np.unique(y)) < 2:
        return 0.5
    cands = (u[:-1] + u[1:]) / 2
    # positives at threshold c are the scores above it: counts by cumulative sums over the sorted unique scores
    pos_at = np.bincount(np.searchsorted(u, s), weights=y, minlength=len(u))
    all_at = np.bincount(np.searchsorted(u, s), minlength=len(u)).astype(np.float64)
    tp = np.cumsum(pos_at[::-1])[::-1][1:]
    pp = np.cumsum(all_at[::-1])[::-1][1:]
    fp = pp - tp
    fn = y.sum() - tp
    tn = len(y) - tp - fp - fn
    kappa = cohen_kappa_from_counts(tn, fp, fn, tp)
    best = np.flatnonzero(kappa >= np.nanmax(kappa) - 1e-12)
    return float(cands[best[np.argmin(np.abs(cands[best] - 0.5))]])


def count_metrics(
    tn: np.ndarray | float, fp: np.ndarray | float, fn: np.ndarray | float, tp: np.ndarray | float
) -> dict[str, np.ndarray]:
    """Threshold metrics from confusion counts, elementwise over arrays (one entry per resample, say).

    Counts may be weighted (a bootstrap resample counts a row as often as it was drawn). Keys:
    ``accuracy, sensitivity, specificity, precision, recall, npv, f1, kappa`` (NaN on a zero
    denominator) and the class averages ``macro_f1, weighted_precision, weighted_recall, weighted_f1``,
    which equal :func:`classification_report`'s "macro avg" and "weighted avg" (undefined per-class
    ratios count as 0, as scikit-learn's ``zero_division=0``) and are NaN only without rows.
    """
    tn, fp, fn, tp = (np.asarray(x, dtype=np.float64) for x in (tn, fp, fn, tp))
    n = tn + fp + fn + tp
    pos_support, neg_support = tp + fn, tn + fp
    per_class = {  # (normal, abnormal)
        "precision": (safe_div(tn, tn + fn), safe_div(tp, tp + fp)),
        "recall": (safe_div(tn, tn + fp), safe_div(tp, tp + fn)),
        "f1": (safe_div(2 * tn, 2 * tn + fn + fp), safe_div(2 * tp, 2 * tp + fp + fn)),
    }
    out = {
        "accuracy": safe_div(tp + tn, n),
        "sensitivity": per_class["recall"][1],
        "specificity": per_class["recall"][0],
        "precision": per_class["precision"][1],
        "recall": per_class["recall"][1],
        "npv": per_class["precision"][0],
        "f1": per_class["f1"][1],
        "kappa": cohen_kappa_from_counts(tn, fp, fn, tp),
    }
    rows = n > 0
    for name, (neg, pos) in per_class.items():
        neg0, pos0 = np.nan_to_num(neg, nan=0.0), np.nan_to_num(pos, nan=0.0)
        if name == "f1":
            out["macro_f1"] = np.where(rows, (neg0 + pos0) / 2.0, np.nan)
        out[f"weighted_{name}"] = safe_div(neg_support * neg0 + pos_support * pos0, n)
    return out


def classification_report(
    y_true: Labels, y_pred: Labels, target_names: tuple[str, str] = CLASS_NAMES
) -> dict[str, dict[str, float | int] | float]:
    """scikit-learn's ``classification_report(..., labels=[0, 1], output_dict=True, zero_division=0)``.

    Both classes are always reported, supports are ints, and empty input gives 0.0 per class (the
    ``zero_division`` value) with NaN accuracy and averages instead of scikit-learn's exception.

    Returns:
        ``{"normal": {"precision", "recall", "f1-score", "support"}, "abnormal": {...}, "accuracy": float,
        "macro avg": {...}, "weighted avg": {...}}`` (the class keys are ``target_names``).
    """
    tn, fp, fn, tp = confusion(y_true, y_pred)
    n = tn + fp + fn + tp
    m = count_metrics(tn, fp, fn, tp)
    f1_normal = safe_div(2 * tn, 2 * tn + fn + fp)
    per_class = {
        target_names[0]: (m["npv"], m["specificity"], f1_normal, tn + fp),
        target_names[1]: (m["precision"], m["recall"], m["f1"], tp + fn),
    }
    classes: dict[str, dict[str, float | int]] = {
        name: {
            "precision": float(np.nan_to_num(precision, nan=0.0)),
            "recall": float(np.nan_to_num(recall, nan=0.0)),
            "f1-score": float(np.nan_to_num(f1, nan=0.0)),
            "support": support,
        }
        for name, (precision, recall, f1, support) in per_class.items()
    }
    report: dict[str, dict[str, float | int] | float] = {**classes, "accuracy": float(m["accuracy"])}
    report["macro avg"] = {
        **{k: sum(classes[c][k] for c in target_names) / 2 if n else math.nan for k in ("precision", "recall")},
        "f1-score": float(m["macro_f1"]),
        "support": n,
    }
    report["weighted avg"] = {
        "precision": float(m["weighted_precision"]),
        "recall": float(m["weighted_recall"]),
        "f1-score": float(m["weighted_f1"]),
        "support": n,
    }
    return report


def roc_curve(
    y_true: Labels, scores: Scores, drop_intermediate: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` as scikit-learn's ``roc_curve``: one point per distinct score, descending.

    The first point is ``(0, 0)`` at threshold ``inf``; a point counts scores ``>= threshold`` as
    positive. ``fpr`` is NaN without negatives and ``tpr`` NaN without positives (scikit-learn warns);
    empty input gives ``([nan], [nan], [inf])``. ``drop_intermediate`` drops collinear points as
    scikit-learn does (its default is True, ours False).
    """
    t = np.asarray(y_true, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if t.size == 0:
        return np.array([np.nan]), np.array([np.nan]), np.array([np.inf])
    order = np.argsort(s, kind="mergesort")[::-1]
    s, t = s[order], t[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each run of equal scores
    tps = np.cumsum(t)[ends].astype(np.float64)
    fps = (ends + 1) - tps
    thresholds = s[ends]
    if drop_intermediate and tps.size > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        tps, fps, thresholds = tps[keep], fps[keep], thresholds[keep]
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    return safe_div(fps, fps[-1]), safe_div(tps, tps[-1]), np.r_[np.inf, thresholds]


def calibration_bin_ids(probs: Scores, n_bins: int = 10) -> np.ndarray:
    """The bin of each probability among ``n_bins`` uniform bins on [0, 1], as scikit-learn's
    ``calibration_curve`` assigns them: ``[0, 1/n]``, ``(1/n, 2/n]``, ..., ``((n-1)/n, 1]``.

    Raises:
        ValueError: a probability outside [0, 1].
    """
    p = np.asarray(probs, dtype=np.float64).ravel()
    if p.size and not (np.all(p >= 0.0) and np.all(p <= 1.0)):
        raise ValueError("probabilities must lie in [0, 1] (NaN included)")
    return np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], p)


def calibration_bins(y_true: Labels, probs: Scores, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reliability diagram data: ``(mean predicted probability, fraction of positives, count)`` per bin.

    Bins as :func:`calibration_bin_ids`; empty bins are dropped, so the first two arrays equal
    scikit-learn's ``calibration_curve(y_true, probs, n_bins=n_bins)`` swapped: ``(prob_pred, prob_true)``.
    """
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    ids = calibration_bin_ids(p, n_bins)
    counts = np.bincount(ids, minlength=n_bins)
    keep = counts > 0
    sums = np.bincount(ids, weights=p, minlength=n_bins)[keep]
    positives = np.bincount(ids, weights=t, minlength=n_bins)[keep]
    return sums / counts[keep], positives / counts[keep], counts[keep]


def expected_calibration_error(y_true: Labels, probs: Scores, n_bins: int = 10) -> float:
    """ECE: the count-weighted mean of ``|fraction of positives - mean probability|`` over the bins of
    :func:`calibration_bins`; NaN for empty input."""
    mean_pred, frac_pos, counts = calibration_bins(y_true, probs, n_bins)
    total = counts.sum()
    return float(np.sum(counts * np.abs(frac_pos - mean_pred)) / total) if total else float("nan")


def _weights_2d(weights: np.ndarray | Sequence[float], n_rows: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    w = w[None, :] if w.ndim == 1 else w
    if w.ndim != 2 or w.shape[1] != n_rows:
        raise ValueError(f"weights must be (rows,) or (sets, rows) with {n_rows} rows, not {np.shape(weights)}")
    return w


def weighted_roc_auc(y_true: Labels, scores: Scores, weights: np.ndarray | Sequence[float]) -> np.ndarray:
    """AUROC of weighted rows (Mann-Whitney U, ties count half), for many weightings at once.

    Args:
        y_true: 0/1 per row.
        scores: score per row.
        weights: ``(rows,)`` or ``(sets, rows)``, e.g. bootstrap counts; unit weights give :func:`roc_auc`.

    Returns:
        One AUROC per set of weights (shape ``(sets,)``); NaN where a class has no weight.
    """
    t = np.asarray(y_true, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    w = _weights_2d(weights, s.size)
    if s.size == 0:
        return np.full(w.shape[0], np.nan)
    order = np.argsort(s, kind="mergesort")
    starts = np.r_[0, np.flatnonzero(np.diff(s[order])) + 1]  # first row of each distinct score
    ws, ts = w.T[order], t[order][:, None]  # (rows, sets): row sums below run over contiguous memory
    neg = np.add.reduceat(np.where(ts, 0.0, ws), starts, axis=0)  # weight of negatives per distinct score
    pos = np.add.reduceat(np.where(ts, ws, 0.0), starts, axis=0)
    below = np.cumsum(neg, axis=0) - neg
    u = np.einsum("ks,ks->s", pos, below + 0.5 * neg)
    return safe_div(u, pos.sum(axis=0) * neg.sum(axis=0))


def weighted_calibration_error(
    y_true: Labels, probs: Scores, weights: np.ndarray | Sequence[float], n_bins: int = 10
) -> np.ndarray:
    """ECE of weighted rows, for many weightings at once; unit weights give :func:`expected_calibration_error`.

    Returns:
        One ECE per set of weights (shape ``(sets,)``); NaN where the weights sum to 0.
    """
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    w = _weights_2d(weights, p.size)
    gaps = np.zeros((p.size, n_bins))  # per bin: sum of (label - probability) of its rows
    gaps[np.arange(p.size), calibration_bin_ids(p, n_bins)] = t - p
    return safe_div(np.abs(w @ gaps).sum(axis=1), w.sum(axis=1))
