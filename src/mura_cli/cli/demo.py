"""``mura demo``: the main job end to end on a built-in synthetic radiograph set, in a few minutes on a CPU."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mura_cli.cli._console import config_from, console, hooks_on, progress
from mura_cli.cli.benchmark import render_benchmark
from mura_cli.cli.predict import DeviceOpt, OverwriteOpt
from mura_cli.cli.train import epoch_table, train_view
from mura_cli.config import DemoConfig

_D = DemoConfig()


def demo(
    ctx: typer.Context,
    out: Annotated[str, typer.Option("--out", "-o", help="Folder for everything the demo writes.")] = _D.out,
    *,
    arch: Annotated[str, typer.Option(help="Backbone to train.")] = _D.arch,
    size: Annotated[int, typer.Option(help="Input size in pixels.")] = _D.size,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = _D.epochs,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = _D.batch_size,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = _D.lr,
    studies_per_part: Annotated[int, typer.Option(help="Synthetic studies per body part.")] = _D.studies_per_part,
    seed: Annotated[int, typer.Option(help="Seed of the data and the training.")] = _D.seed,
    device: DeviceOpt = _D.device,
    overwrite: OverwriteOpt = False,
) -> None:
    """Run the whole job on built-in synthetic radiographs.

    A first check that needs no data and no network.
    Generates a synthetic set in the MURA layout, then prepares, trains, predicts, localizes and benchmarks it.
    Everything lands in --out. Its numbers show that the pipeline learns, nothing about real radiographs.
    """
    from mura_cli.engine.demo import DemoHooks, run_demo

    cfg = config_from(DemoConfig, ctx.params)
    bar, table = progress(), epoch_table()
    tasks: dict[str, Any] = {}
    _, on_batch, on_epoch = train_view(bar, tasks, table)
    with bar:
        hooks = DemoHooks(
            step=lambda msg: bar.console.print(f"[bold]{msg}[/]", soft_wrap=True),
            infer=hooks_on(bar),
            on_epoch=on_epoch,
            on_batch=on_batch,
        )
        report = run_demo(cfg, hooks)
    console.print(table)
    s = report.predict.studies
    console.print(
        f"screened {len(s)} held-out studies: {sum(x.prediction for x in s)} flagged abnormal -> "
        f"{report.predict.out}; {report.localize.boxes} boxes, {report.localize.overlays} overlays",
        soft_wrap=True,
    )
    render_benchmark(report.benchmark.report)
    console.print(
        f"\n[bold]everything is in {report.out}[/]: data/ (synthetic MURA-v1.1 set), index/, runs/demo/ "
        f"(model, trained from {'ImageNet weights' if report.weights == 'default' else 'random init'}), "
        "results.csv, boxes.json, overlays/, benchmark/index.html",
        soft_wrap=True,
    )
