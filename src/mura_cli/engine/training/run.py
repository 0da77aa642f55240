"""A training run's folder: what :func:`~mura_cli.engine.training.train.fit` writes there (the config, each epoch, the
resumable last state, the summary) and reads back on ``--resume``; the folder's files are named in
:mod:`mura_cli.models.run_folder`. Only safetensors and JSON: nothing pickled. The data a run reads is
:mod:`mura_cli.engine.training.train_data`'s.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from mura_cli.config import RESUME_SETTINGS, TrainConfig, from_dict, to_dict
from mura_cli.engine.results import EpochResult
from mura_cli.errors import UsageError
from mura_cli.models.checkpoint import ModelConfig, read_weights, save_run_model, save_weights
from mura_cli.models.run_folder import (
    CURVES,
    LAST_AVERAGE,
    LAST_OPTIM,
    LAST_STATE,
    LAST_WEIGHTS,
    METRICS,
    SUMMARY,
    TRAIN_CONFIG,
)
from mura_cli.utils import atomic_path, write_csv, write_json

# ------------------------------------------------------------------------------------------ the folder


def new_run_dir(cfg: TrainConfig, part: str) -> Path:
    """``<out>/<name>``: a new folder; a default name is numbered when taken, an explicit one is an error."""
    base = Path(cfg.out)
    if cfg.name:
        run = base / cfg.name
        if run.exists() and any(run.iterdir()) and not cfg.exist_ok:
            raise UsageError(
                f"{run}: a run of that name exists; pick another --name, --resume it, or --exist-ok to overwrite it"
            )
        return run
    stem = f"{cfg.arch.replace('/', '_')}-{part}"
    run, n = base / stem, 2
    while run.exists():
        run, n = base / f"{stem}{n}", n + 1
    return run


def save_train_config(run: Path, cfg: TrainConfig) -> None:
    """Create ``run`` and write the resolved config as ``train_config.json``."""
    run.mkdir(parents=True, exist_ok=True)
    write_json(run / TRAIN_CONFIG, to_dict(cfg))


def resume_config(run: Path, changes: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """The config of the run to resume with ``changes`` applied, and its last state (as read from JSON).

    Raises:
        UsageError: not a resumable run, or ``changes`` to settings other than ``config.RESUME_SETTINGS``.
    """
    try:
        saved = json.loads((run / TRAIN_CONFIG).read_text())
        state = json.loads((run / LAST_STATE).read_text())
    except (OSError, json.JSONDecodeError):
        raise UsageError(f"{run}: not a resumable run (needs {TRAIN_CONFIG} and {LAST_STATE})") from None
    saved.setdefault("precision", "fp32")  # runs from before --precision trained in fp32 on the CPU
    refused = sorted(set(changes) - set(RESUME_SETTINGS))
    if refused:
        raise UsageError(f"{run}: {', '.join(refused)} cannot change on resume; only {', '.join(RESUME_SETTINGS)}")
    return replace(from_dict(TrainConfig, saved), **changes), state


@dataclass(frozen=True)
class Progress:
    """Where training stands after ``epoch``: the best tune loss so far, epochs since it improved, the history."""

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: tuple[EpochResult, ...] = ()

    def record(self, result: EpochResult) -> Progress:
        """The progress after ``result`` (its ``best`` flag says whether its tune loss improved)."""
        if result.best:
            best: dict[str, Any] = {"best_loss": result.tune_loss, "best_epoch": result.epoch, "bad_epochs": 0}
        else:
            best = {"bad_epochs": self.bad_epochs + 1}
        return replace(self, epoch=result.epoch, history=(*self.history, result), **best)

    def improves(self, tune_loss: float) -> bool:
        """Whether ``tune_loss`` beats the best so far (NaN never does)."""
        return tune_loss < self.best_loss


# ------------------------------------------------------------------------------------------ last state


def _save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> dict[str, Any]:
    """Optimizer tensors to safetensors; returns the JSON-able rest (param groups, which keys are tensors)."""
    from safetensors.torch import save_file

    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    return {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(optimizer: torch.optim.Optimizer, path: Path, meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in read_weights(path).items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for key, v in meta.get("scalars", {}).items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_last_state(
    run: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: Progress,
    arch: str,
    average: torch.nn.Module | None = None,
) -> None:
    """Write what ``--resume`` needs: last weights (and their average), optimizer tensors, ``last_state.json``."""
    save_weights(model, run / LAST_WEIGHTS, arch=arch)
    if average is not None:
        save_weights(average, run / LAST_AVERAGE, arch=arch)
    last = {
        "epoch": progress.epoch,
        "best_loss": progress.best_loss,
        "best_epoch": progress.best_epoch,
        "bad_epochs": progress.bad_epochs,
        "scheduler": scheduler.state_dict(),
        "optimizer": _save_optimizer(optimizer, run / LAST_OPTIM),
        "history": [e.to_row() for e in progress.history],
    }
    write_json(run / LAST_STATE, last, indent=1)


def load_last_state(
    run: Path,
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    average: torch.nn.Module | None = None,
) -> Progress:
    """Restore ``model``, ``optimizer``, ``scheduler`` (and the weight ``average``) from ``run``.

    ``state`` is the run's ``last_state.json``.
    """
    model.load_state_dict(read_weights(run / LAST_WEIGHTS))
    if average is not None:
        average.load_state_dict(read_weights(run / LAST_AVERAGE))
    _load_optimizer(optimizer, run / LAST_OPTIM, state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return Progress(
        epoch=int(state["epoch"]),
        best_loss=float(state["best_loss"]),
        best_epoch=int(state["best_epoch"]),
        bad_epochs=int(state["bad_epochs"]),
        history=tuple(EpochResult(**e) for e in state["history"]),
    )


# ------------------------------------------------------------------------------------------ per epoch, at the end


def write_metrics_csv(run: Path, epochs: list[EpochResult] | tuple[EpochResult, ...]) -> Path:
    """``metrics.csv``: one row per epoch (:meth:`EpochResult.to_row`)."""
    return write_csv(run / METRICS, [e.to_row() for e in epochs])


def save_epoch(
    run: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: Progress,
    *,
    arch: str,
    best: ModelConfig | None,
    average: torch.nn.Module | None = None,
) -> None:
    """After an epoch: the model when ``best`` (its config), the last state, ``metrics.csv`` and the curves.

    With a weight ``average`` it is the average that becomes the model.
    """
    from mura_cli.report.plots import save_training_curves

    if best is not None:
        save_run_model(average if average is not None else model, run, best)
    save_last_state(run, model, optimizer, scheduler, progress, arch, average)
    write_metrics_csv(run, progress.history)
    save_training_curves(progress.history, run / CURVES)


@dataclass(frozen=True)
class RunInfo:
    """What a run is: ``on_start`` gets it as a dict, and ``summary.json`` starts with it."""

    run: str
    arch: str
    part: str
    device: str
    world_size: int
    train_images: int
    tune_images: int
    train_studies: int
    tune_studies: int
    weights: str
    cache: str | None
    loss_weights: dict[str, tuple[float, float]]
    start_epoch: int
    input: int
    precision: str = "fp32"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def finish_run(
    run: Path,
    cfg: TrainConfig,
    model: ModelConfig,
    info: RunInfo,
    progress: Progress,
    *,
    stopped_early: bool,
    seconds: float,
    seen: list[list[int]],
) -> None:
    """At the end: ``summary.json`` (its presence marks a finished run) and the model card.

    ``seen`` holds the train images each rank saw in the first epoch (their overlap should be 0).
    """
    from mura_cli._version import __version__
    from mura_cli.report.card import write_model_card

    overlap = len(set(seen[0]).intersection(*map(set, seen[1:]))) if len(seen) > 1 else 0
    summary = {
        **info.to_dict(),
        "best_epoch": progress.best_epoch,
        "stopped_early": stopped_early,
        "seconds": round(seconds, 2),
        "samples_per_rank": [len(s) for s in seen],
        "rank_overlap": overlap,
        "best": next((e.to_row() for e in progress.history if e.epoch == progress.best_epoch), None),
        "version": __version__,
    }
    write_json(run / SUMMARY, summary)
    counts = {"images": (info.train_images, info.tune_images), "studies": (info.train_studies, info.tune_studies)}
    write_model_card(run, cfg, model, progress.history, progress.best_epoch, weights=info.weights, **counts)


__all__ = [
    "Progress",
    "RunInfo",
    "finish_run",
    "load_last_state",
    "new_run_dir",
    "resume_config",
    "save_epoch",
    "save_last_state",
    "save_train_config",
    "write_metrics_csv",
]
