"""Benchmark scoring with confidence intervals, as pure NumPy: arrays in, JSON-ready dicts out.

Intervals are percentile bootstraps over groups (MURA studies): each resample draws as many groups as
there are, with replacement, and takes every row of each drawn group (a group drawn twice counts
twice). A resample is a vector of row weights, so most metrics of all resamples come from a few
matrix products (:func:`bootstrap_batched`); :func:`bootstrap` takes any plain metric instead.
Resamples where a metric is NaN (one class only, say) are left out of its interval.

Example:
    >>> table = score_table(labels, probs, study_ids, parts, threshold=0.5)
    >>> table["parts"]["elbow"]["metrics"]["kappa"]
    {'value': 0.71, 'low': 0.64, 'high': 0.77}
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from mura_cli.boxes import BoxLike, box_iou, corners, in_any
from mura_cli.metrics import (
    classification_report,
    confusion,
    count_metrics,
    finite_or_none,
    safe_div,
    weighted_calibration_error,
    weighted_roc_auc,
)

# fmt: off
METRIC_NAMES = ("kappa", "auroc", "accuracy", "sensitivity", "specificity", "precision", "recall", "f1",
                "macro_f1", "weighted_precision", "weighted_recall", "weighted_f1", "ece")
# fmt: on
ALL = "all"
_BOX_METRICS = ("mean_iou", "hit_rate", "pointing")
_CHUNK_CELLS = 2_000_000  # resamples x rows of weights held at once (16 MB of float64)

BatchedMetric = Callable[..., Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its confidence interval; NaN where undefined."""

    value: float
    low: float = math.nan
    high: float = math.nan

    def to_dict(self) -> dict[str, float | None]:
        """``{"value", "low", "high"}`` with NaN and inf as ``None`` (JSON has no NaN)."""
        return {k: finite_or_none(float(v)) for k, v in (("value", self.value), ("low", self.low), ("high", self.high))}


def _group_ids(groups: Sequence[Any] | np.ndarray, n_rows: int) -> tuple[np.ndarray, int]:
    """``(group index of each row, number of groups)``."""
    g = np.asarray(groups)
    if g.shape != (n_rows,):
        raise ValueError(f"groups must have one entry per row ({n_rows}), not shape {g.shape}")
    if n_rows == 0:
        return np.zeros(0, dtype=np.int64), 0
    _, inverse = np.unique(g, return_inverse=True)
    return inverse.ravel(), int(inverse.max()) + 1


def _weight_chunks(inverse: np.ndarray, n_groups: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples as row weights, ``(resamples, rows)`` float64 blocks: how often each row's
    group was drawn. Deterministic for a seed and the same groups."""
    if n_groups == 0:
        return
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // max(inverse.size, n_groups))
    done = 0
    while done < n_resamples:
        r = min(chunk, n_resamples - done)
        draws = rng.integers(0, n_groups, size=(r, n_groups)) + np.arange(r)[:, None] * n_groups
        counts = np.bincount(draws.ravel(), minlength=r * n_groups).reshape(r, n_groups).astype(np.float64)
        yield counts.T[inverse].T  # gathered along contiguous rows; (resamples, rows), Fortran order
        done += r


def _interval(values: np.ndarray, alpha: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(finite, [50.0 * alpha, 100.0 - 50.0 * alpha])
    return float(low), float(high)


def bootstrap(
    metric: Callable[..., float],
    groups: Sequence[Any] | np.ndarray,
    *arrays: Sequence[Any] | np.ndarray,
    n_resamples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile confidence interval of ``metric(*arrays)``, resampling groups with replacement.

    ``metric`` is called once per resample on the rows drawn (a plain loop: fine for a few thousand
    resamples of a cheap metric; :func:`bootstrap_batched` vectorises). The resamples are the same as
    :func:`bootstrap_batched` draws for the same groups and seed.

    Args:
        metric: a function of the row-aligned ``arrays`` returning a float (NaN when undefined).
        groups: the group (study id) of each row.
        *arrays: row-aligned arrays passed to ``metric``.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling.
        alpha: 1 - coverage of the interval.

    Returns:
        ``(low, high)``; NaN when no resample gives a finite value (or there are no rows).
    """
    columns = [np.asarray(a) for a in arrays]
    inverse, n_groups = _group_ids(groups, len(columns[0]) if columns else len(groups))
    rows = np.arange(inverse.size)
    values = [
        metric(*(c[idx] for c in columns))
        for weights in _weight_chunks(inverse, n_groups, n_resamples, seed)
        for idx in (np.repeat(rows, w) for w in weights.astype(np.int64))
    ]
    return _interval(np.asarray(values, dtype=np.float64), alpha)


def bootstrap_batched(
    metric: BatchedMetric,
    groups: Sequence[Any] | np.ndarray,
    *arrays: np.ndarray,
    n_resamples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of several metrics at once, on shared resamples given as row weights.

    Args:
        metric: ``metric(weights, *arrays) -> {name: values}``; ``weights`` is ``(resamples, rows)`` and
            each ``values`` has one entry per resample (see :func:`classification_batch`).
        groups: the group (study id) of each row.
        *arrays: row-aligned arrays passed to ``metric``.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling.
        alpha: 1 - coverage of the interval.

    Returns:
        ``{name: (low, high)}``; empty without rows.
    """
    inverse, n_groups = _group_ids(groups, len(arrays[0]) if arrays else len(groups))
    collected: dict[str, list[np.ndarray]] = {}
    for weights in _weight_chunks(inverse, n_groups, n_resamples, seed):
        for name, values in metric(weights, *arrays).items():
            collected.setdefault(name, []).append(np.asarray(values, dtype=np.float64))
    return {name: _interval(np.concatenate(parts), alpha) for name, parts in collected.items()}


def classification_batch(
    weights: np.ndarray, labels: np.ndarray, probs: np.ndarray, preds: np.ndarray, n_bins: int = 10
) -> dict[str, np.ndarray]:
    """The :data:`METRIC_NAMES` metrics of weighted rows, one value per row of ``weights``.

    Args:
        weights: ``(resamples, rows)`` row weights (ones for the point estimate).
        labels: bool, the true class of each row (True = abnormal).
        probs: float64 probabilities of abnormal in [0, 1].
        preds: bool, the thresholded prediction of each row.
        n_bins: calibration bins of the ECE.
    """
    t, p = labels.astype(np.float64), preds.astype(np.float64)
    total, positives = weights.sum(axis=1), weights @ t
    tp, predicted = weights @ (t * p), weights @ p
    fn, fp = positives - tp, predicted - tp
    out = count_metrics(total - positives - fp, fp, fn, tp)
    out["auroc"] = weighted_roc_auc(labels, probs, weights)
    out["ece"] = weighted_calibration_error(labels, probs, weights, n_bins)
    return {name: out[name] for name in METRIC_NAMES}


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    return finite_or_none(value) if isinstance(value, float) else value


def _score_part(
    labels: np.ndarray, probs: np.ndarray, preds: np.ndarray, groups: np.ndarray, *, n_bins: int, **boot: Any
) -> dict[str, Any]:
    metric = partial(classification_batch, n_bins=n_bins)
    point = metric(np.ones((1, labels.size)), labels, probs, preds)
    ci = bootstrap_batched(metric, groups, labels, probs, preds, **boot)
    tn, fp, fn, tp = confusion(labels, preds)
    return {
        "n": int(labels.size),
        "studies": _group_ids(groups, labels.size)[1],
        "positives": int(labels.sum()),
        "metrics": {k: Estimate(float(point[k][0]), *ci.get(k, (math.nan, math.nan))).to_dict() for k in METRIC_NAMES},
        "report": _json_ready(classification_report(labels, preds)),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def _part_masks(parts: Sequence[str] | np.ndarray, n_rows: int) -> Iterator[tuple[str, np.ndarray]]:
    """``(part, row mask)`` for each part, sorted, then ``"all"``; parts without rows are left out."""
    names = np.asarray(parts).astype(str)
    if names.shape != (n_rows,):
        raise ValueError(f"parts must have one entry per row ({n_rows}), not shape {names.shape}")
    if ALL in names:
        raise ValueError(f"{ALL!r} is reserved for the whole set; it cannot be a part name")
    for name in sorted(set(names.tolist())):
        yield name, names == name
    if n_rows:
        yield ALL, np.ones(n_rows, dtype=bool)


def score_table(
    labels: Sequence[int] | np.ndarray,
    probs: Sequence[float] | np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    parts: Sequence[str] | np.ndarray,
    threshold: float | Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    n_bins: int = 10,
) -> dict[str, Any]:
    """Every :data:`METRIC_NAMES` metric with a group-bootstrap interval, per part and over all rows.

    Rows are images (groups = their study ids) or studies (probabilities already aggregated, one row
    per group). A prediction is abnormal when ``prob >= threshold``. Per-class ratios are NaN (None)
    where undefined, e.g. AUROC and specificity of a part with positives only; the kappa follows
    scikit-learn (NaN when labels and predictions are all one and the same class).

    Args:
        labels: 0/1 per row (1 = abnormal).
        probs: probability of abnormal per row, in [0, 1].
        groups: study id per row: the unit of resampling.
        parts: body part per row (any names but ``"all"``).
        threshold: one threshold, or one per row (say, per model).
        n_resamples: bootstrap resamples.
        seed: seed of the resampling (the same for every part).
        alpha: 1 - coverage of the intervals.
        n_bins: calibration bins of the ECE.

    Returns:
        ``{"parts": {part: entry, ..., "all": entry}}``, parts sorted by name, with ``entry = {"n",
        "studies", "positives", "metrics": {name: {"value", "low", "high"}}, "report":
        classification_report (point values), "confusion": {"tn", "fp", "fn", "tp"}}``. JSON-ready.

    Raises:
        ValueError: misaligned inputs, a part named ``"all"``, or a probability outside [0, 1] (NaN included).
    """
    y = np.asarray(labels).astype(bool)
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"labels and probs must be 1-D of one length, not {y.shape} and {p.shape}")
    preds = p >= np.broadcast_to(np.asarray(threshold, dtype=np.float64), p.shape)
    g = np.asarray(groups)
    out = {}
    for name, mask in _part_masks(parts, y.size):
        boot = {"n_resamples": n_resamples, "seed": seed, "alpha": alpha}
        out[name] = _score_part(y[mask], p[mask], preds[mask], g[mask], n_bins=n_bins, **boot)
    return {"parts": out}


def _best_iou(pred: BoxLike | None, truths: Sequence[BoxLike]) -> float:
    """The best IoU of ``pred`` with any of ``truths``; 0 without a prediction."""
    return max(box_iou(pred, t) for t in truths) if pred is not None else 0.0


def covered_fraction(boxes: Sequence[BoxLike], width: float, height: float) -> float:
    """The fraction of a ``width x height`` image inside the union of ``boxes`` (clipped to the image):
    the chance that a uniformly random point lands in a box. NaN for an empty image."""
    if width <= 0 or height <= 0:
        return math.nan
    b = np.array([corners(x) for x in boxes], dtype=np.float64).reshape(-1, 4)
    b[:, [0, 2]] = b[:, [0, 2]].clip(0.0, width)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0.0, height)
    xs, ys = np.unique(b[:, [0, 2]]), np.unique(b[:, [1, 3]])
    if xs.size < 2 or ys.size < 2:
        return 0.0
    # elementary cells of the box edges' grid: covered when some box holds the whole cell
    inside_x = (b[:, 0, None] <= xs[None, :-1]) & (xs[None, 1:] <= b[:, 2, None])  # (boxes, x cells)
    inside_y = (b[:, 1, None] <= ys[None, :-1]) & (ys[None, 1:] <= b[:, 3, None])
    covered = (inside_x[:, None, :] & inside_y[:, :, None]).any(axis=0)  # (y cells, x cells)
    area = np.outer(np.diff(ys), np.diff(xs))
    return float(area[covered].sum() / (width * height))


def peak_in_boxes(peak: Sequence[float] | None, boxes: Sequence[BoxLike]) -> bool:
    """Whether the map's peak ``(x, y)`` lies inside any of ``boxes`` (the pointing test)."""
    if peak is None:
        return False
    return in_any(boxes, float(peak[0]), float(peak[1]))


def _box_batch(weights: np.ndarray, iou: np.ndarray, hit: np.ndarray, inside: np.ndarray) -> dict[str, np.ndarray]:
    total = weights.sum(axis=1)
    return {
        "mean_iou": safe_div(weights @ iou, total),
        "hit_rate": safe_div(weights @ hit, total),
        "pointing": safe_div(weights @ inside, total),
    }


def score_boxes(
    pred_boxes: Sequence[BoxLike | None],
    peaks: Sequence[Sequence[float] | None],
    gt_boxes: Sequence[Sequence[BoxLike]],
    sizes: Sequence[tuple[float, float]],
    parts: Sequence[str] | np.ndarray,
    groups: Sequence[Any] | np.ndarray,
    *,
    iou_hit: float = 0.3,
    n_resamples: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Localisation scores per part and over all images, with group-bootstrap intervals.

    Per image: the best IoU of the predicted box with any ground-truth box (0 without a predicted box),
    a hit when that IoU is at least ``iou_hit``, pointing when the peak lies in some ground-truth box,
    and the pointing chance: the fraction of the image covered by its ground-truth boxes. Images
    without ground-truth boxes are not scored (counted in ``"no_ground_truth"``).

    Args:
        pred_boxes: ``(x0, y0, x1, y1)`` per image in original pixels (``x1, y1`` exclusive), or None.
        peaks: the ``(x, y)`` of the map's maximum per image, or None.
        gt_boxes: the ground-truth boxes of each image.
        sizes: ``(width, height)`` of each image.
        parts: body part per image.
        groups: study id per image: the unit of resampling.
        iou_hit: the IoU that counts as a hit.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling.
        alpha: 1 - coverage of the intervals.

    Returns:
        ``{"iou_hit", "no_ground_truth", "parts": {part: entry, ..., "all": entry}}`` with ``entry = {"images",
        "studies", "with_box", "mean_iou", "hit_rate", "pointing": {"value", "low", "high"}, "pointing_chance":
        float or None}`` (the chance has no interval). Parts sorted by name; JSON-ready.
    """
    n = len(gt_boxes)
    if not len(pred_boxes) == len(peaks) == len(sizes) == len(parts) == len(groups) == n:
        raise ValueError("pred_boxes, peaks, gt_boxes, sizes, parts and groups must have one entry per image")
    keep = np.array([len(b) > 0 for b in gt_boxes], dtype=bool)
    rows = np.flatnonzero(keep).tolist()  # Python ints: they index the caller's sequences
    best = [_best_iou(pred_boxes[i], gt_boxes[i]) for i in rows]
    iou = np.array(best, dtype=np.float64)
    inside = np.array([peak_in_boxes(peaks[i], gt_boxes[i]) for i in rows], dtype=np.float64)
    chance = np.array([covered_fraction(gt_boxes[i], *sizes[i]) for i in rows], dtype=np.float64)
    has_box = np.array([pred_boxes[i] is not None for i in rows], dtype=np.bool_)
    hit = (iou >= iou_hit).astype(np.float64)
    g = np.asarray(groups)[keep]
    out = {}
    for name, mask in _part_masks(np.asarray(parts)[keep], len(rows)):
        cols = (iou[mask], hit[mask], inside[mask])
        point = _box_batch(np.ones((1, int(mask.sum()))), *cols)
        ci = bootstrap_batched(_box_batch, g[mask], *cols, n_resamples=n_resamples, seed=seed, alpha=alpha)
        finite = chance[mask][np.isfinite(chance[mask])]
        out[name] = {
            "images": int(mask.sum()),
            "studies": _group_ids(g[mask], int(mask.sum()))[1],
            "with_box": int(has_box[mask].sum()),
            **{k: Estimate(point[k][0], *ci.get(k, (math.nan, math.nan))).to_dict() for k in _BOX_METRICS},
            "pointing_chance": float(finite.mean()) if finite.size else None,
        }
    return {"iou_hit": iou_hit, "no_ground_truth": int(n - len(rows)), "parts": out}
