"""Nested cross-validation: every choice made on data that the fold it is scored on never touched.

Out-of-fold predictions score each study with a model that never saw its patient, but the run's choices
(test-time flips, temperature, threshold, operating points) are made on those same predictions, so a figure
computed on them is the figure the choices were fitted to. Nested CV keeps an outer fold out of the choices
too. With K folds it needs, besides the K outer models (fold k held out), one *pair* model per two folds
``{j, k}`` (both held out, trained on the other K-2): for outer fold k the choices come from the pair models
``{j, k}``' predictions on fold j (j != k), an inner cross-validation of fold k's training patients in which
neither the models nor the choices saw fold k; they are then applied to outer model k's predictions on fold k.
K(K-1)/2 pair models: 10 for K = 5.

:func:`choose` makes the choices from prediction rows; :func:`apply_choices` applies them;
:func:`nested_estimate` pools the outer folds into one score table (under nested choices, or under
:func:`cross_fitted_choices`, or one set of choices for all folds: the optimistic out-of-fold figure).
The run ships the mean of its K outer models, which no fold can score honestly (all but one of them trained on
it); :func:`blind_ensemble` scores instead, on fold k, the mean of the K models that never saw fold k (outer
model k and the pair models ``{j, k}``): an ensemble of the same size, its members trained on less data, so if
anything a little below what the shipped one does.
Rows are the dicts of :func:`mura_cli.engine.training.folds.predict_rows` (``study``, ``label``, ``fold``,
``probability``, ``probability_tta``; ``part``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mura_cli.calibration import OPERATING_POINTS, apply_temperature, checked_temperature, threshold_at
from mura_cli.metrics import aggregate_by_study, kappa_threshold, roc_auc
from mura_cli.scoring import score_table


@dataclass(frozen=True)
class Choices:
    """What a run decides from prediction rows, in the order predict applies it.

    Attributes:
        tta: average the flipped view (it raised study AUROC).
        temperature: temperature of the image probabilities, fitted on study means (1.0 = none).
        threshold: the study threshold that maximises kappa (or the one given).
        operating_points: ``{"sens:0.9": threshold, "spec:0.9": threshold}`` on calibrated study probabilities.
        auroc: study AUROC ``{"plain", "tta"}`` of the rows the choices were made on.
    """

    tta: bool = False
    temperature: float = 1.0
    threshold: float = 0.5
    operating_points: Mapping[str, float] = field(default_factory=dict)
    auroc: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(self).items()}


def pair_members(k: int) -> list[tuple[int, int]]:
    """The pair models of a K-fold nested run: ``(j, k)`` with ``j < k``, both folds held out."""
    return [(j, i) for i in range(1, k + 1) for j in range(1, i)]


def choose(rows: Sequence[Mapping[str, Any]], *, threshold: float | None = None, calibrate: bool = True) -> Choices:
    """Flips if they raise study AUROC, then a temperature (log loss of the study means; 1.0 unless it pays on
    folds it was not fitted on: :func:`~mura_cli.calibration.checked_temperature`), then on the calibrated study
    probabilities the kappa threshold (unless ``threshold`` is given) and the :data:`OPERATING_POINTS`."""
    studies, labels = [r["study"] for r in rows], [r["label"] for r in rows]
    auroc = {
        name: roc_auc(*aggregate_by_study(studies, labels, [r[key] for r in rows])[1:])
        for name, key in (("plain", "probability"), ("tta", "probability_tta"))
    }
    tta = bool(auroc["tta"] > auroc["plain"])
    probs = np.array([r["probability_tta" if tta else "probability"] for r in rows])
    folds = [r.get("fold", 0) for r in rows]
    temperature = checked_temperature(labels, probs, studies, folds) if calibrate else 1.0
    _, s_lab, s_prob = aggregate_by_study(studies, labels, apply_temperature(probs, temperature))
    return Choices(
        tta=tta,
        temperature=round(temperature, 4),
        threshold=threshold if threshold is not None else kappa_threshold(s_lab, s_prob),
        operating_points={op: threshold_at(s_lab, s_prob, op) for op in OPERATING_POINTS},
        auroc=auroc,
    )


def apply_choices(rows: Sequence[Mapping[str, Any]], choices: Choices) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Study ``(ids, labels, calibrated probabilities)`` of ``rows`` under ``choices``."""
    probs = [r["probability_tta" if choices.tta else "probability"] for r in rows]
    cal = apply_temperature(probs, choices.temperature)
    return aggregate_by_study([r["study"] for r in rows], [r["label"] for r in rows], cal)


def inner_rows(pair_rows: Mapping[tuple[int, int], Sequence[Mapping[str, Any]]], k: int) -> list[dict[str, Any]]:
    """Outer fold k's inner out-of-fold rows: each pair model ``{j, k}``'s predictions on fold j."""
    out: list[dict[str, Any]] = []
    for (a, b), rows in sorted(pair_rows.items()):
        if k in (a, b):
            j = b if a == k else a
            out += [dict(r) for r in rows if r["fold"] == j]
    return out


def nested_choices(
    inner: Sequence[Mapping[str, Any]], folds: Sequence[int], *, threshold: float | None = None
) -> dict[int, Choices]:
    """Each outer fold's choices, made on its inner rows (:func:`inner_rows`) from a run's ``inner.csv`` rows (each
    with a ``model`` ``"j-k"``); folds without inner rows get none."""
    pairs: dict[tuple[int, int], list[Mapping[str, Any]]] = {}
    for r in inner:
        j, k = (int(x) for x in str(r["model"]).split("-"))
        pairs.setdefault((j, k), []).append(r)
    return {k: choose(rows, threshold=threshold) for k in folds if (rows := inner_rows(pairs, k))}


def blind_ensemble(outer: Sequence[Mapping[str, Any]], inner: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Outer rows with each image's probabilities averaged over every model that never saw its fold: outer model
    k (``outer``) and each pair model ``{j, k}`` on fold k (the ``inner`` rows with a ``model`` ``"j-k"``)."""
    views: dict[tuple[int, str], list[Mapping[str, Any]]] = {}
    for r in outer:
        views.setdefault((int(r["fold"]), str(r["path"])), []).append(r)
    for r in inner:
        key = (int(r["fold"]), str(r["path"]))
        if key in views and str(r["fold"]) in str(r["model"]).split("-"):
            views[key].append(r)
    return [
        {
            **rs[0],
            "probability": float(np.mean([v["probability"] for v in rs])),
            "probability_tta": float(np.mean([v["probability_tta"] for v in rs])),
            "members": len(rs),
        }
        for rs in views.values()
    ]


def cross_fitted_choices(rows: Sequence[Mapping[str, Any]], *, threshold: float | None = None) -> dict[int, Choices]:
    """Fold k's choices made on the other folds' out-of-fold rows: cheaper than nested (no pair models), but the
    models behind those rows trained on fold k's patients, so it is labelled cross-fitted, not nested."""
    folds = sorted({int(r["fold"]) for r in rows})
    return {k: choose([r for r in rows if int(r["fold"]) != k], threshold=threshold) for k in folds}


def nested_estimate(
    outer: Sequence[Mapping[str, Any]],
    choices: Mapping[int, Choices],
    *,
    scope: Mapping[int, str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Each outer fold's rows under its own choices, pooled: the score table at each fold's kappa threshold,
    sensitivity/specificity at each operating point, and calibration before and after the temperature.

    ``scope`` names each fold's group (``{5: "later", 1: "random", ...}``), scored apart and pooled as ``all``.
    """
    ids: list[str] = []
    lab, cal, raw, parts = [], [], [], []
    thr: dict[str, list[float]] = {"kappa": [], **{op: [] for op in OPERATING_POINTS}}
    for k in sorted(choices):
        rows = [r for r in outer if r["fold"] == k]
        if not rows:
            continue
        ch = choices[k]
        s_ids, s_lab, s_cal = apply_choices(rows, ch)
        _, _, s_raw = apply_choices(rows, Choices(tta=ch.tta))
        ids += s_ids
        lab.append(s_lab)
        cal.append(s_cal)
        raw.append(s_raw)
        parts += [(scope or {}).get(k, "folds")] * len(s_ids)
        thr["kappa"] += [ch.threshold] * len(s_ids)
        for op in OPERATING_POINTS:
            thr[op] += [ch.operating_points.get(op, np.nan)] * len(s_ids)
    y, p, p0 = np.concatenate(lab), np.concatenate(cal), np.concatenate(raw)
    table = score_table(y, p, ids, parts, np.array(thr["kappa"]), seed=seed)
    # an operating point that could not be chosen (one label only) labels nothing abnormal
    at = {
        op: score_table(y, p, ids, parts, np.nan_to_num(np.array(thr[op]), nan=1.0), seed=seed)
        for op in OPERATING_POINTS
    }
    uncal = score_table(y, p0, ids, parts, 0.5, seed=seed)
    return {
        "table": table,
        "operating_points": {
            op: {name: _pick(e, ("sensitivity", "specificity")) for name, e in t["parts"].items()}
            for op, t in at.items()
        },
        "ece_before": {name: e["metrics"]["ece"] for name, e in uncal["parts"].items()},
        "ece_after": {name: e["metrics"]["ece"] for name, e in table["parts"].items()},
        "choices": {str(k): c.to_dict() for k, c in sorted(choices.items())},
    }


def _pick(entry: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    return {n: entry["metrics"][n] for n in names}


__all__ = [
    "Choices",
    "apply_choices",
    "blind_ensemble",
    "choose",
    "cross_fitted_choices",
    "inner_rows",
    "nested_choices",
    "nested_estimate",
    "pair_members",
]
