"""Operating points and probability calibration chosen out of fold, as pure NumPy.

A threshold that maximises kappa at one prevalence moves sensitivity when the prevalence changes; fixed
operating points do not: :func:`threshold_at` finds the threshold that keeps sensitivity (``sens:0.9``) or
specificity (``spec:0.9``) at a target on the data it is given (out-of-fold predictions, never the data it is
then scored on). :func:`fit_temperature` fits one temperature ``T`` so that ``sigmoid(logit(p) / T)`` has the
least log loss (temperature scaling, Guo et al. 2017), per image or, given study ids, on the study means that
``mura predict`` reports: it changes no ranking (AUROC), only calibration.

Example:
    >>> t = fit_temperature(labels, probs, groups=study_ids)
    >>> calibrated = apply_temperature(probs, t)
    >>> thr = threshold_at(labels, calibrated, "sens:0.9")
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mura_cli.metrics import Labels, Scores

OPERATING_POINTS = ("sens:0.9", "spec:0.9")
"""The fixed operating points every out-of-fold run stores beside its kappa threshold."""

_EPS = 1e-6


def parse_operating_point(spec: str) -> tuple[str, float]:
    """``"sens:0.9"`` -> ``("sens", 0.9)``; ``ValueError`` with what to type otherwise."""
    kind, _, value = spec.partition(":")
    try:
        target = float(value)
    except ValueError:
        target = float("nan")
    if kind not in ("sens", "spec") or not 0 < target < 1:
        raise ValueError(f"{spec!r}: expected sens:T or spec:T with T in (0, 1), e.g. sens:0.9")
    return kind, target


def threshold_at(y_true: Labels, scores: Scores, spec: str) -> float:
    """The highest threshold whose sensitivity is at least T (``sens:T``), or the lowest whose specificity is
    at least T (``spec:T``), for ``scores >= threshold``; midpoints between scores. NaN without both labels."""
    kind, target = parse_operating_point(spec)
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(scores, dtype=np.float64)
    pos, neg = np.sort(s[y == 1]), np.sort(s[y == 0])
    if not len(pos) or not len(neg):
        return float("nan")
    u = np.unique(s)
    cands = np.concatenate([[u[0] - _EPS], (u[:-1] + u[1:]) / 2, [u[-1] + _EPS]])
    if kind == "sens":
        sens = 1 - np.searchsorted(pos, cands, side="left") / len(pos)
        return float(cands[np.flatnonzero(sens >= target - 1e-12).max()])
    spec_ = np.searchsorted(neg, cands, side="left") / len(neg)
    return float(cands[np.flatnonzero(spec_ >= target - 1e-12).min()])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def apply_temperature(probs: Sequence[float] | np.ndarray, temperature: float) -> np.ndarray:
    """``sigmoid(logit(p) / temperature)``, element-wise."""
    z = _logit(np.asarray(probs, dtype=np.float64)) / temperature
    return 1 / (1 + np.exp(-z))


def fit_temperature(y_true: Labels, probs: Scores, groups: Sequence[str] | np.ndarray | None = None) -> float:
    """The temperature in [0.05, 20] with the least mean log loss of ``apply_temperature(probs, T)``.

    With ``groups`` (one study id per image), the loss is that of each study's mean calibrated probability
    against its label (the max of its images' labels), which is what ``mura predict`` reports: a study
    averages several images, which already softens it, so a temperature fitted on single images over-softens
    studies. A grid over log T, then a finer grid around the best point; 1.0 without both labels.
    """
    y = np.asarray(y_true, dtype=np.float64)
    z = _logit(np.asarray(probs, dtype=np.float64))
    inv, target = (np.arange(len(y)), y) if groups is None else _studies(y, np.asarray(groups))
    if len(np.unique(target)) < 2:
        return 1.0

    def loss(log_t: np.ndarray) -> np.ndarray:
        return _log_loss_of_means(1 / (1 + np.exp(-z[None, :] / np.exp(log_t)[:, None])), inv, target)

    grid = np.linspace(np.log(0.05), np.log(20), 121)
    best = grid[int(np.argmin(loss(grid)))]
    fine = np.linspace(best - 0.05, best + 0.05, 101)
    return float(np.exp(fine[int(np.argmin(loss(fine)))]))


def checked_temperature(y_true: Labels, probs: Scores, groups: Sequence[str], folds: Sequence[int]) -> float:
    """:func:`fit_temperature` on study means, kept only if it pays on folds it was not fitted on.

    Each fold is scored under the temperature fitted on the other folds; if the summed study log loss is not
    lower than with no temperature (1.0), the temperature is 1.0: a temperature fitted across a shift (one fold
    overconfident, the others not) would otherwise miscalibrate the folds it does not describe. With one fold
    there is nothing to check it on, and the fit is returned.
    """
    y, p, g, f = np.asarray(y_true), np.asarray(probs, dtype=np.float64), np.asarray(groups), np.asarray(folds)
    fitted = fit_temperature(y, p, groups=g)
    if len(np.unique(f)) < 2 or fitted == 1.0:
        return fitted
    held, plain = 0.0, 0.0
    for k in np.unique(f):
        out = f == k
        t = fit_temperature(y[~out], p[~out], groups=g[~out])
        inv, target = _studies(y[out], g[out])
        both = _log_loss_of_means(np.stack([apply_temperature(p[out], t), p[out]]), inv, target)
        held, plain = held + both[0], plain + both[1]
    return fitted if held < plain else 1.0


def _log_loss_of_means(probs: np.ndarray, inv: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Summed log loss of each study's mean probability against its label, for each row of ``probs``
    (candidates x images); ``inv`` is each image's study index."""
    mean = np.stack([np.bincount(inv, weights=row, minlength=len(target)) for row in probs]) / np.bincount(inv)
    mean = np.clip(mean, _EPS, 1 - _EPS)
    return -np.sum(target * np.log(mean) + (1 - target) * np.log1p(-mean), axis=1)


def _studies(y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's study index, and each study's label (the max of its images' labels)."""
    _, inv = np.unique(groups.astype(str), return_inverse=True)
    target = np.zeros(int(inv.max()) + 1 if len(inv) else 0)
    np.maximum.at(target, inv, np.asarray(y, dtype=np.float64))
    return inv, target


__all__ = [
    "OPERATING_POINTS",
    "apply_temperature",
    "checked_temperature",
    "fit_temperature",
    "parse_operating_point",
    "threshold_at",
]
