"""Results as plain frozen data; tables, CSV and JSON are rendered from them by the CLI and reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mura_cli.errors import UsageError


@dataclass(frozen=True)
class EpochResult:
    """One epoch of training: losses, tune metrics at study level, learning rate and time."""

    epoch: int
    train_loss: float
    tune_loss: float
    tune_kappa: float
    tune_auroc: float
    tune_image_auroc: float
    lr: float
    seconds: float
    best: bool

    def to_row(self) -> dict[str, Any]:
        """The epoch as a flat dict; floats keep 6 significant digits (a 1e-7 learning rate stays 1e-07)."""
        return {k: (_significant(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _significant(v: float, digits: int = 6) -> float:
    """``v`` rounded to ``digits`` significant digits (not decimals); NaN and infinities pass through."""
    return float(f"{v:.{digits}g}")


@dataclass(frozen=True)
class TrainResult:
    """What :func:`~mura_cli.engine.training.train.fit` produced."""

    run_dir: Path
    epochs: tuple[EpochResult, ...]
    best_epoch: int
    stopped_early: bool
    seconds: float
    world_size: int

    @property
    def best(self) -> EpochResult:
        return next(e for e in self.epochs if e.epoch == self.best_epoch)


def to_pandas(records: Sequence[dict[str, Any]]) -> Any:
    """``records`` as a ``pandas.DataFrame``. pandas is not a dependency: without it, a UsageError says so."""
    try:
        import pandas as pd
    except ImportError:
        raise UsageError("to_pandas() needs pandas: pip install pandas (or use to_records())") from None
    return pd.DataFrame.from_records(list(records))
