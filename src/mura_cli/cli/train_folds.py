"""``mura train --folds K``: the cross-validated ensemble, drawn fold by fold, then its out-of-fold scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from mura_cli.cli._console import console, interval
from mura_cli.config import TrainConfig
from mura_cli.metrics import format_metric
from mura_cli.report.document import METRIC_LABELS


def train_folds(cfg: TrainConfig, resume: Path | None, bar: Any, callbacks: tuple[Any, Any, Any]) -> None:
    """Run :func:`~mura_cli.engine.folds.fit_folds` with the single-run view, then print the out-of-fold table."""
    from mura_cli.engine.folds import fit_folds

    on_start, on_batch, on_epoch = callbacks

    def on_fold(k: int, total: int, state: str) -> None:
        word = {"train": "training", "resume": "resuming", "done": "already trained"}[state]
        bar.console.print(f"[bold]fold {k}/{total}[/] {word} (held out: fold {k}'s patients)")

    try:
        result = fit_folds(cfg, resume=resume, on_fold=on_fold, on_epoch=on_epoch, on_batch=on_batch, on_start=on_start)
    finally:
        bar.stop()
    console.print(oof_table(result.oof, result.threshold))
    a = result.auroc
    console.print(
        f"out-of-fold study AUROC {format_metric(a['plain'])}, with flips {format_metric(a['tta'])}: "
        f"test-time flips {'on' if result.tta else 'off'}; threshold {result.threshold:.3f} (max kappa out of fold); "
        f"{result.seconds:.0f} s",
        soft_wrap=True,
    )
    console.print(
        f"saved [bold]{result.run_dir}[/] (fold-1 ... fold-{len(result.folds)}, oof.csv, ensemble.json, summary.json); "
        f"use it as one model: mura predict FILES --model {result.run_dir}",
        soft_wrap=True,
    )


def oof_table(oof: dict[str, Any], threshold: float) -> Table:
    """Out-of-fold study metrics per part with 95% bootstrap CIs."""
    table = Table(
        title=f"out-of-fold, study level (threshold {threshold:.3f}; 95% CI by study)",
        caption="kappa, F1 and accuracy at the threshold chosen on these same predictions (slightly optimistic)",
    )
    keys = ("auroc", "kappa", "f1", "accuracy")
    for col in ("part", "studies", *(METRIC_LABELS[k] for k in keys)):
        table.add_column(col, justify="right")
    parts = oof["parts"]
    for part, entry in parts.items():
        if part == "all" and len(parts) == 2:  # one part: its row says it all
            continue
        m = entry["metrics"]
        table.add_row(part, str(entry["studies"]), *(interval(m[k]) for k in keys))
    return table
