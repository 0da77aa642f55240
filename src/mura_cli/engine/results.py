"""Results as plain frozen data; tables, CSV and JSON are rendered from them by the CLI and reports."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    """What :func:`~mura_cli.engine.train.fit` produced."""

    run_dir: Path
    epochs: tuple[EpochResult, ...]
    best_epoch: int
    stopped_early: bool
    seconds: float
    world_size: int

    @property
    def best(self) -> EpochResult:
        return next(e for e in self.epochs if e.epoch == self.best_epoch)


STAGES = ("discover", "decode", "sanity", "dicom", "send")
"""Where an input was turned away: ``discover`` (skipped non-images, empty or unreadable entries, link loops),
``decode`` (the file could not be read), ``sanity`` (it decoded to a blank image); or where its result was:
``dicom`` (no DICOM results: its header could not be read), ``send`` (a DICOM result the PACS did not store)."""


@dataclass(frozen=True)
class Failure:
    """An input that could not be used, and why (the message names the file).

    Attributes:
        path: the file.
        reason: a one-line message (names the file).
        stage: one of :data:`STAGES`.
    """

    path: str
    reason: str
    stage: str = "decode"

    @property
    def short_reason(self) -> str:
        """The reason without the leading ``<path>: `` it usually starts with."""
        prefix = f"{self.path}: "
        return self.reason[len(prefix) :] if self.reason.startswith(prefix) else self.reason

    def to_row(self) -> dict[str, Any]:
        return {"path": self.path, "stage": self.stage, "reason": self.short_reason}


def errors_path(out: str | Path) -> Path:
    """Where the errors CSV of an output goes: ``results.csv`` -> ``results.errors.csv`` beside it."""
    p = Path(out)
    return p.with_name(f"{p.stem}.errors.csv")


def _ignore(*_: Any) -> None:
    return None


@dataclass(frozen=True)
class Hooks:
    """How a long job reports back while it runs; the CLI draws these, a library caller may ignore them.

    Attributes:
        on_info: a one-line notice (which model was chosen and why).
        on_warning: a one-line warning (a model used on a body part it never saw).
        on_progress: ``(done, total)`` inputs.
        on_failure: an input that failed; the job goes on.
    """

    on_info: Callable[[str], None] = _ignore
    on_warning: Callable[[str], None] = _ignore
    on_progress: Callable[[int, int], None] = _ignore
    on_failure: Callable[[Failure], None] = _ignore


def write_errors(out: str | Path, failures: Sequence[Failure]) -> Path | None:
    """Write ``failures`` beside ``out`` (``results.csv`` -> ``results.errors.csv``) as ``path,stage,reason``.

    Nothing is written when there is nothing to list or ``out`` is standard output, and a stale file from an
    earlier run is removed (the caller refused an existing one without ``--overwrite`` before the run).

    Returns:
        The CSV written, or ``None``.
    """
    from mura_cli.utils import is_stdout, write_csv

    if is_stdout(out):  # the output went to standard output: failures were named on stderr as they happened
        return None
    target = errors_path(out)
    if not failures:
        target.unlink(missing_ok=True)
        return None
    return write_csv(target, [f.to_row() for f in failures])


def to_pandas(records: Sequence[dict[str, Any]]) -> Any:
    """``records`` as a ``pandas.DataFrame``. pandas is not a dependency: without it, a UsageError says so."""
    try:
        import pandas as pd
    except ImportError:
        raise UsageError("to_pandas() needs pandas: pip install pandas (or use to_records())") from None
    return pd.DataFrame.from_records(list(records))
