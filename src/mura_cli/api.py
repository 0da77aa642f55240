"""The Python API: what ``mura predict``, ``mura localize``, ``mura benchmark`` and ``mura train`` do, callable
from a notebook.

Each function takes what its command takes (paths; a run folder, Hub id or loaded :class:`Model`; the command's
options as keyword arguments, named as the config fields) and returns the job's typed, frozen result. The
commands call these same functions (``mura train`` calls the engine's ``train``, which :func:`train` wraps, with
its progress callbacks). Nothing is written unless asked: ``predict`` and ``localize`` write their CSV/JSON only
when ``out=`` is given (``benchmark`` always writes its report folder, ``out`` by default ``benchmark``;
``train`` its run folder under ``out``, by default ``runs``). Warnings and notices go to the ``mura_cli`` logger
unless ``hooks`` says otherwise.

Example:
    >>> import mura_cli
    >>> model = mura_cli.load_model("mura-demo/runs/demo")
    >>> result = mura_cli.predict("mura-demo/data/valid", model=model)
    >>> result.to_pandas().head()  # one row per study; to_records() without pandas
    >>> run = mura_cli.train("MURA-v1.1", arch="densenet169", part="elbow").run_dir
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mura_cli.config import (
    RESUME_SETTINGS,
    BenchmarkConfig,
    LocalizeConfig,
    PredictConfig,
    TrainConfig,
    merge,
    to_dict,
    train_config,
)
from mura_cli.config_file import check_settings
from mura_cli.data.index import default_data
from mura_cli.engine.evaluation.benchmark import BenchmarkReport, run_benchmark
from mura_cli.engine.hooks import Hooks
from mura_cli.engine.serving.load import Model, load_model
from mura_cli.engine.serving.localize import LocalizeReport, run_localize
from mura_cli.engine.serving.screen import PredictReport, run_predict
from mura_cli.engine.training.train_job import train as run_train
from mura_cli.errors import UsageError

if TYPE_CHECKING:
    from mura_cli.engine.results import EpochResult, TrainResult
    from mura_cli.engine.training.folds import FoldsResult

log = logging.getLogger("mura_cli")

Paths = str | Path | Sequence[str | Path]
ModelArg = Model | str | Path | Sequence[str | Path] | None
C = TypeVar("C", PredictConfig, LocalizeConfig, BenchmarkConfig)


def predict(
    paths: Paths,
    model: ModelArg = None,
    *,
    config: PredictConfig | None = None,
    hooks: Hooks | None = None,
    **options: Any,
) -> PredictReport:
    """Score images and studies, as ``mura predict`` does.

    Args:
        paths: files, folders (recursive) or globs: PNG/JPEG/BMP/TIFF and DICOM.
        model: a :class:`Model` from :func:`load_model`, or what it takes (a run folder, ``org/name`` on the Hub,
            a folder of per-part runs, or several); ``None``: ``$MURA_MODEL``, else the newest run under ``runs``.
        config: start from these settings instead of the defaults (the CLI passes its parsed options).
        hooks: progress, notices, warnings and failures as they happen (default: notices and warnings logged).
        **options: any :class:`~mura_cli.config.PredictConfig` field: ``out`` (write the study CSV there),
            ``images``, ``part``, ``per_image``, ``aggregate``, ``threshold``, ``device``, ``engine``, ``tta``,
            ``batch_size``, ``workers``...

    Returns:
        The studies (:class:`~mura_cli.engine.serving.predict.StudyPrediction`), the images (``.predictions``), the
        failures; ``.to_records()`` and ``.to_pandas()`` give one row per study (``level="image"``: per image).

    Raises:
        MuraError: a usage, data or model problem, with a message that says what to do. Unreadable files do not
            raise: they are listed in ``.failures`` and the others are scored.

    Example:
        >>> result = predict(["scan1.dcm", "xrays/"], model="runs/elbow", part="elbow")
        >>> [(s.study, s.probability) for s in result.studies]
    """
    cfg = _config(config or PredictConfig(out=""), paths, model, options)
    return run_predict(cfg, _hooks(hooks), model=_loaded(model))


def localize(
    paths: Paths,
    model: ModelArg = None,
    *,
    config: LocalizeConfig | None = None,
    hooks: Hooks | None = None,
    **options: Any,
) -> LocalizeReport:
    """Box each image's class activation map, as ``mura localize`` does.

    Args:
        paths, model, config, hooks: as for :func:`predict`.
        **options: any :class:`~mura_cli.config.LocalizeConfig` field: ``out`` (write the boxes there, JSON or
            CSV by suffix), ``overlay`` (a heatmap-and-box PNG per image in ``overlay_dir``), ``heatmap``,
            ``threshold_frac``, ``component``, ``part``, ``device``...

    Returns:
        One :class:`~mura_cli.engine.serving.localize.Localization` per image (``.localizations``), the failures;
        ``.to_records()`` and ``.to_pandas()`` give the rows of ``boxes.json``.
    """
    cfg = _config(config or LocalizeConfig(out=""), paths, model, options)
    return run_localize(cfg, _hooks(hooks), model=_loaded(model))


def benchmark(
    data: str | Path | None = None,
    model: ModelArg = None,
    *,
    config: BenchmarkConfig | None = None,
    hooks: Hooks | None = None,
    command: str = "",
    **options: Any,
) -> BenchmarkReport:
    """Score a model on a labelled dataset (and/or time it), as ``mura benchmark`` does; writes the report folder.

    Args:
        data: a dataset root (MURA, FracAtlas) or a ``mura prepare`` folder; ``None``: speed only (``speed=True``).
        model, config, hooks: as for :func:`predict`.
        command: how the report names the command that made it.
        **options: any :class:`~mura_cli.config.BenchmarkConfig` field: ``out`` (the report folder), ``split``,
            ``part``, ``boxes``, ``speed``, ``resamples``, ``overwrite``...

    Returns:
        The report (``.report``, JSON-ready) and the files written; ``.to_records()`` and ``.to_pandas()`` give
        every metric per level, part and metric with its 95% bootstrap interval.
    """
    base = config or BenchmarkConfig()
    cfg = merge(base, {**_strings(options), "data": str(data) if data is not None else None, **_specs(model)})
    return run_benchmark(cfg, _hooks(hooks), command=command, model=_loaded(model))


def train(
    data: str | Path | None = None,
    *,
    config: TrainConfig | None = None,
    resume: str | Path | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
    on_fold: Callable[[str, int, int, str], None] | None = None,
    **options: Any,
) -> TrainResult | FoldsResult:
    """Train a model, or with ``folds=K`` a cross-validated ensemble, as ``mura train`` does.

    Args:
        data: a ``mura prepare`` folder or a dataset root (MURA, FracAtlas, class folders); ``None``: the dataset
            ``mura prepare`` wrote here (``./.mura``), else ``./MURA-v1.1``.
        config: start from these settings instead of the defaults (and the random-init recipe they imply).
        resume: continue this run folder with its own settings; ``options`` may then only change
            :data:`~mura_cli.config.RESUME_SETTINGS`.
        on_epoch: called with each finished epoch; ``on_fold``: before each member of a ``folds`` ensemble.
        **options: any :class:`~mura_cli.config.TrainConfig` field, named as in the config (the flag without
            ``--``): ``arch``, ``part``, ``weights``, ``epochs``, ``folds``, ``nested``, ``out``, ``name``...;
            ``transform={"size": 64}`` for the input (a dict, or a :class:`~mura_cli.config.TransformConfig`).

    Returns:
        :class:`~mura_cli.engine.results.TrainResult` (``run_dir``, ``best``, ``epochs``), or for ``folds`` a
        :class:`~mura_cli.engine.training.folds.FoldsResult` (``run_dir``, ``oof``, ``nested``, the choices).

    Raises:
        MuraError: an unknown or bad setting, missing data, a bad resume (one line naming what to do).
    """
    given = {k: to_dict(v) if is_dataclass(v) and not isinstance(v, type) else v for k, v in _strings(options).items()}
    check_settings(TrainConfig, given, "train()")  # a typo or a wrong type, named
    if resume is not None:
        refused = sorted(set(given) - set(RESUME_SETTINGS))
        if refused:
            raise UsageError(
                f"resume={resume}: a resumed run keeps its own settings; drop {', '.join(refused)} "
                f"(only {', '.join(RESUME_SETTINGS)} can change)"
            )
        return run_train(TrainConfig(), resume=resume, changes=given, on_epoch=on_epoch, on_fold=on_fold)
    flags = {**given, **({"data": str(data)} if data is not None else {})}
    cfg = train_config(to_dict(config) if config else {}, flags)
    if not cfg.data:
        cfg = replace(cfg, data=str(default_data()))
    return run_train(cfg, on_epoch=on_epoch, on_fold=on_fold)


def _config(base: C, paths: Paths, model: ModelArg, options: dict[str, Any]) -> C:
    """``base`` with ``paths``, the model specs and ``options`` (paths as strings, sequences as tuples)."""
    given = [paths] if isinstance(paths, str | Path) else list(paths)
    return merge(base, {**_strings(options), "paths": tuple(str(p) for p in given), **_specs(model)})


def _strings(options: dict[str, Any]) -> dict[str, Any]:
    """Option values as the configs hold them: paths as strings, lists as tuples."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, list):
            value = tuple(value)
        out[key] = value
    return out


def _specs(model: ModelArg) -> dict[str, Any]:
    if model is None or isinstance(model, Model):
        return {}
    return {"model": (str(model),) if isinstance(model, str | Path) else tuple(str(m) for m in model)}


def _loaded(model: ModelArg) -> Model | None:
    return model if isinstance(model, Model) else None


def _hooks(hooks: Hooks | None) -> Hooks:
    return hooks if hooks is not None else Hooks(on_info=log.info, on_warning=log.warning)


__all__ = ["Model", "benchmark", "load_model", "localize", "predict", "train"]
