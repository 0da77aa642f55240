"""``mura benchmark``: accuracy per body part beside the published numbers, CAM boxes, speed; bare: the demo."""

from __future__ import annotations

import json
import shlex
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from mura_cli.cli._console import (
    JsonOpt,
    QuietOpt,
    choice,
    config_from,
    console,
    final,
    finish_inference,
    hooks_on,
    inference_hooks,
    interval,
    outside_mark,
    print_json,
    progress,
    quiet_output,
)
from mura_cli.cli.localize import ComponentOpt
from mura_cli.cli.predict import DeviceOpt, EngineOpt, ModelOpt, OverwriteOpt, ThresholdOpt, TtaOpt, WorkersOpt
from mura_cli.config import BENCHMARK_SPLITS, BenchmarkConfig
from mura_cli.engine.serving.runtimes import TORCH
from mura_cli.report.document import METRIC_LABELS

_B = BenchmarkConfig()


def benchmark_cmd(
    ctx: typer.Context,
    data: Annotated[
        str,
        typer.Option(
            "--data",
            "-d",
            help="Dataset root or `mura prepare` folder to score, or dicomweb+http(s)://HOST/PATH with --labels.",
            show_default="none: with no other option, the built-in demo set",
        ),
    ] = "",
    *,
    labels: Annotated[
        str | None,
        typer.Option(
            metavar="CSV",
            help="With a DICOMweb --data: the studies to score, a CSV with columns study (UID), label (1/0) [, part].",
            show_default="none: the labels of --data's dataset",
        ),
    ] = None,
    model: ModelOpt = None,
    split: Annotated[
        str | None,
        typer.Option(click_type=choice(BENCHMARK_SPLITS), help="Split to score.", show_default="valid, else tune"),
    ] = None,
    part: Annotated[
        str | None, typer.Option(metavar="PART", help="Score one body part only.", show_default="all parts")
    ] = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Report folder.")] = _B.out,
    boxes: Annotated[bool, typer.Option("--boxes", help="Score CAM boxes against ground-truth boxes.")] = False,
    threshold_frac: Annotated[
        float, typer.Option(help="CAM box threshold as a fraction of the CAM maximum.")
    ] = _B.threshold_frac,
    component: ComponentOpt = _B.component,
    threshold: ThresholdOpt = None,
    speed: Annotated[bool, typer.Option("--speed", help="Also time each stage (img/s, ms per image).")] = False,
    arch: Annotated[
        str | None,
        typer.Option(
            help="With --speed: time these archs (comma-separated) with random weights.", show_default="the model"
        ),
    ] = None,
    size: Annotated[int | None, typer.Option(help="With --speed: input size.", show_default="the model's")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = _B.batch_size,
    device: DeviceOpt = _B.device,
    engine: EngineOpt = _B.engine,
    tta: TtaOpt = None,
    workers: WorkersOpt = _B.workers,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples (by study) for 95% CIs.")] = _B.resamples,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = _B.seed,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Score a model per body part against the published numbers.

    Precision, recall, F1, accuracy, kappa, AUROC, sensitivity, specificity and calibration at image and study
    level, each with a 95% bootstrap interval by study; report.md, index.html and plots in --out.
    CAM boxes against ground truth with --boxes, speed with --speed.
    With no options: speed, and a check of the demo model on the built-in demo set.
    """
    from mura_cli.api import benchmark

    command = "mura " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    cfg = config_from(
        BenchmarkConfig, {**ctx.params, "archs": tuple(a.strip() for a in (arch or "").split(",") if a.strip())}
    )
    bare = not (data or model or speed or cfg.archs)
    with quiet_output(quiet):
        if bare:  # the demo model, trained first when not cached, drawn as `mura demo` draws it
            result = _bare(cfg, command)
        else:
            with inference_hooks() as hooks:
                result = benchmark(config=cfg, hooks=hooks, command=command)
        if json_out:
            report = json.loads((result.out / "report.json").read_text(encoding="utf-8"))
            print_json({"out": str(result.out), "files": [str(f) for f in result.files], "report": report})
        elif not quiet:
            render_benchmark(result.report)
    if not json_out:
        final(f"report: {result.out / 'index.html'} (and report.md, report.json, plots)")
    finish_inference(result.failures, (), result.errors, quiet=quiet)


_LEVEL_COLUMNS = {
    "study": ("kappa", "auroc", "sensitivity", "specificity"),
    "image": ("kappa", "auroc", "weighted_precision", "weighted_f1"),
}
_LEVEL_REFERENCE = {  # column title, metric, source prefix
    "study": ("paper kappa*", "kappa", "Rajpurkar"),
    "image": ("report weighted F1*", "weighted_f1", "Student report"),
}


def _reference(report: dict[str, Any], part: str, level: str) -> str:
    _, metric, source = _LEVEL_REFERENCE[level]
    values = [
        r["value"]
        for r in report.get("references", [])
        if r["part"] == part and r["metric"] == metric and r["source"].startswith(source)
    ]
    if not values:
        return "-"
    return f"{values[0]:.3f}" if len(values) == 1 else f"{min(values):.2f}-{max(values):.2f}"


def render_benchmark(report: dict[str, Any]) -> None:
    """The terminal summary of a benchmark report: accuracy per part beside references, boxes, speed."""
    data = report.get("data")
    if data:
        console.print(
            f"{data['kind']} {data['split']} split: {data['images']:,} images, {data['studies']:,} studies"
            + (f", {data['failed']} failed" if data.get("failed") else ""),
            soft_wrap=True,
        )
    marked = False
    for level, columns in _LEVEL_COLUMNS.items():
        parts = report.get("levels", {}).get(level, {}).get("parts", {})
        if not parts:
            continue
        table = Table(title=f"{level} level: estimate [95% bootstrap interval, resampled by study]", pad_edge=False)
        refs = bool(report.get("references"))
        titles = [METRIC_LABELS[k] for k in columns]
        for col in ("part", "n", *titles):
            table.add_column(col, justify="left" if col == "part" else "right", no_wrap=True, min_width=len(col))
        if refs:  # the published figure is short: its title may wrap
            table.add_column(_LEVEL_REFERENCE[level][0], justify="right", min_width=9, max_width=12)
        for name, e in parts.items():
            cells = [interval(e["metrics"].get(k)) for k in columns]
            table.add_row(name, str(e["n"]), *cells, *([_reference(report, name, level)] if refs else []))
            marked |= any(outside_mark() in c for c in cells)
        console.print(table)
    if report.get("references"):
        console.print(
            "* published figures, NOT measured on this data (paper: hidden MURA test set, DenseNet-169 ensemble; "
            "report: MURA valid, range over its 5 archs): see report.md for sets and sources",
            soft_wrap=True,
        )
    marked |= _render_boxes(report.get("boxes"))
    if marked:
        console.print(
            f"{outside_mark()} the estimate lies outside its percentile interval: the metric is biased under "
            "resampling (see report.md)",
            soft_wrap=True,
        )
    _render_speed(report.get("speed"), report.get("machine", {}))


def _render_boxes(boxes: dict[str, Any] | None) -> bool:
    """The CAM box table; True when a cell is marked as outside its interval."""
    if not boxes:
        return False
    table = Table(title=f"CAM boxes on abnormal images with ground truth (hit: IoU >= {boxes.get('iou_hit', 0.3)})")
    keys = ("mean_iou", "hit_rate", "pointing")
    for col in ("part", "images", *(METRIC_LABELS[k] for k in (*keys, "pointing_chance"))):
        table.add_column(col, justify="left" if col == "part" else "right")
    marked = False
    for name, e in boxes["parts"].items():
        chance = e.get("pointing_chance")
        cells = [interval(e.get(k)) for k in keys]
        marked |= any(outside_mark() in c for c in cells)
        table.add_row(name, str(e["images"]), *cells, "n/a" if chance is None else f"{chance:.3f}")
    console.print(table)
    return marked


def _render_speed(speed: dict[str, Any] | None, machine: dict[str, Any]) -> None:
    if not speed:
        return
    gpu = machine.get("gpu") or "no GPU"
    feats = [n for n, k in (("AMX", "amx_bf16"), ("AVX512-BF16", "avx512_bf16")) if machine.get(k)]
    bf16 = ", ".join(feats) if feats else "no native bf16"
    peaks = "".join(
        f", {p} matmul peak {machine[f'matmul_{p}_gflops']:,.0f} GFLOP/s"
        for p in ("fp32", "bf16")
        if machine.get(f"matmul_{p}_gflops")
    )
    table = Table(title=f"speed on {machine.get('cpu', '?')} ({bf16}), {machine.get('cores', '?')} cores, {gpu}{peaks}")
    for col in (
        "arch",
        "engine",
        "size",
        "batch",
        "img/s",
        "decode ms",
        "preprocess ms",
        "forward ms",
        "CAM+box ms",
        "process peak MB",
        "forward % of peak",
    ):
        table.add_column(col, justify="left" if col in ("arch", "engine") else "right")
    for r in speed["rows"]:
        ms = r["ms_per_image"]
        table.add_row(
            r["arch"],
            r.get("engine", TORCH),
            str(r["size"]),
            str(r["batch"]),
            f"{r['images_per_s']:.1f}",
            *(f"{ms[k]:.1f}" for k in ("decode", "preprocess", "forward", "cam_box")),
            f"{r['peak_memory_mb']:.0f}",
            "" if r.get("peak_fraction") is None else f"{100 * r['peak_fraction']:.0f}%",
        )
    console.print(table)


def _bare(cfg: BenchmarkConfig, command: str) -> Any:
    """The bare benchmark, with the demo's progress view while it trains the demo model on first use."""
    from mura_cli.cli.demo_view import demo_view
    from mura_cli.cli.train import epoch_table
    from mura_cli.config import DemoConfig
    from mura_cli.engine.demo import run_bare_benchmark

    with progress() as bar:
        hooks = hooks_on(bar)
        view = demo_view(bar, epoch_table(), hooks, DemoConfig().epochs)
        return run_bare_benchmark(cfg, hooks, command=command, demo_hooks=view)
