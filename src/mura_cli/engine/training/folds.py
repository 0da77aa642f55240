"""``mura train --folds K``: patient-level K-fold cross-validation, out-of-fold predictions, one ensemble.

:func:`fit_folds` trains fold k on the other folds' patients (a full run folder, ``RUN/fold-k``), then scores
its held-out patients with the model it kept: every training study gets a prediction from a model that never
saw it. On those out-of-fold predictions it makes the choices a single tune split would otherwise make
(:func:`mura_cli.engine.training.nested.choose`): whether test-time flips pay (AUROC), a temperature, the threshold
(maximum kappa) and fixed operating points (sensitivity 0.9, specificity 0.9). They are written into every
fold's ``config.json``, so predict, localize and benchmark use ``RUN`` as one model: the mean of the K
probabilities, as the MURA paper's ensemble of 5. ``RUN`` also holds ``oof.csv`` (one row per image),
``ensemble.json``, ``summary.json`` and ``README.md``. The out-of-fold scores there are the ones the choices
were fitted to, and are labelled so: not a generalization estimate. With ``cfg.nested`` the run also trains
the pair models of :mod:`mura_cli.engine.training.nested` (``nested/inner-j-k``, not ensemble members), predicts
``inner.csv`` and stores the nested estimate, whose folds no choice saw.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mura_cli.config import TrainConfig, from_dict
from mura_cli.engine.backends import TorchBackend
from mura_cli.engine.evaluation.evaluate import infer, rows_loader
from mura_cli.engine.results import EpochResult, TrainResult
from mura_cli.engine.training.distributed import world_size
from mura_cli.engine.training.nested import (
    Choices,
    apply_choices,
    blind_ensemble,
    choose,
    nested_choices,
    nested_estimate,
    pair_members,
)
from mura_cli.engine.training.run import new_run_dir, save_train_config
from mura_cli.engine.training.train_data import find_cache, fold_rows, resolve_index, select_part
from mura_cli.errors import UsageError
from mura_cli.models.checkpoint import ModelConfig, load_run_model
from mura_cli.models.run_folder import (
    CONFIG_NAME,
    ENSEMBLE_NAME,
    INNER,
    OOF,
    SUMMARY,
    TRAIN_CONFIG,
    RunFolder,
    fold_name,
    inner_name,
)
from mura_cli.report.card import write_ensemble_card
from mura_cli.scoring import score_table
from mura_cli.utils import read_json, resolve_device, write_csv, write_json


@dataclass(frozen=True)
class FoldsResult:
    """What :func:`fit_folds` produced: the fold runs, the out-of-fold scores and the decisions made on them.

    Attributes:
        run_dir: the ensemble folder.
        folds: each fold's training (``None`` for folds finished before a resume).
        oof: :func:`~mura_cli.scoring.score_table` of the out-of-fold study predictions.
        threshold: the kappa-maximising threshold (or the one given).
        tta: whether flipped views are averaged (they raised out-of-fold AUROC).
        auroc: out-of-fold study AUROC ``{"plain": ..., "tta": ...}``.
        seconds: wall time of the whole job.
        choices: everything chosen on the out-of-fold predictions (temperature, operating points too).
        nested: the nested estimate (:func:`~mura_cli.engine.training.nested.nested_estimate`) when ``cfg.nested``.
    """

    run_dir: Path
    folds: tuple[TrainResult | None, ...]
    oof: dict[str, Any]
    threshold: float
    tta: bool
    auroc: dict[str, float]
    seconds: float
    choices: Choices = field(default_factory=Choices)
    nested: dict[str, Any] | None = None


def fit_folds(
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    on_fold: Callable[[str, int, int, str], None] | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
    on_batch: Callable[[str, int, int], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> FoldsResult:
    """Train ``cfg.folds`` models by patient-level cross-validation; see the module docstring.

    ``resume`` continues an ensemble folder: finished folds are kept, an interrupted one resumes, the rest
    train. ``on_fold(name, i, n, state)`` is called before each of the ``n`` models (``fold-k``, and with
    ``cfg.nested`` the pair models ``inner-j-k``; state ``train``, ``resume`` or ``done``).
    """
    from mura_cli.engine.training.train import fit

    t0 = time.perf_counter()
    if world_size() > 1:
        raise UsageError("--folds runs on one process; start it without torchrun")
    if resume is not None:
        run = Path(resume)
        if not (run / TRAIN_CONFIG).is_file():
            raise UsageError(f"{run}: not an ensemble run (no {TRAIN_CONFIG}); pass the folder --folds made")
        cfg = from_dict(TrainConfig, read_json(run / TRAIN_CONFIG, "train config"))
    else:
        index, _ = resolve_index(cfg.data)
        run = new_run_dir(cfg, select_part(index, cfg.part))
        save_train_config(run, cfg)
    results: list[TrainResult | None] = []
    members = [(fold_name(k), k, 0) for k in range(1, cfg.folds + 1)]
    members += [(inner_name(j, k), k, j) for j, k in pair_members(cfg.folds)] if cfg.nested else []
    for i, (name, k, j) in enumerate(members, 1):
        folder = RunFolder(run).inner(j, k) if j else RunFolder(run).fold(k)  # pair models are not members
        fold_cfg = replace(cfg, fold=k, inner=j, out=str(folder.path.parent), name=name, exist_ok=True)
        state = "done" if folder.finished else "resume" if folder.resumable else "train"
        if on_fold:
            on_fold(name, i, len(members), state)
        if state == "done":
            results.append(None)
            continue
        kw: dict[str, Any] = {"on_epoch": on_epoch, "on_batch": on_batch, "on_start": on_start}
        results.append(fit(fold_cfg, resume=folder.path, **kw) if state == "resume" else fit(fold_cfg, **kw))
    oof_rows = out_of_fold(run, cfg)
    decided = decide(oof_rows, cfg)
    nested = nested_from_run(run, cfg, oof_rows) if cfg.nested else None
    _finish(run, cfg, oof_rows, decided, nested, time.perf_counter() - t0)
    return FoldsResult(run, tuple(results), seconds=time.perf_counter() - t0, nested=nested, **decided)


def out_of_fold(run: Path, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Each fold's kept model on its held-out patients, plain and flipped: one row per image."""
    index, index_dir = resolve_index(cfg.data)
    part = select_part(index, cfg.part)
    cache = find_cache(index_dir, cfg)
    rows: list[dict[str, Any]] = []
    for k in range(1, cfg.folds + 1):
        held = fold_rows(index, part, replace(cfg, fold=k, inner=0))[2]
        rows += predict_rows(RunFolder(run).fold(k).path, held, index.root, cache, cfg, fold=k)
    return rows


def predict_rows(
    folder: Path, rows: list[Any], root: Any, cache: Path | None, cfg: TrainConfig, fold: int
) -> list[dict[str, Any]]:
    """The model in ``folder`` on index ``rows``, plain and with the flipped view averaged: one dict per image."""
    device = resolve_device(cfg.device)
    model, mcfg = load_run_model(folder, device)
    backend = TorchBackend(model, device, channels_last=False)
    out: list[dict[str, Any]] = []
    for batch in rows_loader(rows, root, mcfg.transform, cache, 2 * cfg.batch_size):
        x = batch["image"]
        plain = infer(backend, x).probabilities  # one decode, both views: the flip averages with it
        both = (plain + infer(backend, torch.flip(x, dims=(-1,))).probabilities) / 2
        for j, i in enumerate(batch["index"].tolist()):
            if not bool(batch["valid"][j]):
                continue
            r = rows[i]
            out.append(
                {
                    "path": r.path,
                    "part": r.part,
                    "patient": r.patient,
                    "study": r.study,
                    "label": r.label,
                    "fold": fold,
                    "probability": round(float(plain[j]), 6),
                    "probability_tta": round(float(both[j]), 6),
                }
            )
    return out


def inner_predictions(run: Path, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Each pair model ``inner-j-k`` on folds j and k (both held out from it), with a ``model`` column."""
    index, index_dir = resolve_index(cfg.data)
    part = select_part(index, cfg.part)
    cache = find_cache(index_dir, cfg)
    rows: list[dict[str, Any]] = []
    for j, k in pair_members(cfg.folds):
        for f in (j, k):
            held = fold_rows(index, part, replace(cfg, fold=f, inner=0))[2]
            pred = predict_rows(RunFolder(run).inner(j, k).path, held, index.root, cache, cfg, f)
            rows += [{**r, "model": f"{j}-{k}"} for r in pred]
    return rows


def nested_from_run(run: Path, cfg: TrainConfig, oof_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The nested estimate of a ``--nested`` run: each outer fold under choices made on its inner folds, scored
    for the single outer model and (``ensemble``) for the mean of the models that never saw the fold."""
    inner = inner_predictions(run, cfg)
    write_csv(run / INNER, inner)
    choices = nested_choices(inner, range(1, cfg.folds + 1), threshold=cfg.threshold)
    scope = fold_scope(cfg, oof_rows)
    ensemble = nested_estimate(blind_ensemble(oof_rows, inner), choices, scope=scope, seed=cfg.seed)
    ensemble = {"label": ENSEMBLE_LABEL, **{k: v for k, v in ensemble.items() if k != "choices"}}
    return {**nested_estimate(oof_rows, choices, scope=scope, seed=cfg.seed), "ensemble": ensemble}


def fold_scope(cfg: TrainConfig, rows: list[dict[str, Any]]) -> dict[int, str]:
    """What each fold stands for in a nested table: ``random`` / ``later`` (``--folds-by later``), the region
    (``--folds-by region``), or ``folds``."""
    if cfg.folds_by == "later":
        return {k: "later" if k == cfg.folds else "random" for k in range(1, cfg.folds + 1)}
    if cfg.folds_by == "region":
        return {int(r["fold"]): str(r["part"]) for r in rows}
    return dict.fromkeys(range(1, cfg.folds + 1), "folds")


def decide(rows: list[dict[str, Any]], cfg: TrainConfig) -> dict[str, Any]:
    """Out-of-fold choices (:func:`~mura_cli.engine.training.nested.choose`) and the scores on those same
    predictions."""
    choices = choose(rows, threshold=cfg.threshold)
    ids, s_lab, s_prob = apply_choices(rows, choices)
    part_of = {r["study"]: r["part"] for r in rows}
    table = score_table(s_lab, s_prob, ids, [part_of[s] for s in ids], choices.threshold, seed=cfg.seed)
    chosen = {"threshold": choices.threshold, "tta": choices.tta, "auroc": dict(choices.auroc)}
    return {"oof": table, **chosen, "choices": choices}


OOF_LABEL = (
    "out-of-fold: every study scored by a model that never saw its patient, but flips, temperature and threshold "
    "were chosen on these same predictions; not a generalization estimate"
)
NESTED_LABEL = (
    "nested cross-validation: each outer fold scored under choices made on inner folds of the other patients "
    "only; the estimate for new patients like these"
)
ENSEMBLE_LABEL = (
    "nested, ensemble: each outer fold scored by the mean of the models that never saw it (outer model k and the "
    "pair models {j, k}), under the same nested choices; the estimate for the ensemble the run ships"
)


def _finish(
    run: Path,
    cfg: TrainConfig,
    rows: list[dict[str, Any]],
    decided: dict[str, Any],
    nested: dict[str, Any] | None,
    seconds: float,
) -> None:
    """Write the choices into every fold's config, then ``oof.csv``, ``ensemble.json`` and ``summary.json``."""
    members = [fold_name(k) for k in range(1, cfg.folds + 1)]
    ch: Choices = decided["choices"]
    for m in members:
        mcfg = ModelConfig.from_json(run / m / CONFIG_NAME)
        metrics = {**mcfg.metrics, "oof_study_auroc": _finite(decided["auroc"]["tta" if decided["tta"] else "plain"])}
        chosen: dict[str, Any] = {"threshold": ch.threshold, "tta": ch.tta, "temperature": ch.temperature}
        ops = {k: v for k, v in ch.operating_points.items() if math.isfinite(v)}
        write_json(run / m / CONFIG_NAME, replace(mcfg, **chosen, operating_points=ops, metrics=metrics).to_dict())
    write_csv(run / OOF, rows)
    info = {
        "folds": cfg.folds,
        "folds_by": cfg.folds_by,
        "members": members,
        "threshold": ch.threshold,
        "threshold_from": "--threshold" if cfg.threshold else "out-of-fold kappa",
        "tta": ch.tta,
        "temperature": ch.temperature,
        "operating_points": {k: _finite(v) for k, v in ch.operating_points.items()},
        "oof_study_auroc": {k: _finite(v) for k, v in decided["auroc"].items()},
        "oof": {"label": OOF_LABEL, **decided["oof"]},
        **({"nested": {"label": NESTED_LABEL, **nested}} if nested else {}),
    }
    write_json(run / ENSEMBLE_NAME, info)
    write_json(
        run / SUMMARY, {"run": str(run), "arch": cfg.arch, "part": cfg.part, "seconds": round(seconds, 2), **info}
    )
    write_ensemble_card(run, cfg, info)


def _finite(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


__all__ = ["FoldsResult", "decide", "fit_folds", "inner_predictions", "out_of_fold", "predict_rows"]
