"""Our models on disk: ``model.safetensors`` + ``config.json`` (the Hub layout), safetensors only, never a pickle.

:class:`ModelConfig` is the typed ``config.json`` that travels with the weights (timm's ``PretrainedCfg`` for a
fine-tuned MURA model): what predict and localize need to rebuild the network, preprocess its inputs and read
its output. :func:`save_run_model` writes a folder, :func:`load_run_model` reads one back. Fetching a folder
from the Hub is :mod:`mura_cli.models.hub`'s job; this module never touches the network.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mura_cli.config import IMAGENET_MEAN, IMAGENET_STD, TransformConfig, from_dict, to_dict
from mura_cli.errors import ModelError
from mura_cli.models.run_folder import BACKBONE_KIND, CONFIG_NAME, WEIGHTS_NAME
from mura_cli.utils import atomic_path, read_json, short_error, write_json

if TYPE_CHECKING:  # torch is imported only to build or save a network: ONNX Runtime serves without it
    import torch

    from mura_cli.models.registry import MuraNet

UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
"""Pickled weight files: never loaded, since unpickling can run code."""
SCHEMA_VERSION = 1
"""Version of the ``config.json`` layout; a config without ``schema`` is version 0 (mura-cli 0.1.0)."""
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelConfig:
    """A fine-tuned model's ``config.json``: architecture, preprocessing, operating point and provenance.

    Attributes:
        arch: plain or timm architecture name, as given to ``mura train --arch``.
        timm_name: the timm model it resolved to (``None`` in configs that do not say).
        num_classes: outputs of the head (one logit: abnormal).
        label_names: what the classes mean, negative first.
        input_size: ``(channels, height, width)`` of the network input.
        mean: per-channel normalization mean.
        std: per-channel normalization std.
        transform: the preprocessing (eval transform built from it).
        dropout: dropout before the linear head (part of the network's structure).
        output_stride: the backbone's output stride when not its own (``None``: 32).
        part: the body part trained on, or ``all``.
        parts: the body parts seen in training.
        threshold: probability at or above which a study is labelled abnormal.
        tta: average each image with its horizontal flip at inference (set when it paid out of fold).
        temperature: image probabilities become ``sigmoid(logit(p) / temperature)`` (fitted out of fold; 1 = none).
        operating_points: study thresholds that hold a sensitivity or specificity out of fold
            (``{"sens:0.9": t, "spec:0.9": t}``), for ``predict --threshold sens:0.9``.
        weights: the initial weights training started from (``None`` when not recorded).
        metrics: tune-split metrics of the saved epoch.
        library: the library that wrote the config.
        version: its version (``None`` when not recorded).
        schema: layout version of this config (:data:`SCHEMA_VERSION` when written now).
    """

    arch: str
    timm_name: str | None = None
    num_classes: int = 1
    label_names: tuple[str, ...] = ("normal", "abnormal")
    input_size: tuple[int, int, int] = (3, 320, 320)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    transform: TransformConfig = field(default_factory=TransformConfig)
    dropout: float = 0.0
    output_stride: int | None = None
    part: str = "all"
    parts: tuple[str, ...] = ("all",)
    threshold: float = 0.5
    tta: bool = False
    temperature: float = 1.0
    operating_points: Mapping[str, float] = field(default_factory=dict, hash=False)
    weights: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict, hash=False)
    library: str = "mura-cli"
    version: str | None = None
    schema: int = SCHEMA_VERSION

    @classmethod
    def from_json(cls, source: str | Path | Mapping[str, Any]) -> ModelConfig:
        """Read a ``config.json`` (a file, the folder holding it, or its parsed dict).

        Configs without ``schema`` (version 0) load with the defaults mura-cli 0.1.0 assumed: threshold 0.5,
        part ``all``, parts ``[part]``, dropout 0, the default transform. Unknown keys are ignored.

        Raises:
            ModelError: no such file, damaged JSON, or no ``arch`` (not a mura model config).
        """
        if isinstance(source, Mapping):
            where, data = "config", dict(source)
        else:
            path = Path(source)
            path = path / CONFIG_NAME if path.is_dir() else path
            where, data = str(path), _read_config(path)
        if "arch" not in data:
            raise ModelError(f"{where}: not a mura model config (no 'arch'); was it written by mura-cli?")
        if data.get("kind") == BACKBONE_KIND:
            folder = Path(where).parent if where.endswith(CONFIG_NAME) else where
            raise ModelError(
                f"{folder}: a backbone from `mura pretrain`, not an abnormality model; fine-tune it first: "
                f"mura train --weights {folder}"
            )
        return cls(**_normalized(data, where))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict written as ``config.json`` (tuples become lists; an unset ``output_stride``, the
        arch's own, ``tta`` when off, temperature 1 and no operating points are left out, so configs of ordinary
        models keep their keys)."""
        out = to_dict(self)
        if out.get("output_stride") is None:
            out.pop("output_stride", None)
        if not out.get("tta"):
            out.pop("tta", None)
        if out.get("temperature") == 1.0:
            out.pop("temperature", None)
        if not out.get("operating_points"):
            out.pop("operating_points", None)
        return out


def _read_config(path: Path) -> dict[str, Any]:
    return read_json(
        path,
        "model config",
        error=ModelError,
        missing="{folder}: no " + CONFIG_NAME + "; is this a mura run folder or model repo?",
        invalid="{path}: damaged ({msg}); re-download or re-train",
        not_object="{path}: not a mura model config (no 'arch'); was it written by mura-cli?",
    )


def _normalized(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Keyword arguments for :class:`ModelConfig` from a parsed config of any schema version."""
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        log.debug("%s: ignoring unknown keys %s", where, ", ".join(unknown))
    schema = int(data.get("schema", 0))
    if schema > SCHEMA_VERSION:
        log.warning("%s: written by a newer mura-cli (schema %d); reading the fields this one knows", where, schema)
    transform = from_dict(TransformConfig, data.get("transform") or {})
    part = str(data.get("part", "all"))
    size = transform.output_size
    return {
        **{k: v for k, v in data.items() if k in known},
        "arch": str(data["arch"]),
        "transform": transform,
        "part": part,
        "parts": tuple(str(p) for p in data.get("parts") or [part]),
        "threshold": float(data.get("threshold", 0.5)),
        "tta": bool(data.get("tta", False)),
        "temperature": float(data.get("temperature", 1.0)),
        "operating_points": {str(k): float(v) for k, v in (data.get("operating_points") or {}).items()},
        "dropout": float(data.get("dropout", 0.0)),
        "output_stride": None if data.get("output_stride") is None else int(data["output_stride"]),
        "num_classes": int(data.get("num_classes", 1)),
        "label_names": tuple(str(n) for n in data.get("label_names", ModelConfig.label_names)),
        "input_size": tuple(int(n) for n in data.get("input_size", (3, size, size))),
        "mean": tuple(float(m) for m in data.get("mean", transform.mean)),
        "std": tuple(float(s) for s in data.get("std", transform.std)),
        "metrics": dict(data.get("metrics") or {}),
        "schema": schema,
    }


# ------------------------------------------------------------------------------------------ weights


def save_weights(model: torch.nn.Module, path: str | Path, *, arch: str) -> Path:
    """Write ``model``'s state dict as safetensors at ``path`` (through a temporary file, so never half-written)."""
    from safetensors.torch import save_file

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "arch": arch})
    return out


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file.

    Raises:
        ModelError: not a readable safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable safetensors file ({short_error(exc)})") from None


@dataclass(frozen=True)
class LoadReport:
    """What loading backbone weights did."""

    source: str
    file: str | None
    loaded: int
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]


def load_backbone_state(model: MuraNet, state: Mapping[str, torch.Tensor], source: str, file: str) -> LoadReport:
    """Load ImageNet (or our own) weights into ``model.backbone``; the source's classifier is dropped.

    Raises:
        ModelError: when the weights do not fit the architecture.
    """
    if any(k.startswith("backbone.") for k in state):  # one of our own MuraNet checkpoints
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    own = model.backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ModelError(f"{file}: none of its tensors fit {model.arch}; are these weights for another arch?")
    missing = tuple(k for k in own if k not in usable)
    unexpected = tuple(k for k in state if k not in usable)
    if len(missing) > 0.1 * len(own):
        raise ModelError(
            f"{file}: {len(missing)} of {len(own)} backbone tensors missing or mis-shaped for "
            f"{model.arch} (e.g. {', '.join(missing[:3])}); are these weights for another arch?"
        )
    model.backbone.load_state_dict(usable, strict=False)
    return LoadReport(source=source, file=file, loaded=len(usable), missing=missing, unexpected=unexpected)


# ------------------------------------------------------------------------------------------ run models


def save_run_model(model: torch.nn.Module, folder: str | Path, config: ModelConfig) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (the Hub layout) into ``folder``; returns the weights path."""
    out = Path(folder)
    weights = save_weights(model, out / WEIGHTS_NAME, arch=config.arch)
    write_json(out / CONFIG_NAME, config.to_dict())
    return weights


def load_run_config(folder: str | Path) -> ModelConfig:
    """The config of a model folder whose weights are there too (without building the network, or torch).

    Raises:
        ModelError: no config or weights in the folder.
    """
    folder = Path(folder)
    config = ModelConfig.from_json(folder / CONFIG_NAME)
    if not (folder / WEIGHTS_NAME).is_file():
        raise ModelError(f"{folder / WEIGHTS_NAME}: missing; the run has not saved a best model yet")
    return config


def load_run_model(folder: str | Path, map_location: str = "cpu") -> tuple[MuraNet, ModelConfig]:
    """Load a model folder (``model.safetensors`` + ``config.json``): ``(model in eval mode, its config)``.

    Raises:
        ModelError: no config or weights in the folder, or weights that do not fit the config's arch.
    """
    from mura_cli.models.registry import MuraNet

    config = load_run_config(folder)
    weights = Path(folder) / WEIGHTS_NAME
    model = MuraNet(config.arch, dropout=config.dropout, output_stride=config.output_stride)
    state = read_weights(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{weights}: does not fit {config.arch} ({short_error(exc)})") from None
    return model.to(map_location).eval(), config


__all__ = [
    "CONFIG_NAME",
    "SCHEMA_VERSION",
    "UNSAFE_SUFFIXES",
    "WEIGHTS_NAME",
    "LoadReport",
    "ModelConfig",
    "load_backbone_state",
    "load_run_config",
    "load_run_model",
    "read_weights",
    "save_run_model",
    "save_weights",
]
