"""Frozen configuration dataclasses: every default lives here, once.

Precedence is ``defaults < --config file < CLI flags``, done with :func:`merge`. Each run writes its resolved
config as JSON (:func:`to_dict`), and reads it back with :func:`from_dict`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mura_cli.config_file import check_settings, field_default, load_config_file
from mura_cli.errors import UsageError
from mura_cli.hardware import PRECISIONS
from mura_cli.models.run_folder import RunFolder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The closed sets of values a setting takes; the CLI offers exactly these as choices.
RESIZE_MODES = ("stretch", "shorter")
CACHE_MODES = ("shorter", "square")
SCHEDULES = ("plateau", "cosine")
FOLD_SCHEMES = ("random", "later", "region")
KEEP_EPOCHS = ("best", "last")
OUTPUT_STRIDES = (8, 16, 32)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


@dataclass(frozen=True)
class TransformConfig:
    """Image preprocessing and augmentation. Defaults are the MURA paper's recipe.

    Attributes:
        size: network input side in pixels (paper: 320).
        resize: ``stretch`` scales the whole image to size x size (paper); ``shorter`` scales the shorter side
            to ``size`` and center-crops the longer one (aspect kept).
        center_crop: crop a centered square of this side after resizing (``None``: no crop).
        hflip: random horizontal flips (training only).
        vflip: random vertical flips (training only).
        rotation: random rotation range in degrees, +/- (training only; paper: 30).
        sharpen: unsharp-mask amount (0 = off).
        blur_sigma: Gaussian blur sigma in input-size pixels (0 = off).
        equalize: global histogram equalization.
        clahe: contrast-limited adaptive histogram equalization with this clip limit (0 = off; 0.01 is typical).
        crop_scale: random resized crops (training only): each crop keeps between this fraction of the image's
            area and all of it, at an aspect ratio between 3:4 and 4:3, scaled back to the input size (1 = off).
        gamma: random gamma (training only): the [0, 1] image to the power ``exp(u)``, ``u`` in ``[-gamma, gamma]``.
        contrast: random contrast and brightness (training only): contrast scaled by ``1 + u``, brightness
            shifted by ``u / 2``, each ``u`` uniform in ``[-contrast, contrast]`` (0 = off).
        noise: Gaussian noise (training only) with this standard deviation, in units of the [0, 1] image
            (quantum noise of a low-dose plate; 0 = off).
        mean: per-channel normalization mean (the backbone's pretrained config).
        std: per-channel normalization std.
    """

    size: int = 320
    resize: str = "stretch"
    center_crop: int | None = None
    hflip: bool = True
    vflip: bool = False
    rotation: float = 30.0
    sharpen: float = 0.0
    blur_sigma: float = 0.0
    equalize: bool = False
    clahe: float = 0.0
    crop_scale: float = 1.0
    gamma: float = 0.0
    contrast: float = 0.0
    noise: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.size < 16:
            raise UsageError(f"--size {self.size}: must be at least 16 pixels")
        if self.resize not in RESIZE_MODES:
            raise UsageError(f"--resize {self.resize}: expected 'stretch' or 'shorter'")
        if self.center_crop is not None and not 16 <= self.center_crop <= self.size:
            raise UsageError(f"--center-crop {self.center_crop}: must be between 16 and --size ({self.size})")
        if not 0 <= self.rotation <= 180:
            raise UsageError(f"--rotation {self.rotation}: expected degrees between 0 and 180")
        if min(self.sharpen, self.blur_sigma, self.clahe, self.gamma, self.contrast, self.noise) < 0:
            raise UsageError("--sharpen, --blur, --clahe, --gamma, --contrast and --noise take values >= 0")
        if not (0.05 <= self.crop_scale <= 1 and self.gamma <= 1 and self.contrast <= 1 and self.noise <= 0.5):
            raise UsageError("--crop-scale takes 0.05-1, --gamma and --contrast at most 1, --noise at most 0.5")

    @property
    def output_size(self) -> int:
        """Side of the square tensor the model sees."""
        return self.center_crop or self.size


@dataclass(frozen=True)
class PrepareConfig:
    """``mura prepare``: where the data is, where the index goes, how train is split, what is cached."""

    root: str = ""
    out: str | None = None
    tune_fraction: float = 0.1
    seed: int = 0
    check_files: bool = True
    cache_size: int | None = None
    cache_mode: str = "shorter"
    workers: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.tune_fraction < 1:
            raise UsageError(f"--tune-fraction {self.tune_fraction}: must be in [0, 1)")
        if self.cache_size is not None and self.cache_size < 16:
            raise UsageError(f"--cache {self.cache_size}: must be at least 16 pixels")
        if self.cache_mode not in CACHE_MODES:
            raise UsageError(f"--cache-mode {self.cache_mode}: expected 'shorter' or 'square'")


@dataclass(frozen=True)
class TrainConfig:
    """``mura train``: data, backbone, the MURA paper's recipe (the defaults) and the run folder.

    Attributes:
        data: an index folder from ``mura prepare`` or a dataset root (prepared on the fly).
        part: body part to train on, or ``all``.
        arch: plain (``densenet169``) or timm architecture name.
        weights: ``default`` (timm's Hub weights for the arch), ``hf-hub:org/name``, a folder or
            ``.safetensors`` file, or ``none`` (random init).
        epochs: maximum epochs (early stopping usually ends sooner).
        batch_size: images per step (per process under torchrun).
        lr: Adam learning rate (paper: 1e-4).
        beta1: Adam beta1.
        beta2: Adam beta2.
        weight_decay: Adam weight decay.
        schedule: ``plateau`` (the paper: divide the learning rate by ``1/lr_factor`` when the tune loss stalls)
            or ``cosine`` (linear warm-up, then cosine decay to ``lr_min`` per step; no tune split needed).
        warmup: epochs of linear learning-rate warm-up (cosine).
        lr_min: the learning rate never goes below this (plateau floor, cosine end).
        lr_factor: learning-rate factor when the tune loss plateaus (paper: divided by 10).
        lr_patience: epochs without tune-loss improvement before the learning rate drops.
        early_stop: epochs without tune-loss improvement before training stops (0 = never).
        ema: decay of an exponential moving average of the weights, updated every step; the average is what is
            evaluated and saved (0 = off).
        keep: which epoch becomes the model: ``best`` (lowest tune loss) or ``last``.
        folds: train K models by patient-level K-fold cross-validation (0 = one model); the run folder holds
            them as an ensemble with out-of-fold predictions for every training study.
        fold: which fold this run trains (1..folds; set by ``--folds``, 0 = not a fold).
        inner: a second fold left out of training (nested cross-validation's inner split: this run's predictions
            on it choose what is then applied to ``fold``; 0 = none; set by ``--nested``).
        folds_by: how patients are dealt to folds (``random``, ``later``: the last block of patient numbers per
            label is fold ``folds``, a proxy for a later intake; ``region``: leave one part/region out).
        nested: with ``folds``, also train the inner models that nested cross-validation needs, so the stored
            estimate comes from folds that none of the run's choices (flips, threshold, calibration) saw.
        dropout: dropout before the linear head.
        label_smoothing: train on targets pulled this far towards 0.5 (``y (1 - s) + s / 2``; MURA's labels come
            from one radiologist's report, and some are wrong; 0 = off).
        box_loss: weight of a term that pulls the class activation map of abnormal training images inside their
            ground-truth boxes (``-log`` of the softmax-CAM mass on cells a box touches; images without boxes train
            as before; 0 = off). Tune images never enter it.
        output_stride: backbone output stride (16 or 8 give a finer CAM on archs that support it; None: 32).
        weighted_loss: weight BCE per body part by its label counts (paper).
        threshold: probability threshold for the abnormal label, stored with the model (``None``: 0.5 for one
            model; with ``folds``, the one that maximises kappa on the out-of-fold predictions).
        seed: seed of initialization, sampling and augmentation.
        deterministic: deterministic algorithms (two CPU runs give identical weights).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        workers: data-loader processes (-1 = one per core, at most 8).
        precision: ``auto`` (bf16 on CUDA and on CPUs with native bf16, AMX or AVX512-BF16; fp32 elsewhere),
            ``fp32`` or ``bf16`` (autocast: fp32 master weights, no loss scaling). The run records the resolved
            one, so ``--resume`` continues in it.
        amp: ``False`` forces fp32 (``--no-amp``, from before ``precision``).
        channels_last: channels-last memory format.
        limit_batches: stop each epoch after this many batches (0 = all); for smoke tests.
        cache: ``auto`` (use ``mura prepare --cache`` output when it fits), ``none``, or a cache folder.
        out: folder holding the run folders.
        name: run name (default ``<arch>-<part>``, numbered when taken).
        exist_ok: reuse an existing run folder of the same name (overwrites it).
        transform: preprocessing and augmentation.
    """

    data: str = ""
    part: str = "all"
    arch: str = "densenet169"
    weights: str = "default"
    epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    schedule: str = "plateau"
    warmup: int = 0
    lr_min: float = 1e-6
    lr_factor: float = 0.1
    lr_patience: int = 1
    early_stop: int = 10
    ema: float = 0.0
    keep: str = "best"
    folds: int = 0
    fold: int = 0
    inner: int = 0
    folds_by: str = "random"
    nested: bool = False
    dropout: float = 0.0
    label_smoothing: float = 0.0
    box_loss: float = 0.0
    output_stride: int | None = None
    weighted_loss: bool = True
    threshold: float | None = None
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    workers: int = -1
    precision: str = "auto"
    amp: bool = True
    channels_last: bool = True
    limit_batches: int = 0
    cache: str = "auto"
    out: str = "runs"
    name: str | None = None
    exist_ok: bool = False
    transform: TransformConfig = TransformConfig()

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise UsageError("--epochs and --batch-size must be at least 1")
        if self.lr <= 0 or not 0 < self.lr_factor < 1:
            raise UsageError("--lr must be > 0 and --lr-factor in (0, 1)")
        if self.output_stride is not None and self.output_stride not in OUTPUT_STRIDES:
            raise UsageError(f"--output-stride {self.output_stride}: expected 8, 16 or 32")
        if self.box_loss < 0:
            raise UsageError(f"--box-loss {self.box_loss}: must be >= 0")
        if not 0 <= self.dropout < 1 or not 0 <= self.label_smoothing < 0.5:
            raise UsageError("--dropout must be in [0, 1) and --label-smoothing in [0, 0.5)")
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise UsageError(f"--threshold {self.threshold}: must be in (0, 1)")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"--schedule {self.schedule}: expected 'plateau' or 'cosine'")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision}: expected {', '.join(PRECISIONS)}")
        if self.keep not in KEEP_EPOCHS:
            raise UsageError(f"--keep {self.keep}: expected 'best' or 'last'")
        if not 0 <= self.ema < 1 or self.warmup < 0 or self.lr_min < 0:
            raise UsageError("--ema must be in [0, 1); --warmup and --lr-min must be >= 0")
        if self.folds == 1 or self.folds < 0 or not 0 <= self.fold <= self.folds:
            raise UsageError(f"--folds {self.folds}: expected 0 (one model) or at least 2")
        if not 0 <= self.inner <= self.folds or (self.inner and self.inner == self.fold):
            raise UsageError(f"inner fold {self.inner}: expected 0 or another fold of 1..{self.folds}")
        if self.folds_by not in FOLD_SCHEMES:
            raise UsageError(f"--folds-by {self.folds_by}: expected one of {', '.join(FOLD_SCHEMES)}")
        if self.nested and self.folds < 3:
            raise UsageError("--nested needs --folds 3 or more (each outer fold is chosen for on two others)")

    @property
    def needs_tune(self) -> bool:
        """Whether a decision depends on the tune split (plateau schedule, early stopping, best epoch)."""
        return self.schedule == "plateau" or self.early_stop > 0 or self.keep == "best"


RANDOM_INIT_RECIPE: dict[str, Any] = {
    "lr": 1e-3,
    "batch_size": 32,
    "epochs": 25,
    "schedule": "cosine",
    "warmup": 1,
    "lr_min": 1e-5,
    "early_stop": 0,
    "ema": 0.99,
    "keep": "last",
    "transform": {"rotation": 10.0},
}
"""The recipe for ``--weights none`` and a ``mura pretrain`` backbone: it replaces the paper's defaults, under
``--config`` and flags. The paper's recipe (lr 1e-4, plateau on a small tune split, early stopping) starves a
network learning from scratch: the plateau rule cuts the learning rate to nothing within a few noisy epochs. The
settings were chosen on 5-fold out-of-fold study AUROC and kappa on real humerus radiographs (rotation 10 over
the paper's 30: AUROC 0.917 against 0.899); the README gives the nested and later-block estimates.
"""


def train_config(file: Mapping[str, Any], flags: Mapping[str, Any]) -> TrainConfig:
    """``mura train``'s config: defaults < the random-init recipe (weights none or a pretrain folder) < file < flags."""
    weights = str(flags.get("weights", file.get("weights", TrainConfig.weights)))
    own = weights.lower() == "none" or RunFolder(Path(weights).expanduser()).is_backbone
    return resolve_config(TrainConfig, RANDOM_INIT_RECIPE if own else {}, file, flags)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-ready dict (tuples become lists)."""
    return json.loads(json.dumps(asdict(cfg)))


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict, ignoring unknown keys, restoring tuples and nested config dataclasses.

    Lenient on purpose: it reads configs that runs saved, possibly with another version of mura-cli. A file the
    user wrote is checked first (:func:`~mura_cli.config_file.load_config_file`).
    """
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        default = field_default(f)
        if is_dataclass(default) and not isinstance(default, type) and isinstance(value, dict):
            value = from_dict(type(default), value)
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def merge(cfg: T, overrides: dict[str, Any]) -> T:
    """``cfg`` with ``overrides`` applied; ``None`` values mean 'not given' and are skipped."""
    given = {k: v for k, v in overrides.items() if v is not None}
    names = {f.name for f in fields(cfg)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise UsageError(
            f"unknown {'setting' if len(unknown) == 1 else 'settings'} {', '.join(unknown)} for {type(cfg).__name__}"
        )
    return replace(cfg, **given)


RESUME_SETTINGS = ("epochs", "early_stop", "device", "workers")
"""What may change when a run is resumed; everything else is the run's own."""


def resolve_config(cls: type[T], *layers: Mapping[str, Any]) -> T:
    """Build ``cls`` from its defaults overlaid by ``layers`` in order (later wins; nested dicts merge).

    The CLI passes ``(file settings, flags the user typed)``, so precedence is
    ``defaults < --config file < flags``: a typed flag wins even when it equals its default.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        _deep_update(merged, layer)
    return from_dict(cls, merged)


def _deep_update(into: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for k, v in layer.items():
        if isinstance(v, Mapping) and isinstance(into.get(k), dict):
            _deep_update(into[k], v)
        else:
            into[k] = dict(v) if isinstance(v, Mapping) else v


from mura_cli.config_infer import (  # noqa: E402  (the inference configs, re-exported here)
    AGGREGATES,
    BENCHMARK_SPLITS,
    COMPONENTS,
    DEMO_WEIGHTS,
    HEATMAP_FORMATS,
    PREDICT_FORMATS,
    BenchmarkConfig,
    DemoConfig,
    InferConfig,
    LocalizeConfig,
    PredictConfig,
)

__all__ = [
    "AGGREGATES",
    "BENCHMARK_SPLITS",
    "CACHE_MODES",
    "COMPONENTS",
    "DEMO_WEIGHTS",
    "FOLD_SCHEMES",
    "HEATMAP_FORMATS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "KEEP_EPOCHS",
    "OUTPUT_STRIDES",
    "PRECISIONS",
    "PREDICT_FORMATS",
    "RANDOM_INIT_RECIPE",
    "RESIZE_MODES",
    "RESUME_SETTINGS",
    "SCHEDULES",
    "BenchmarkConfig",
    "DemoConfig",
    "InferConfig",
    "LocalizeConfig",
    "PredictConfig",
    "PrepareConfig",
    "TrainConfig",
    "TransformConfig",
    "check_settings",
    "from_dict",
    "load_config_file",
    "merge",
    "resolve_config",
    "to_dict",
    "train_config",
]
