"""The progress view of a demo run, shared by ``mura demo`` and the bare ``mura benchmark`` (which trains the
demo model on first use): each stage's line, the training view, and one overall bar with an ETA."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rich.progress import Progress
from rich.table import Table

from mura_cli.cli.train import train_view
from mura_cli.engine.hooks import Hooks

_STAGE_SECONDS = (17.0, 0.1, 0.0, 5.4, 13.2, 4.5)
"""Seconds each stage of the default demo took on the reference machine (a 2-core Intel Xeon, 113 s in all),
training apart: the weights of the overall bar, so its ETA holds from the first stage on any machine that is
uniformly faster or slower."""
_EPOCH_SECONDS = 17.0
"""Seconds of one training epoch of the default demo on the reference machine."""


def demo_view(bar: Progress, table: Table, infer: Hooks, epochs: int) -> Any:
    """:class:`~mura_cli.engine.demo.DemoHooks` drawing a demo on ``bar``: each stage's line, the training
    view, and one overall task whose ETA is weighted by what each stage took on the reference machine."""
    from mura_cli.engine.demo import DemoHooks

    weights = list(_STAGE_SECONDS)
    weights[2] = _EPOCH_SECONDS * epochs
    overall = bar.add_task("demo", total=sum(weights), visible=False)  # shown from the first stage on
    state = {"stage": 0, "epochs_done": 0}
    _, on_batch, on_epoch = train_view(bar, {}, table)

    def at(stage: int, fraction: float) -> None:
        bar.update(overall, completed=sum(weights[:stage]) + weights[stage] * min(fraction, 1.0))

    def step(k: int, message: str) -> None:
        state["stage"] = k
        bar.update(overall, visible=True)
        at(k, 0.0)
        bar.console.print(f"[bold]{message}[/]", soft_wrap=True)

    def batch(phase: str, done: int, total: int) -> None:
        on_batch(phase, done, total)
        if phase == "train":
            at(2, (state["epochs_done"] + 0.8 * done / max(total, 1)) / epochs)

    def epoch(e: Any) -> None:
        state["epochs_done"] += 1
        at(2, state["epochs_done"] / epochs)
        on_epoch(e)

    def progress_of(done: int, total: int) -> None:
        infer.on_progress(done, total)
        at(state["stage"], done / max(total, 1))

    return DemoHooks(step=step, infer=replace(infer, on_progress=progress_of), on_epoch=epoch, on_batch=batch)
