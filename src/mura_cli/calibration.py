"""Operating points and probability calibration chosen out of fold, as pure NumPy.

A threshold that maximises kappa at one prevalence moves sensitivity when the prevalence changes; fixed
operating points do not: :func:`threshold_at` finds the threshold that keeps sensitivity (``sens:0.9``) or
specificity (``spec:0.9``) at a target on the data it is given (out-of-fold predictions, never the data it is
then scored on). :func:`fit_temperature` fits one temperature ``T`` so that ``sigmoid(logit(p) / T)`` has the
least log loss (temperature scaling, Guo et al. 2017): it changes no ranking (AUROC), only calibration.

Example:
    >>> t = fit_temperature(labels, probs)
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


def fit_temperature(y_true: Labels, probs: Scores) -> float:
    """The temperature in [0.05, 20] with the least mean log loss of ``apply_temperature(probs, T)``.

    A grid over log T, then a finer grid around the best point; 1.0 without both labels.
    """
    y = np.asarray(y_true, dtype=np.float64)
    z = _logit(np.asarray(probs, dtype=np.float64))
    if len(np.unique(y)) < 2:
        return 1.0

    def loss(log_t: np.ndarray) -> np.ndarray:
        zz = z[None, :] / np.exp(log_t)[:, None]
        return np.mean(np.logaddexp(0, zz) - y[None, :] * zz, axis=1)

    grid = np.linspace(np.log(0.05), np.log(20), 121)
    best = grid[int(np.argmin(loss(grid)))]
    fine = np.linspace(best - 0.05, best + 0.05, 101)
    return float(np.exp(fine[int(np.argmin(loss(fine)))]))


__all__ = ["OPERATING_POINTS", "apply_temperature", "fit_temperature", "parse_operating_point", "threshold_at"]
