"""``mura train --folds K``: patient-level K-fold cross-validation, out-of-fold predictions, one ensemble.

:func:`fit_folds` trains fold k on the other folds' patients (a full run folder, ``RUN/fold-k``), then scores
its held-out patients with the model it kept: every training study gets a prediction from a model that never
saw it. On those out-of-fold predictions it decides what a single tune split would otherwise decide: whether
test-time flips pay (AUROC), and the threshold (maximum kappa). Both are written into every fold's
``config.json``, so predict, localize and benchmark use ``RUN`` as one model: the mean of the K probabilities,
as the MURA paper's ensemble of 5. ``RUN`` also holds ``oof.csv`` (one row per image), ``ensemble.json``
and ``summary.json`` (the out-of-fold scores per part with bootstrap CIs by study).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from mura_cli.config import TrainConfig, from_dict
from mura_cli.engine.backends import TorchBackend
from mura_cli.engine.evaluate import infer, rows_loader
from mura_cli.engine.results import EpochResult, TrainResult
from mura_cli.engine.run import (
    LAST_STATE,
    SUMMARY,
    TRAIN_CONFIG,
    find_cache,
    fold_rows,
    new_run_dir,
    resolve_index,
    save_train_config,
    select_part,
)
from mura_cli.errors import UsageError
from mura_cli.metrics import aggregate_by_study, kappa_threshold, roc_auc
from mura_cli.models.checkpoint import CONFIG_NAME, ENSEMBLE_NAME, ModelConfig, load_run_model
from mura_cli.scoring import score_table
from mura_cli.utils import read_json, resolve_device, write_csv, write_json

OOF = "oof.csv"


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
    """

    run_dir: Path
    folds: tuple[TrainResult | None, ...]
    oof: dict[str, Any]
    threshold: float
    tta: bool
    auroc: dict[str, float]
    seconds: float


def fit_folds(
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    on_fold: Callable[[int, int, str], None] | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
    on_batch: Callable[[str, int, int], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> FoldsResult:
    """Train ``cfg.folds`` models by patient-level cross-validation; see the module docstring.

    ``resume`` continues an ensemble folder: finished folds are kept, an interrupted one resumes, the rest
    train. ``on_fold(k, K, state)`` is called before each fold (state ``train``, ``resume`` or ``done``).
    """
    from mura_cli.engine.train import fit

    t0 = time.perf_counter()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
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
    for k in range(1, cfg.folds + 1):
        folder = run / f"fold-{k}"
        fold_cfg = replace(cfg, fold=k, out=str(run), name=folder.name, exist_ok=True)
        state = "done" if (folder / SUMMARY).is_file() else "resume" if (folder / LAST_STATE).is_file() else "train"
        if on_fold:
            on_fold(k, cfg.folds, state)
        if state == "done":
            results.append(None)
            continue
        kw: dict[str, Any] = {"on_epoch": on_epoch, "on_batch": on_batch, "on_start": on_start}
        results.append(fit(fold_cfg, resume=folder, **kw) if state == "resume" else fit(fold_cfg, **kw))
    oof_rows = out_of_fold(run, cfg)
    decided = decide(oof_rows, cfg)
    _finish(run, cfg, oof_rows, decided, time.perf_counter() - t0)
    return FoldsResult(run, tuple(results), seconds=time.perf_counter() - t0, **decided)


def out_of_fold(run: Path, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Each fold's kept model on its held-out patients, plain and flipped: one row per image."""
    index, index_dir = resolve_index(cfg.data)
    part = select_part(index, cfg.part)
    rows: list[dict[str, Any]] = []
    device = resolve_device(cfg.device)
    cache = find_cache(index_dir, cfg)
    for k in range(1, cfg.folds + 1):
        model, mcfg = load_run_model(run / f"fold-{k}", device)
        held = fold_rows(index, part, replace(cfg, fold=k))[2]
        backend = TorchBackend(model, device, channels_last=False)
        for batch in rows_loader(held, index.root, mcfg.transform, cache, 2 * cfg.batch_size):
            x = batch["image"]
            plain = infer(backend, x).probabilities  # one decode, both views: the flip averages with it
            both = (plain + infer(backend, torch.flip(x, dims=(-1,))).probabilities) / 2
            for j, i in enumerate(batch["index"].tolist()):
                if not bool(batch["valid"][j]):
                    continue
                r = held[i]
                rows.append(
                    {
                        "path": r.path,
                        "part": r.part,
                        "patient": r.patient,
                        "study": r.study,
                        "label": r.label,
                        "fold": k,
                        "probability": round(float(plain[j]), 6),
                        "probability_tta": round(float(both[j]), 6),
                    }
                )
    return rows


def decide(rows: list[dict[str, Any]], cfg: TrainConfig) -> dict[str, Any]:
    """Out-of-fold decisions: flips if they raise study AUROC, the kappa threshold, and the scores (with CIs)."""
    studies = [r["study"] for r in rows]
    labels = [r["label"] for r in rows]
    auroc = {}
    for name, key in (("plain", "probability"), ("tta", "probability_tta")):
        _, s_lab, s_prob = aggregate_by_study(studies, labels, [r[key] for r in rows])
        auroc[name] = roc_auc(s_lab, s_prob)
    tta = bool(auroc["tta"] > auroc["plain"])
    key = "probability_tta" if tta else "probability"
    ids, s_lab, s_prob = aggregate_by_study(studies, labels, [r[key] for r in rows])
    part_of = {r["study"]: r["part"] for r in rows}
    threshold = cfg.threshold or kappa_threshold(s_lab, s_prob)
    table = score_table(s_lab, s_prob, ids, [part_of[s] for s in ids], threshold, seed=cfg.seed)
    return {"oof": table, "threshold": threshold, "tta": tta, "auroc": auroc}


def _finish(run: Path, cfg: TrainConfig, rows: list[dict[str, Any]], decided: dict[str, Any], seconds: float) -> None:
    """Write the decisions into every fold's config, then ``oof.csv``, ``ensemble.json`` and ``summary.json``."""
    members = [f"fold-{k}" for k in range(1, cfg.folds + 1)]
    for m in members:
        mcfg = ModelConfig.from_json(run / m / CONFIG_NAME)
        metrics = {**mcfg.metrics, "oof_study_auroc": _finite(decided["auroc"]["tta" if decided["tta"] else "plain"])}
        write_json(
            run / m / CONFIG_NAME,
            replace(mcfg, threshold=decided["threshold"], tta=decided["tta"], metrics=metrics).to_dict(),
        )
    write_csv(run / OOF, rows)
    info = {
        "folds": cfg.folds,
        "members": members,
        "threshold": decided["threshold"],
        "threshold_from": "--threshold" if cfg.threshold else "out-of-fold kappa",
        "tta": decided["tta"],
        "oof_study_auroc": {k: _finite(v) for k, v in decided["auroc"].items()},
        "oof": decided["oof"],
    }
    write_json(run / ENSEMBLE_NAME, info)
    write_json(
        run / SUMMARY, {"run": str(run), "arch": cfg.arch, "part": cfg.part, "seconds": round(seconds, 2), **info}
    )


def _finite(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


__all__ = ["OOF", "FoldsResult", "decide", "fit_folds", "out_of_fold"]
