"""``mura train --arch densenet169 --part elbow``: fine-tune a backbone on one body part or all."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mura_cli.cli._console import console, err_console, progress, typed_params
from mura_cli.config import RESUME_SETTINGS, TrainConfig, TransformConfig, load_config_file, resolve_config
from mura_cli.errors import UsageError
from mura_cli.metrics import format_metric
from mura_cli.utils import plural

_T = TrainConfig()
_X = TransformConfig()
_TRAIN_FIELDS = {f.name for f in fields(TrainConfig)} - {"transform"}


_TRANSFORM_FLAGS = {
    "size": "size",
    "resize": "resize",
    "center_crop": "center_crop",
    "hflip": "hflip",
    "vflip": "vflip",
    "rotation": "rotation",
    "sharpen": "sharpen",
    "blur": "blur_sigma",
    "equalize": "equalize",
    "clahe": "clahe",
}
"""``mura train`` flags that set a field of ``TrainConfig.transform`` (flag name -> field name)."""
_NOT_SETTINGS = {"resume", "config", "list_archs"}


def train(
    ctx: typer.Context,
    data: Annotated[
        str, typer.Option("--data", "-d", help="`mura prepare` output folder, or a dataset root (indexed on the fly).")
    ] = _T.data,
    *,
    arch: Annotated[
        str,
        typer.Option(
            help="Backbone: vgg16, resnet50, densenet169, inception_v3, mobilenet, "
            "nasnet, ... or any timm name (see `mura archs`)."
        ),
    ] = _T.arch,
    part: Annotated[
        str,
        typer.Option(
            help="Body part (elbow, finger, forearm, hand, humerus, shoulder, wrist; "
            "XR_ELBOW works; FracAtlas: hand, leg, hip, shoulder) or all."
        ),
    ] = _T.part,
    weights: Annotated[
        str,
        typer.Option(
            help="default (timm Hub weights), hf-hub:org/name, a folder or .safetensors file, or none (random init)."
        ),
    ] = _T.weights,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = _T.epochs,
    batch_size: Annotated[int, typer.Option(help="Images per step (per process under torchrun).")] = _T.batch_size,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = _T.lr,
    beta1: Annotated[float, typer.Option(help="Adam beta1.")] = _T.beta1,
    beta2: Annotated[float, typer.Option(help="Adam beta2.")] = _T.beta2,
    weight_decay: Annotated[float, typer.Option(help="Adam weight decay.")] = _T.weight_decay,
    lr_factor: Annotated[float, typer.Option(help="LR factor on a tune-loss plateau.")] = _T.lr_factor,
    lr_patience: Annotated[int, typer.Option(help="Plateau epochs before the LR drops.")] = _T.lr_patience,
    early_stop: Annotated[int, typer.Option(help="Plateau epochs before stopping (0 = never).")] = _T.early_stop,
    dropout: Annotated[float, typer.Option(help="Dropout before the linear head.")] = _T.dropout,
    weighted_loss: Annotated[
        bool, typer.Option("--weighted-loss/--no-weighted-loss", help="Weight BCE per body part by label counts.")
    ] = _T.weighted_loss,
    threshold: Annotated[float, typer.Option(help="Abnormal threshold stored with the model.")] = _T.threshold,
    seed: Annotated[int, typer.Option(help="Seed of init, sampling and augmentation.")] = _T.seed,
    deterministic: Annotated[
        bool, typer.Option("--deterministic/--no-deterministic", help="Deterministic algorithms (identical CPU runs).")
    ] = _T.deterministic,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = _T.device,
    workers: Annotated[int, typer.Option(help="Data-loader processes (-1 = per core, at most 8).")] = _T.workers,
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="bf16 autocast on CUDA.")] = _T.amp,
    limit_batches: Annotated[int, typer.Option(help="Batches per epoch at most (0 = all).")] = _T.limit_batches,
    cache: Annotated[str, typer.Option(help="auto, none, or a `mura prepare --cache` folder.")] = _T.cache,
    out: Annotated[str, typer.Option(help="Folder for run folders.")] = _T.out,
    name: Annotated[str | None, typer.Option(help="Run name (default <arch>-<part>, numbered if taken).")] = _T.name,
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="Overwrite a run of the same --name.")] = _T.exist_ok,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue an interrupted run folder (may change --epochs, --early-stop, --device, --workers)."
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="JSON file of settings (flags you type override it).")] = None,
    size: Annotated[int, typer.Option(help="Input size in pixels (paper: 320).")] = _X.size,
    resize: Annotated[str, typer.Option(help="stretch (paper) or shorter (+ center crop).")] = _X.resize,
    center_crop: Annotated[int | None, typer.Option(help="Center crop side after resize.")] = _X.center_crop,
    hflip: Annotated[bool, typer.Option("--hflip/--no-hflip", help="Random horizontal flips.")] = _X.hflip,
    vflip: Annotated[bool, typer.Option("--vflip/--no-vflip", help="Random vertical flips.")] = _X.vflip,
    rotation: Annotated[float, typer.Option(help="Random rotation range in degrees (paper: 30).")] = _X.rotation,
    sharpen: Annotated[float, typer.Option(help="Unsharp-mask amount (0 = off).")] = _X.sharpen,
    blur: Annotated[float, typer.Option(help="Gaussian blur sigma (0 = off).")] = _X.blur_sigma,
    equalize: Annotated[bool, typer.Option("--equalize/--no-equalize", help="Histogram equalization.")] = _X.equalize,
    clahe: Annotated[float, typer.Option(help="CLAHE clip limit (0 = off; 0.01 typical).")] = _X.clahe,
    list_archs: Annotated[bool, typer.Option("--list-archs", help="List the backbones and exit.")] = False,
) -> None:
    """Fine-tune a backbone on one body part or all (the MURA paper's recipe by default)."""
    if list_archs:
        from mura_cli.cli.archs import archs

        archs()
        return
    from mura_cli.engine.train import fit

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
        cfg = TrainConfig()
    else:
        changes = {}
        flags: dict[str, Any] = {k: v for k, v in ctx.params.items() if k in given and k in _TRAIN_FIELDS}
        flags["transform"] = {_TRANSFORM_FLAGS[k]: ctx.params[k] for k in given if k in _TRANSFORM_FLAGS}
        cfg = resolve_config(TrainConfig, load_config_file(config) if config else {}, flags)
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 talks
    if cfg.weights.lower() == "none" and resume is None and main_rank:
        err_console.print(
            "[bold yellow]warning:[/] --weights none: training from random initialization; expect far "
            "lower accuracy than from ImageNet weights"
        )

    bar = progress()
    tasks: dict[str, Any] = {}

    def on_start(info: dict[str, Any]) -> None:
        console.print(
            f"run [bold]{info['run']}[/]: {info['arch']} on {info['part']}, {info['train_images']} train / "
            f"{plural(info['tune_images'], 'tune image')} ({info['train_studies']} / "
            f"{plural(info['tune_studies'], 'study', 'studies')}), "
            f"{info['input']} px, device {info['device']} x{info['world_size']}",
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

    table = Table(title="training (tune metrics at study level)")
    for col in ("epoch", "train loss", "tune loss", "kappa", "AUROC", "img AUROC", "lr", "s"):
        table.add_column(col, justify="right")

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

    try:
        result = fit(cfg, resume=resume, changes=changes, on_epoch=on_epoch, on_batch=on_batch, on_start=on_start)
    finally:
        bar.stop()
    if not main_rank:
        return
    console.print(table)
    b = result.best
    console.print(
        f"best epoch {b.epoch}: tune kappa {format_metric(b.tune_kappa)}, AUROC {format_metric(b.tune_auroc)} "
        "(study level); "
        f"{'stopped early; ' if result.stopped_early else ''}{result.seconds:.0f} s"
    )
    console.print(
        f"saved [bold]{result.run_dir}[/] (model.safetensors, config.json, README.md, metrics.csv, "
        "curves.png, last state for --resume)",
        soft_wrap=True,
    )
