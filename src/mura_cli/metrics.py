"""Classification metrics as pure NumPy functions: arrays in, numbers out, no I/O.

Scores are probabilities of the abnormal class; labels are 0/1. Study-level numbers come from
:func:`aggregate_by_study` (the MURA paper: study probability = mean of its images' probabilities).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


def confusion(y_true: Sequence[int], y_pred: Sequence[int]) -> tuple[int, int, int, int]:
    """``(tn, fp, fn, tp)`` for binary labels."""
    t = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    return int((~t & ~p).sum()), int((~t & p).sum()), int((t & ~p).sum()), int((t & p).sum())


def cohen_kappa(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Cohen's kappa between two binary raters: (p_o - p_e) / (1 - p_e); 0 when p_e == 1 and p_o == 1."""
    tn, fp, fn, tp = confusion(y_true, y_pred)
    n = tn + fp + fn + tp
    if n == 0:
        return float("nan")
    po = (tp + tn) / n
    pe = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / (n * n)
    if pe == 1.0:
        return 0.0 if po == 1.0 else float("nan")
    return (po - pe) / (1.0 - pe)


def roc_auc(y_true: Sequence[int], scores: Sequence[float]) -> float:
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
    return a / b if b else float("nan")


def binary_metrics(y_true: Sequence[int], scores: Sequence[float], threshold: float = 0.5) -> BinaryMetrics:
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
    studies: Sequence[str], labels: Sequence[int], scores: Sequence[float], how: str = "mean"
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
