"""``mura train --arch densenet169 --part elbow``: fine-tune a backbone on one body part or all."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mura_cli.cli import train_image as img
from mura_cli.cli._console import QuietOpt, choice, console, err_console, final, progress, quiet_output, typed_params
from mura_cli.cli.train_folds import fold_view, show_folds
from mura_cli.cli.train_stop import RunWatch, interrupted
from mura_cli.config import (
    FOLD_SCHEMES,
    KEEP_EPOCHS,
    OUTPUT_STRIDES,
    PRECISIONS,
    RESUME_SETTINGS,
    SCHEDULES,
    TrainConfig,
    TransformConfig,
    load_config_file,
    train_config,
)
from mura_cli.data.index import default_data
from mura_cli.errors import UsageError
from mura_cli.metrics import format_metric
from mura_cli.models.run_folder import CARD, CONFIG_NAME, CURVES, METRICS, WEIGHTS_NAME
from mura_cli.utils import plural

_T = TrainConfig()
_X = TransformConfig()
_TRAIN_FIELDS = {f.name for f in fields(TrainConfig)} - {"transform"}


_NOT_SETTINGS = {"resume", "config", "list_archs", "quiet"}


_Data = Annotated[
    str,
    typer.Option(
        "--data",
        "-d",
        help="`mura prepare` output folder, or a dataset root (indexed on the fly).",
        show_default="the dataset `mura prepare` wrote in ./.mura, else ./MURA-v1.1",
    ),
]
_Arch = Annotated[
    str,
    typer.Option(
        help="Backbone: vgg16, resnet50, densenet169, inception_v3, mobilenet, "
        "nasnet, ... or any timm name (see `mura archs`)."
    ),
]
_Part = Annotated[
    str,
    typer.Option(
        metavar="PART",
        help="Body part (elbow, finger, forearm, hand, humerus, shoulder, wrist; "
        "XR_ELBOW works; FracAtlas: hand, leg, hip, shoulder; a CSV dataset: its own) or all.",
    ),
]
_Weights = Annotated[
    str,
    typer.Option(
        help="default (timm Hub weights), hf-hub:org/name, a folder or .safetensors file, or none (random init)."
    ),
]
_Epochs = Annotated[int, typer.Option(help="Maximum epochs.")]
_BatchSize = Annotated[int, typer.Option(help="Images per step (per process under torchrun).")]
_Lr = Annotated[float, typer.Option(help="Adam learning rate.")]
_Beta1 = Annotated[float, typer.Option(help="Adam beta1.")]
_Beta2 = Annotated[float, typer.Option(help="Adam beta2.")]
_WeightDecay = Annotated[float, typer.Option(help="Adam weight decay.")]
_LrFactor = Annotated[float, typer.Option(help="LR factor on a tune-loss plateau.")]
_LrPatience = Annotated[int, typer.Option(help="Plateau epochs before the LR drops.")]
_EarlyStop = Annotated[int, typer.Option(help="Plateau epochs before stopping (0 = never).")]
_Schedule = Annotated[
    str,
    typer.Option(
        click_type=choice(SCHEDULES), help="plateau: LR / 10 when the tune loss stalls (paper); cosine: + warm-up."
    ),
]
_Warmup = Annotated[int, typer.Option(help="Epochs of linear LR warm-up (cosine).")]
_LrMin = Annotated[float, typer.Option(help="LR floor (plateau) or end (cosine).")]
_Ema = Annotated[float, typer.Option(help="EMA decay of the weights per step; the average is saved (0 = off).")]
_Keep = Annotated[str, typer.Option(click_type=choice(KEEP_EPOCHS), help="Which epoch is the model (best: tune loss).")]
_Folds = Annotated[
    int, typer.Option(help="K models by patient-level K-fold CV: an ensemble with out-of-fold scores (0 = one model).")
]
_FoldsBy = Annotated[
    str,
    typer.Option(
        click_type=choice(FOLD_SCHEMES),
        help="How --folds deals patients: random; later: fold K is the last block of patient numbers per label; "
        "region: one part per fold.",
    ),
]
_Nested = Annotated[
    bool,
    typer.Option(
        "--nested/--no-nested",
        help="With --folds K, also train the K(K-1)/2 inner models of nested CV: an estimate no choice saw.",
    ),
]
_OutputStride = Annotated[
    int | None,
    typer.Option(
        metavar="[" + "|".join(map(str, OUTPUT_STRIDES)) + "]",
        help="Backbone output stride: 16 or 8 for a finer CAM (dilated last stages).",
        show_default="32, the backbone's",
    ),
]
_Dropout = Annotated[float, typer.Option(help="Dropout before the linear head.")]
_LabelSmoothing = Annotated[float, typer.Option(help="Train on targets pulled this far towards 0.5 (0 = off).")]
_BoxLoss = Annotated[
    float,
    typer.Option(help="Weight of a loss pulling the CAM of abnormal images into their ground-truth boxes (0 = off)."),
]
_WeightedLoss = Annotated[
    bool, typer.Option("--weighted-loss/--no-weighted-loss", help="Weight BCE per body part by label counts.")
]
_Threshold = Annotated[
    float | None,
    typer.Option(
        show_default="0.5; with --folds, max kappa out of fold", help="Abnormal threshold stored with the model."
    ),
]
_Seed = Annotated[int, typer.Option(help="Seed of init, sampling and augmentation.")]
_Deterministic = Annotated[
    bool, typer.Option("--deterministic/--no-deterministic", help="Deterministic algorithms (identical CPU runs).")
]
_Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
_Workers = Annotated[int, typer.Option(help="Data-loader processes (-1 = per core, at most 8).")]
_Precision = Annotated[
    str,
    typer.Option(
        click_type=choice(PRECISIONS),
        help="auto: bf16 autocast on GPUs and on CPUs with AMX or AVX512-BF16, else fp32.",
    ),
]
_Amp = Annotated[bool, typer.Option("--amp/--no-amp", help="--no-amp forces fp32 (see --precision).")]
_LimitBatches = Annotated[int, typer.Option(help="Batches per epoch at most (0 = all).")]
_Cache = Annotated[str, typer.Option(help="auto, none, or a `mura prepare --cache` folder.")]
_Out = Annotated[str, typer.Option(help="Folder for run folders.")]
_Name = Annotated[str | None, typer.Option(help="Run name.", show_default="<arch>-<part>, numbered if taken")]
_ExistOk = Annotated[bool, typer.Option("--exist-ok", help="Overwrite a run of the same --name.")]
_Resume = Annotated[
    Path | None,
    typer.Option(
        help="Continue an interrupted run folder (may change --epochs, --early-stop, --device, --workers).",
        show_default="a new run",
    ),
]
_Config = Annotated[
    Path | None,
    typer.Option(
        help=f"JSON or TOML file of settings (keys as in {CONFIG_NAME}; flags you type override it).",
        show_default="none",
    ),
]
_ListArchs = Annotated[bool, typer.Option("--list-archs", is_eager=True, help="List the backbones and exit.")]


def train(
    ctx: typer.Context,
    data: _Data = _T.data,
    *,
    arch: _Arch = _T.arch,
    part: _Part = _T.part,
    weights: _Weights = _T.weights,
    epochs: _Epochs = _T.epochs,
    batch_size: _BatchSize = _T.batch_size,
    lr: _Lr = _T.lr,
    beta1: _Beta1 = _T.beta1,
    beta2: _Beta2 = _T.beta2,
    weight_decay: _WeightDecay = _T.weight_decay,
    lr_factor: _LrFactor = _T.lr_factor,
    lr_patience: _LrPatience = _T.lr_patience,
    early_stop: _EarlyStop = _T.early_stop,
    schedule: _Schedule = _T.schedule,
    warmup: _Warmup = _T.warmup,
    lr_min: _LrMin = _T.lr_min,
    ema: _Ema = _T.ema,
    keep: _Keep = _T.keep,
    folds: _Folds = _T.folds,
    folds_by: _FoldsBy = _T.folds_by,
    nested: _Nested = _T.nested,
    dropout: _Dropout = _T.dropout,
    label_smoothing: _LabelSmoothing = _T.label_smoothing,
    box_loss: _BoxLoss = _T.box_loss,
    output_stride: _OutputStride = _T.output_stride,
    weighted_loss: _WeightedLoss = _T.weighted_loss,
    threshold: _Threshold = _T.threshold,
    seed: _Seed = _T.seed,
    deterministic: _Deterministic = _T.deterministic,
    device: _Device = _T.device,
    workers: _Workers = _T.workers,
    precision: _Precision = _T.precision,
    amp: _Amp = _T.amp,
    limit_batches: _LimitBatches = _T.limit_batches,
    cache: _Cache = _T.cache,
    out: _Out = _T.out,
    name: _Name = _T.name,
    exist_ok: _ExistOk = _T.exist_ok,
    resume: _Resume = None,
    config: _Config = None,
    size: img.Size = _X.size,
    resize: img.Resize = _X.resize,
    center_crop: img.CenterCrop = _X.center_crop,
    hflip: img.Hflip = _X.hflip,
    vflip: img.Vflip = _X.vflip,
    rotation: img.Rotation = _X.rotation,
    sharpen: img.Sharpen = _X.sharpen,
    blur: img.Blur = _X.blur_sigma,
    equalize: img.Equalize = _X.equalize,
    clahe: img.Clahe = _X.clahe,
    crop_scale: img.CropScale = _X.crop_scale,
    gamma: img.Gamma = _X.gamma,
    contrast: img.Contrast = _X.contrast,
    noise: img.Noise = _X.noise,
    list_archs: _ListArchs = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune a backbone on one body part or all.

    The MURA paper's recipe by default; with --weights none or a mura pretrain folder, the random-init recipe.
    Settings: defaults < --config file < the flags you type.
    The run folder gets model.safetensors, config.json, a model card, metrics.csv and curves.png.
    """
    if list_archs:
        from mura_cli.cli.archs import archs

        archs()
        return
    cfg, changes = _resolve(ctx, resume, config)  # a bad setting is refused before torch is imported
    with quiet_output(quiet):
        run_dir = _train(cfg, changes, resume)
    if quiet and run_dir is not None:
        final(f"saved {run_dir}")


def _train(cfg: TrainConfig, changes: dict[str, Any], resume: Path | None) -> Path | None:
    """Train with progress and tables; the run folder (``None`` on a torchrun rank other than 0)."""
    from mura_cli.engine.results import TrainResult
    from mura_cli.engine.training.distributed import is_main_process
    from mura_cli.engine.training.train_job import is_folds_job, train

    main_rank = is_main_process()  # under torchrun only rank 0 talks
    if cfg.weights.lower() == "none" and resume is None and main_rank:
        err_console.print(
            "[bold yellow]warning:[/] --weights none: training from random initialization; expect far "
            "lower accuracy than from ImageNet weights"
        )

    bar, table = progress(), epoch_table()
    on_start, on_batch, on_epoch = train_view(bar, {}, table)
    on_start = watch = RunWatch(on_start)
    folds = is_folds_job(cfg, resume)
    on_fold = fold_view(bar) if folds else None
    try:
        result = train(
            cfg,
            resume=resume,
            changes=changes,
            on_start=on_start,
            on_batch=on_batch,
            on_epoch=on_epoch,
            on_fold=on_fold,
        )
    except KeyboardInterrupt:
        if folds:
            raise
        raise interrupted(watch.run or resume, resuming=resume is not None) from None
    finally:
        bar.stop()
    if not isinstance(result, TrainResult):
        return show_folds(result)
    if not main_rank:
        return None
    console.print(table)
    b = result.best
    console.print(
        f"best epoch {b.epoch}: tune kappa {format_metric(b.tune_kappa)}, AUROC {format_metric(b.tune_auroc)} "
        f"(study level); {'stopped early; ' if result.stopped_early else ''}{result.seconds:.0f} s"
    )
    console.print(
        f"saved [bold]{result.run_dir}[/] ({WEIGHTS_NAME}, {CONFIG_NAME}, {CARD}, {METRICS}, {CURVES}, "
        "last state for --resume)",
        soft_wrap=True,
    )
    return result.run_dir


def _resolve(ctx: typer.Context, resume: Path | None, config: Path | None) -> tuple[TrainConfig, dict[str, Any]]:
    """The run's config: defaults < --config file < flags typed; on resume only RESUME_SETTINGS may be typed."""
    given = typed_params(ctx)
    if resume is not None:
        refused = sorted(given - set(RESUME_SETTINGS) - _NOT_SETTINGS | ({"config"} & given))
        if refused:
            names = ", ".join("--" + n.replace("_", "-") for n in refused)
            allowed = ", ".join("--" + n.replace("_", "-") for n in RESUME_SETTINGS)
            raise UsageError(
                f"--resume {resume}: a resumed run keeps its own settings; drop {names} (only {allowed} can change)"
            )
        changes = {k: ctx.params[k] for k in RESUME_SETTINGS if k in given}
        return TrainConfig(), changes
    flags: dict[str, Any] = {k: v for k, v in ctx.params.items() if k in given and k in _TRAIN_FIELDS}
    flags["transform"] = {img.TRANSFORM_FLAGS[k]: ctx.params[k] for k in given if k in img.TRANSFORM_FLAGS}
    cfg = train_config(load_config_file(config, TrainConfig) if config else {}, flags)
    if not cfg.data:  # `mura train --arch densenet169 --part elbow` in the folder where `mura prepare` ran
        cfg = replace(cfg, data=str(default_data()))
        err_console.print(f"data: {cfg.data} (found here; --data for another)", soft_wrap=True)
    return cfg, {}


def epoch_table() -> Table:
    table = Table(title="training (tune metrics at study level)")
    for col in ("epoch", "train loss", "tune loss", "kappa", "AUROC", "img AUROC", "lr", "s"):
        table.add_column(col, justify="right")
    return table


def train_view(bar: Any, tasks: dict[str, Any], table: Table) -> tuple[Any, Any, Any]:
    """The callbacks that draw a training run: its header, batch progress bars and one line per epoch."""

    def on_start(info: dict[str, Any]) -> None:
        console.print(
            f"run [bold]{info['run']}[/]: {info['arch']} on {info['part']}, {info['train_images']} train / "
            f"{plural(info['tune_images'], 'tune image')} ({info['train_studies']} / "
            f"{plural(info['tune_studies'], 'study', 'studies')}), "
            f"{info['input']} px, device {info['device']} x{info['world_size']}, {info['precision']}",
            soft_wrap=True,
        )
        console.print(
            f"weights: {info['weights']}; cache: {info['cache'] or 'none (decoding originals)'}", soft_wrap=True
        )
        bar.start()

    def on_batch(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done, total=total)

    def on_epoch(e: Any) -> None:
        for t in tasks.values():
            bar.remove_task(t)
        tasks.clear()
        mark = " *" if e.best else ""
        line = (
            f"{e.epoch}{mark}",
            format_metric(e.train_loss),
            format_metric(e.tune_loss),
            format_metric(e.tune_kappa),
            format_metric(e.tune_auroc),
            format_metric(e.tune_image_auroc),
            f"{e.lr:.0e}",
            f"{e.seconds:.0f}",
        )
        table.add_row(*line)
        bar.console.print(
            f"epoch {line[0]}: train loss {line[1]}, tune loss {line[2]}, kappa {line[3]}, AUROC {line[4]}, "
            f"image AUROC {line[5]}, lr {line[6]}, {line[7]} s",
            soft_wrap=True,
        )

    return on_start, on_batch, on_epoch
