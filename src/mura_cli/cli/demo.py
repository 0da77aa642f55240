"""``mura demo``: the main job end to end on a built-in synthetic radiograph set, in a few minutes on a CPU."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from mura_cli.cli._console import choice, config_from, console, hooks_on, progress
from mura_cli.cli.benchmark import render_benchmark
from mura_cli.cli.demo_view import demo_view
from mura_cli.cli.predict import DeviceOpt, OverwriteOpt
from mura_cli.cli.train import epoch_table
from mura_cli.config import DEMO_WEIGHTS, DemoConfig

_D = DemoConfig()


def demo(
    ctx: typer.Context,
    out: Annotated[str, typer.Option("--out", "-o", help="Folder for everything the demo writes.")] = _D.out,
    *,
    arch: Annotated[str, typer.Option(help="Backbone to train.")] = _D.arch,
    weights: Annotated[
        str,
        typer.Option(
            click_type=choice(DEMO_WEIGHTS),
            help="none (random init: the figures the package ships as reference) or default (ImageNet weights "
            "from the Hub when reachable).",
        ),
    ] = _D.weights,
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
    Everything lands in --out; the figures are compared with the reference shipped with the package. They show
    that the pipeline learns, nothing about real radiographs.
    """
    from mura_cli.engine.demo import check_reference, run_demo

    cfg = config_from(DemoConfig, ctx.params)
    bar, table = progress(), epoch_table()
    with bar:
        report = run_demo(cfg, demo_view(bar, table, hooks_on(bar), cfg.epochs))
    console.print(table)
    s = report.predict.studies
    loc = report.localize
    console.print(
        f"screened {len(s)} held-out studies: {sum(x.prediction for x in s)} flagged abnormal -> "
        f"{report.predict.out}; {loc.boxes} boxes -> {loc.out}, {loc.overlays} overlays in {loc.overlay_dir}",
        soft_wrap=True,
    )
    render_benchmark(report.benchmark.report)
    console.print(
        f"\n[bold]everything is in {report.out}[/]: data/ (synthetic MURA-v1.1 set), index/, runs/demo/ "
        f"(model, trained from {'ImageNet weights' if report.weights == 'default' else 'random init'}), "
        "results.csv, boxes.json, overlays/, benchmark/index.html",
        soft_wrap=True,
    )
    render_check(check_reference(cfg, report))
    console.print(
        f"next: mura predict {report.data / 'valid'} --model {report.train.run_dir} --out results.csv",
        soft_wrap=True,
        highlight=False,
    )


def render_check(check: Any) -> None:
    """The demo's last word on its figures: ``matches the reference``, or what differs, or why none applies."""
    if not check.applies:
        console.print(f"reference: not compared ({escape(check.why)})", soft_wrap=True)
        return
    if check.matches:
        figures = ", ".join(f"{r.name} {r.value:.3g}" for r in check.rows)
        console.print(
            f"[bold green]matches the reference[/]: {figures}, each within its tolerance "
            f"({check.reference.name} in the package)",
            soft_wrap=True,
        )
        return
    console.print("[bold yellow]differs from the reference[/]:", soft_wrap=True)
    for r in check.rows:
        mark = "ok" if r.ok else "DIFFERS"
        console.print(f"  {r.name}: {r.value:.3g}, expected {r.expected:.3g} ± {r.tolerance:.3g} ({mark})")
    console.print(f"({escape(check.why)})", soft_wrap=True)
