"""``mura prepare ROOT``: index a dataset, check it, split it by patient, print its counts, cache images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mura_cli.cli._console import QuietOpt, choice, config_from, console, err_console, final, progress, quiet_output
from mura_cli.config import CACHE_MODES, PrepareConfig
from mura_cli.data.index import SPLITS, Index, summarize
from mura_cli.utils import plural


def prepare(
    ctx: typer.Context,
    root: Annotated[
        Path, typer.Argument(help="MURA-v1.1 folder (or its parent), FracAtlas folder, or a labelled CSV.")
    ],
    *,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Index folder (never inside ROOT).", show_default="./.mura/<name> in the working folder"
        ),
    ] = None,
    tune_fraction: Annotated[
        float, typer.Option(help="Fraction of train patients held out as the tune split (stratified by part, label).")
    ] = PrepareConfig.tune_fraction,
    seed: Annotated[int, typer.Option(help="Seed of the train/tune split.")] = PrepareConfig.seed,
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Look for truncated and EXIF-rotated image files.")
    ] = PrepareConfig.check_files,
    cache: Annotated[
        int | None,
        typer.Option(
            "--cache", metavar="SIZE", help="Also write a resized 8-bit PNG cache at SIZE px.", show_default="no cache"
        ),
    ] = None,
    cache_mode: Annotated[
        str,
        typer.Option(
            click_type=choice(CACHE_MODES), help="Cache shape: shorter side = SIZE, aspect kept; or SIZE x SIZE."
        ),
    ] = PrepareConfig.cache_mode,
    workers: Annotated[int, typer.Option(help="Processes for the cache (0 = one per core).")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Index a dataset, check it and split it by patient.

    Reads MURA-v1.1, FracAtlas or a labelled CSV, checks its files and counts studies per body part.
    The index (index.csv, summary.json) is what train and benchmark take as --data.
    With --cache SIZE it also writes resized PNGs that make training epochs faster.
    """
    from mura_cli.engine.prepare import run_prepare

    cfg = config_from(PrepareConfig, ctx.params, check="check_files", cache="cache_size")
    with quiet_output(quiet):
        with progress() as bar:
            task = bar.add_task(f"cache {cfg.cache_mode}-{cfg.cache_size}", total=None, visible=bool(cfg.cache_size))
            report = run_prepare(cfg, on_progress=lambda done, total: bar.update(task, completed=done, total=total))
        _show(report)
    if quiet:
        final(f"index: {report.index_path}")


def _show(report: Any) -> None:
    """The counts table, ground-truth boxes, problems found, where the index and the cache went."""
    index = report.index
    console.print(_counts_table(index))
    n_boxes = sum(len(r.boxes) for r in index.rows)
    if n_boxes:
        console.print(
            f"ground-truth boxes: {n_boxes:,} on {plural(sum(1 for r in index.rows if r.boxes), 'image')} "
            "(kept in the index)"
        )
    _print_problems(index)
    console.print(f"index: [bold]{report.index_path}[/]  summary: {report.summary_path}")
    if report.cache is not None:
        result = report.cache
        console.print(
            f"cache: [bold]{result.folder}[/]  written {result.written}, reused {result.reused}, "
            f"failed {len(result.failed)}"
        )
        for _rel, reason in result.failed[:10]:
            err_console.print(f"[yellow]cache failed:[/] {reason}", soft_wrap=True)
        if len(result.failed) > 10:
            err_console.print(f"[yellow]... and {len(result.failed) - 10} more (see the manifest)[/]")


def _counts_table(index: Index) -> Table:
    counts = summarize(index.rows)
    splits = [s for s in SPLITS if any(s in by_split for by_split in counts.values())]
    n_images, n_studies = len(index.rows), len({r.study for r in index.rows})
    table = Table(
        title=f"{index.kind} at {index.root}: {plural(n_studies, 'study', 'studies')}, {plural(n_images, 'image')}",
        caption="studies (images); normal = label 0, abnormal = label 1",
    )
    table.add_column("part", style="bold")
    for s in splits:
        table.add_column(f"{s} normal", justify="right")
        table.add_column(f"{s} abnormal", justify="right")
    table.add_column("total", justify="right", style="bold")

    def cell(st: int, im: int) -> str:
        return f"{st:,} ({im:,})" if im else "-"

    col_tot = {(s, k): [0, 0] for s in splits for k in ("normal", "abnormal")}
    for part, by_split in counts.items():
        row, tot = [], [0, 0]
        for s in splits:
            for k in ("normal", "abnormal"):
                c = by_split.get(s, {}).get(k, {"studies": 0, "images": 0})
                row.append(cell(c["studies"], c["images"]))
                tot[0] += c["studies"]
                tot[1] += c["images"]
                col_tot[(s, k)][0] += c["studies"]
                col_tot[(s, k)][1] += c["images"]
        table.add_row(part, *row, cell(*tot))
    table.add_section()
    table.add_row(
        "total",
        *[cell(*col_tot[(s, k)]) for s in splits for k in ("normal", "abnormal")],
        cell(n_studies, n_images),
        style="bold",
    )
    return table


def _print_problems(index: Index) -> None:
    if not index.problems:
        console.print("[green]checks: no problems found[/]")
        return
    console.print(f"[yellow]checks: {plural(len(index.problems), 'kind')} of problem found[/]")
    for p in index.problems:
        examples = ", ".join(p.examples[:3]) + (" ..." if p.count > 3 else "")
        console.print(
            f"  [yellow]{p.kind}[/] x{p.count}: {p.message}" + (f" [dim]e.g. {examples}[/]" if examples else ""),
            soft_wrap=True,
        )
