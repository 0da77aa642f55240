"""``mura pretrain --data FOLDERS...``: self-supervised pretraining of a backbone on unlabeled radiographs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mura_cli.cli._console import QuietOpt, choice, config_from, console, err_console, final, progress, quiet_output
from mura_cli.config_pretrain import PretrainConfig
from mura_cli.hardware import PRECISIONS
from mura_cli.models.run_folder import CARD, CONFIG_NAME, METRICS, WEIGHTS_NAME
from mura_cli.utils import plural

_P = PretrainConfig()


def pretrain_cmd(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Radiographs: files, folders (searched recursively) or globs; PNG/JPEG/DICOM.", show_default=False
        ),
    ] = None,
    *,
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data", "-d", help="More radiographs (as PATHS; `--data A B` reads both).", show_default="PATHS only"
        ),
    ] = None,
    arch: Annotated[
        str, typer.Option(help="Backbone (the --arch of the `mura train` runs that start from it).")
    ] = _P.arch,
    size: Annotated[int, typer.Option(help="Input side in pixels (the --size of those runs).")] = _P.size,
    epochs: Annotated[int, typer.Option(help="Passes over the images.")] = _P.epochs,
    batch_size: Annotated[int, typer.Option(help="Images per step (two views each).")] = _P.batch_size,
    lr: Annotated[float, typer.Option(help="AdamW learning rate (warm-up, then cosine).")] = _P.lr,
    temperature: Annotated[float, typer.Option(help="Temperature of the contrastive loss.")] = _P.temperature,
    crop_scale: Annotated[float, typer.Option(help="Smallest image share a view's random crop keeps.")] = _P.crop_scale,
    seed: Annotated[int, typer.Option(help="Seed of the initialization and the views.")] = _P.seed,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = _P.device,
    precision: Annotated[
        str, typer.Option(click_type=choice(PRECISIONS), help="auto: bf16 where the device multiplies it natively.")
    ] = _P.precision,
    workers: Annotated[int, typer.Option(help="Threads decoding the images (once, before training).")] = _P.workers,
    limit_batches: Annotated[
        int, typer.Option(help="Steps per epoch at most (0: all; for smoke tests).")
    ] = _P.limit_batches,
    out: Annotated[str, typer.Option(help="Folder for run folders.")] = _P.out,
    name: Annotated[str | None, typer.Option(help="Run name.", show_default="pretrain-ARCH")] = _P.name,
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="Replace a run folder of that --name.")] = _P.exist_ok,
    quiet: QuietOpt = False,
) -> None:
    """Pretrain a backbone on unlabeled radiographs (SimCLR).

    Labels are never read: every PNG/JPEG/DICOM under the paths counts.
    The run folder holds the backbone (model.safetensors, timm's names), a config, the loss per epoch and a card.
    Fine-tune it: mura train --weights runs/pretrain-ARCH --arch ARCH --size SIZE; or mura push it.
    """
    params = dict(locals())
    params["data"] = [str(p) for p in (paths or [])] + list(data or [])
    cfg = config_from(PretrainConfig, params)
    with quiet_output(quiet):
        folder = _pretrain(cfg)
    if quiet:
        final(f"saved {folder}")


def _pretrain(cfg: PretrainConfig) -> Path:
    from mura_cli.engine.training.pretrain import PretrainEpoch, pretrain

    bar, tasks = progress(), {}

    def on_image(done: int, total: int) -> None:
        if "decode" not in tasks:
            bar.start()
            tasks["decode"] = bar.add_task("decoding", total=total)
        bar.update(tasks["decode"], completed=done)

    def on_start(info: dict[str, Any]) -> None:
        if "decode" in tasks:
            bar.remove_task(tasks.pop("decode"))
        failed = f", {plural(info['failed'], 'file')} unreadable (listed at the end)" if info["failed"] else ""
        console.print(
            f"run [bold]{info['run']}[/]: {info['arch']} on {plural(info['images'], 'radiograph')}{failed}, "
            f"{info['size']} px, batch {info['batch']} x 2 views, {info['steps']} steps per epoch, "
            f"device {info['device']}, {info['precision']} (decoded in {info['decode_seconds']:.0f} s)",
            soft_wrap=True,
        )
        bar.start()

    def on_step(done: int, total: int) -> None:
        if "step" not in tasks:
            tasks["step"] = bar.add_task("epoch", total=total)
        bar.update(tasks["step"], completed=done, total=total)

    def on_epoch(e: PretrainEpoch) -> None:
        if "step" in tasks:
            bar.remove_task(tasks.pop("step"))
        bar.console.print(f"epoch {e.epoch}: contrastive loss {e.loss:.3f}, lr {e.lr:.0e}, {e.seconds:.0f} s")

    try:
        result = pretrain(cfg, on_image=on_image, on_start=on_start, on_step=on_step, on_epoch=on_epoch)
    finally:
        bar.stop()
    for path, why in result.failed:
        err_console.print(f"[bold yellow]skipped:[/] {path}: {why}", soft_wrap=True, highlight=False)
    console.print(
        f"saved [bold]{result.folder}[/] (backbone {WEIGHTS_NAME}, {CONFIG_NAME}, {METRICS}, {CARD}) in "
        f"{result.seconds / 60:.1f} min; fine-tune it: mura train --weights {result.folder} --arch {cfg.arch} "
        f"--size {cfg.size}",
        soft_wrap=True,
    )
    return result.folder
