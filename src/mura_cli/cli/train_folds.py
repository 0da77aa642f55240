"""``mura train --folds K``: the cross-validated ensemble, drawn fold by fold, then its out-of-fold scores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from mura_cli.cli._console import console, interval
from mura_cli.metrics import format_metric
from mura_cli.models.run_folder import ENSEMBLE_NAME, OOF, SUMMARY, fold_name
from mura_cli.report.document import METRIC_LABELS

if TYPE_CHECKING:
    from mura_cli.engine.training.folds import FoldsResult


def fold_view(bar: Any) -> Callable[[str, int, int, str], None]:
    """The ``on_fold`` callback that announces each member of a ``--folds`` ensemble above the progress bars."""

    def on_fold(name: str, i: int, total: int, state: str) -> None:
        word = {"train": "training", "resume": "resuming", "done": "already trained"}[state]
        folds = name.split("-")[1:]
        held = " and ".join(f"fold {f}" for f in folds)
        bar.console.print(f"[bold]{name}[/] ({i}/{total}) {word} (held out: {held}'s patients)")

    return on_fold


def show_folds(result: FoldsResult) -> Path:
    """Print a finished ensemble's out-of-fold (and nested) tables and what was chosen; returns its folder."""
    console.print(oof_table(result.oof, result.threshold))
    if result.nested:
        console.print(nested_table(result.nested))
        if "ensemble" in result.nested:
            console.print(nested_table(result.nested["ensemble"], ENSEMBLE_TITLE))
    a, ch = result.auroc, result.choices
    ops = ", ".join(f"{k} {v:.3f}" for k, v in ch.operating_points.items() if v == v)
    console.print(
        f"chosen out of fold: test-time flips {'on' if result.tta else 'off'} (study AUROC "
        f"{format_metric(a['plain'])}, with flips {format_metric(a['tta'])}); temperature {ch.temperature}; "
        f"threshold {result.threshold:.3f} (max kappa); operating points {ops or 'none'}; {result.seconds:.0f} s",
        soft_wrap=True,
    )
    if not result.nested:
        console.print(
            "[yellow]no nested estimate:[/] the out-of-fold table scores the predictions the choices were made "
            "on; add --nested for an estimate that no choice saw",
            soft_wrap=True,
        )
    console.print(
        f"saved [bold]{result.run_dir}[/] ({fold_name(1)} ... {fold_name(len(result.folds))}, {OOF}, {ENSEMBLE_NAME}, "
        f"{SUMMARY}); "
        f"use it as one model: mura predict FILES --model {result.run_dir}",
        soft_wrap=True,
    )
    return Path(result.run_dir)


def oof_table(oof: dict[str, Any], threshold: float) -> Table:
    """Out-of-fold study metrics per part with 95% bootstrap CIs."""
    table = Table(
        title=f"out-of-fold, study level (threshold {threshold:.3f}; 95% CI by study)",
        caption="flips, temperature and threshold were chosen on these same predictions: not a generalization estimate",
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


NESTED_TITLE = (
    "nested cross-validation, one model per fold, study level (95% CI by study)",
    "each outer fold under choices made on inner folds of the other patients: the estimate",
)
ENSEMBLE_TITLE = (
    "nested cross-validation, the ensemble (95% CI by study)",
    "each outer fold scored by the mean of the models that never saw it, under the same choices",
)


def nested_table(nested: dict[str, Any], title: tuple[str, str] = NESTED_TITLE) -> Table:
    """The nested estimate per scope: AUROC, kappa at each outer fold's own threshold, and sensitivity and
    specificity at the operating points chosen inside."""
    table = Table(title=title[0], caption=title[1])
    for col in ("scope", "studies", "AUROC", "kappa", "sens @ sens:0.9", "spec @ spec:0.9", "ECE before/after"):
        table.add_column(col, justify="right")
    ops = nested["operating_points"]
    for scope, entry in nested["table"]["parts"].items():
        m = entry["metrics"]
        ece = f"{format_metric(nested['ece_before'][scope]['value'])}/{format_metric(m['ece']['value'])}"
        sens, spec = ops["sens:0.9"][scope]["sensitivity"], ops["spec:0.9"][scope]["specificity"]
        table.add_row(
            scope,
            str(entry["studies"]),
            interval(m["auroc"]),
            interval(m["kappa"]),
            interval(sens),
            interval(spec),
            ece,
        )
    return table
