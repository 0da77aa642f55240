"""Which model(s) predict and localize use, and loading them behind an inference backend.

:func:`resolve_model_specs` turns ``--model`` (or its absence) into specs with the reason for the choice;
:func:`load_models` loads run folders, Hub repos or a folder of per-part runs; :func:`models_for_part`
routes a body part to the models that serve it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mura_cli.config import DemoConfig, TransformConfig
from mura_cli.engine.backends import Backend, FlipBackend, TemperatureBackend
from mura_cli.engine.serving.runtimes import AUTO, AUTO_BF16_MIN_INPUTS, TORCH, TORCH_BF16, load_backend, resolve_engine
from mura_cli.errors import ModelError, UsageError
from mura_cli.models.checkpoint import ModelConfig, load_run_config, load_run_model
from mura_cli.models.run_folder import CONFIG_NAME, RunFolder
from mura_cli.utils import sha256_files


@dataclass(frozen=True)
class LoadedModel:
    """One model ready for inference: its backend, its config (``config.json``) and its eval transform."""

    name: str
    backend: Backend
    config: ModelConfig
    folder: Path | None = None
    ensemble: str | None = None
    operating_point: str | None = None

    @property
    def transform(self) -> TransformConfig:
        return self.config.transform

    @property
    def threshold(self) -> float:
        """The stored threshold, or the one stored for :attr:`operating_point` (``sens:0.9``)."""
        if self.operating_point is not None:
            return self.config.operating_points[self.operating_point]
        return self.config.threshold

    @property
    def part(self) -> str:
        return self.config.part

    @property
    def parts(self) -> tuple[str, ...]:
        """The body parts the model saw in training."""
        return tuple(self.config.parts) or (self.part,)

    @property
    def short_name(self) -> str:
        """How outputs name the model: its folder's name, or the ``--folds`` ensemble it belongs to."""
        if self.ensemble:
            return self.ensemble
        return Path(self.name).name if Path(self.name).exists() else self.name


MODEL_ENV = "MURA_MODEL"
"""Environment variable naming the model to use when ``--model`` is not given."""


@dataclass(frozen=True)
class ModelChoice:
    """Which model specs predict/localize use, and why (shown to the user)."""

    specs: tuple[str, ...]
    reason: str


def resolve_model_specs(
    specs: Sequence[str], env: Mapping[str, str] | None = None, runs_dir: str | Path = "runs"
) -> ModelChoice:
    """Pick the model: ``--model`` specs, else ``$MURA_MODEL``, else the newest complete run under ``runs_dir``,
    else the model ``mura demo`` trained in this folder (``mura-demo/runs/demo``, its default ``--out``).

    A complete run is a folder that ``mura train`` finished (``config.json``, ``model.safetensors`` and
    ``summary.json``, or a ``--folds`` ensemble's ``ensemble.json`` and ``summary.json``), the newest by the time
    its summary was written.

    Raises:
        ModelError: none of the three gives a model; the message says how to get one.
    """

    if specs:
        return ModelChoice(tuple(specs), "--model")
    value = (os.environ if env is None else env).get(MODEL_ENV, "").strip()
    if value:
        return ModelChoice((value,), f"from ${MODEL_ENV}")
    root = Path(runs_dir)
    newest = RunFolder.newest(root)
    if newest is not None:
        return ModelChoice((str(newest),), f"newest complete run under {root}/")
    demo = Path(DemoConfig().out) / "runs" / "demo"
    if RunFolder(demo).finished:
        return ModelChoice((str(demo),), f"trained by `mura demo` on synthetic radiographs; none under {root}/")
    raise ModelError(
        f"no model given and no finished run under {root}/; pass --model RUN_FOLDER (or org/name on the Hub), "
        f"set {MODEL_ENV}, or train one first with `mura train` (or `mura demo`)"
    )


@dataclass(frozen=True, repr=False)
class Model:
    """A model, or an ensemble, loaded once for inference: what :func:`mura_cli.predict`, :func:`mura_cli.localize`
    and :func:`mura_cli.benchmark` take as ``model=`` (:func:`load_model` makes one).

    Attributes:
        members: the loaded models; several serving one part are averaged, a folder of per-part runs routes by part.
        choice: the specs loaded and why they were chosen (``--model``, ``$MURA_MODEL`` or the newest run).
        device: the torch device the members run on (resolved: never ``auto``).
    """

    members: tuple[LoadedModel, ...]
    choice: ModelChoice
    device: str

    @property
    def name(self) -> str:
        """How outputs name it: its members' short names, joined by ``+``."""
        return "+".join(dict.fromkeys(m.short_name for m in self.members))

    @property
    def parts(self) -> tuple[str, ...]:
        """The body parts its members saw in training."""
        return tuple(dict.fromkeys(p for m in self.members for p in m.parts))

    @property
    def thresholds(self) -> tuple[float, ...]:
        """Each member's abnormal threshold (chosen on its tune split)."""
        return tuple(m.threshold for m in self.members)

    def __repr__(self) -> str:
        return f"Model(name={self.name!r}, parts={self.parts}, members={len(self.members)}, device={self.device!r})"


def load_model(
    model: str | Path | Sequence[str | Path] | None = None,
    *,
    device: str = "auto",
    engine: str = AUTO,
    tta: bool | None = None,
    runs_dir: str | Path = "runs",
    inputs: int | None = None,
    on_info: Callable[[str], None] | None = None,
) -> Model:
    """Load a model for inference, as ``--model`` names it: a run folder, ``org/name`` or ``hf-hub:org/name`` on
    the Hub, a folder of per-part runs, or several of these (an ensemble); ``None``: ``$MURA_MODEL``, else the
    newest finished run under ``runs_dir``.

    ``device`` is ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; ``engine`` ``torch``, ``onnx``, ``onnx-int8``
    or ``auto`` (:func:`load_models`); ``tta`` averages each image with its flip (``None``: as each model says).
    ``inputs``, the number of files it will score (``None``: unknown), lets ``engine="auto"`` choose bf16 where it
    pays (:func:`load_models`). ``on_info`` hears which model was chosen and why (``model: SPEC (REASON)``),
    before the loading starts.

    Raises:
        ModelError: no model given and none found, or one that cannot be loaded (the message says what to do).
    """
    from mura_cli.utils import resolve_device

    specs = [str(model)] if isinstance(model, str | Path) else [str(m) for m in model or ()]
    choice = resolve_model_specs(specs, runs_dir=runs_dir)
    if on_info:
        on_info(f"model: {', '.join(choice.specs)} ({choice.reason})")
    resolved = resolve_device(device)
    return Model(tuple(load_models(choice.specs, resolved, engine, tta, inputs)), choice, resolved)


def load_models(
    specs: Sequence[str],
    device: str = "cpu",
    engine: str = TORCH,
    tta: bool | None = None,
    inputs: int | None = None,
) -> list[LoadedModel]:
    """Load ``--model`` specs: run folders, Hub repos, or a folder holding runs (per part, or the folds of
    ``mura train --folds``).

    Several specs form an ensemble (mean of probabilities); a folder of per-part runs routes by part.
    ``engine`` is ``torch``, ``onnx`` (ONNX Runtime on an export cached beside the run), ``onnx-int8`` or
    ``auto`` (ONNX Runtime on CPU when it is installed, torch for a model it cannot take and on GPUs: on the
    speed benchmark, 1.5x faster end to end on 2 cores, for a one-off export of about a second).
    ``tta`` averages each image with its flip (:class:`FlipBackend`); ``None`` follows each model's config.
    ``torch-bf16`` runs torch with bf16 autocast; ``auto`` picks it for a model where :func:`auto_bf16` says so
    (``inputs``, the number of files to score, ``None`` when unknown).
    """
    fallback = engine == AUTO  # ONNX Runtime, or torch for a model that cannot be exported
    engine = resolve_engine(engine, device)
    from mura_cli.models.hub import resolve_model_folder

    if not specs:
        raise UsageError("no model given; pass --model RUN_FOLDER or --model org/name (train one with `mura train`)")
    out: list[LoadedModel] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir() and not (p / CONFIG_NAME).is_file():
            runs = sorted(d for d in p.iterdir() if (d / CONFIG_NAME).is_file())
            if not runs:
                raise UsageError(f"{p}: no {CONFIG_NAME} here nor in its subfolders; pass a run folder from mura train")
            ensemble = p.resolve().name if RunFolder(p).is_ensemble else None
            for d in runs:
                m = _loaded(str(d), d, device, engine, tta, fallback, inputs)
                out.append(replace(m, ensemble=ensemble))
        else:
            folder = resolve_model_folder(spec)
            out.append(_loaded(spec, folder, device, engine, tta, fallback, inputs))
    return out


def _loaded(
    name: str,
    folder: Path,
    device: str,
    engine: str,
    tta: bool | None,
    fallback: bool = False,
    inputs: int | None = None,
) -> LoadedModel:
    """The model in ``folder`` behind ``engine``; with ``fallback`` (``--engine auto``), bf16 where
    :func:`auto_bf16` allows it, and torch when ONNX export fails. The network (and torch) is built only when
    the engine needs it: ONNX Runtime on a cached export does not."""
    cfg = load_run_config(folder)
    built: list[Any] = []

    def network() -> Any:
        if not built:
            built.append(load_run_model(folder, device)[0])
        return built[0]

    if fallback and auto_bf16(folder, device, inputs):
        engine = TORCH_BF16
    backend = load_backend(engine, folder, cfg.transform.output_size, device, name, network, fallback)
    if cfg.tta if tta is None else tta:
        backend = FlipBackend(backend)
    if cfg.temperature != 1.0:
        backend = TemperatureBackend(backend, cfg.temperature)
    return LoadedModel(name=name, backend=backend, config=cfg, folder=folder)


def auto_bf16(folder: Path | None, device: str, inputs: int | None) -> bool:
    """Whether ``--engine auto`` serves the run in ``folder`` with torch in bf16: on a CPU with native bf16 (AMX or
    AVX512-BF16, read from ``/proc/cpuinfo``), for at least :data:`AUTO_BF16_MIN_INPUTS` files (or an unknown
    number), and only when the run's bf16 check passed (``bf16_check.json`` of its current weights)."""
    from mura_cli.engine.evaluation.bf16 import bf16_passed
    from mura_cli.hardware import cpu_info

    if device != "cpu" or (inputs is not None and inputs < AUTO_BF16_MIN_INPUTS):
        return False
    return cpu_info().native_bf16 and bf16_passed(folder)


def at_operating_point(models: Sequence[LoadedModel], spec: str) -> list[LoadedModel]:
    """``models`` labelling at their stored operating point ``spec`` (``sens:0.9``, chosen out of fold).

    Raises:
        UsageError: a model has no such operating point stored.
    """
    for m in models:
        if spec not in m.config.operating_points:
            stored = ", ".join(sorted(m.config.operating_points)) or "none"
            raise UsageError(
                f"--threshold {spec}: {m.name} stores no such operating point (it has: {stored}); operating points "
                "are chosen out of fold by `mura train --folds K`; pass a number instead"
            )
    return [replace(m, operating_point=spec) for m in models]


def weights_sha256(models: Sequence[LoadedModel]) -> str | None:
    """One SHA-256 over the weights files of ``models`` (in order): which model a report speaks of."""
    files = [RunFolder(m.folder).weights for m in models if m.folder is not None]
    if len(files) < len(models) or not all(f.is_file() for f in files):
        return None
    return sha256_files(files)


def models_for_part(models: list[LoadedModel], part: str | None) -> list[LoadedModel]:
    """The models that serve ``part``: those trained on it, else those trained on all parts, else all."""
    if part:
        own = [m for m in models if m.part == part]
        if own:
            return own
    general = [m for m in models if m.part == "all"]
    return general or models
