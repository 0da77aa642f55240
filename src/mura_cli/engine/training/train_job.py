"""``mura train``'s one library entry: :func:`train` decides between one run and a ``--folds`` ensemble.

A new run with ``cfg.folds`` is a cross-validated ensemble (:func:`~mura_cli.engine.training.folds.fit_folds`), as is a
``--resume`` of a folder :attr:`~mura_cli.models.run_folder.RunFolder.is_folds` says is one; everything else is one
run (:func:`~mura_cli.engine.training.train.fit`, which checks the resume rules). The CLI parses, calls this
and renders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mura_cli.config import TrainConfig
from mura_cli.models.run_folder import RunFolder

if TYPE_CHECKING:
    from mura_cli.engine.results import EpochResult, TrainResult
    from mura_cli.engine.training.folds import FoldsResult


def is_folds_job(cfg: TrainConfig, resume: str | Path | None) -> bool:
    """Whether :func:`train` makes (or resumes) a ``--folds`` ensemble."""
    return bool(cfg.folds) or (resume is not None and RunFolder(resume).is_folds)


def train(
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    changes: dict[str, Any] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    on_batch: Callable[[str, int, int], None] | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
    on_fold: Callable[[str, int, int, str], None] | None = None,
) -> TrainResult | FoldsResult:
    """Train one model, or a ``--folds`` ensemble (:func:`is_folds_job`); or continue one from ``resume``.

    ``changes`` are the settings a resumed single run may change (``config.RESUME_SETTINGS``); the callbacks are
    those of :func:`~mura_cli.engine.training.train.fit`, and ``on_fold`` that of
    :func:`~mura_cli.engine.training.folds.fit_folds` (called before each member of an ensemble).

    Raises:
        UsageError: a bad resume (not resumable, or settings that cannot change) or a ``--folds`` job under torchrun.
    """
    callbacks: dict[str, Any] = {"on_start": on_start, "on_batch": on_batch, "on_epoch": on_epoch}
    if is_folds_job(cfg, resume):
        from mura_cli.engine.training.folds import fit_folds

        return fit_folds(cfg, resume=resume, on_fold=on_fold, **callbacks)
    from mura_cli.engine.training.train import fit

    return fit(cfg, resume=resume, changes=changes, **callbacks)


__all__ = ["is_folds_job", "train"]
