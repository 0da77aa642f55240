"""What ``mura train`` says and keeps when Ctrl-C stops it: the ``--resume`` command, or why there is none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mura_cli.errors import Interrupted


def interrupted(run: Path | None, *, resuming: bool) -> Interrupted:
    """The Ctrl-C line of ``mura train``: the ``--resume`` command when an epoch was saved, else what was kept."""
    if run is not None and (is_folds_run(run) or _resumable(run)):
        return Interrupted(f"interrupted; resume with mura train --resume {run}")
    if run is None:
        return Interrupted("interrupted before training started; nothing to resume")
    if not resuming and _discard_if_empty(run):
        return Interrupted(f"interrupted before the first epoch was saved; removed {run}; nothing to resume")
    return Interrupted(f"interrupted before the first epoch was saved; {run} holds nothing to resume")


def is_folds_run(run: Path) -> bool:
    """A ``--folds`` ensemble folder: its train config has folds and it has no last state of its own."""
    import json

    from mura_cli.engine.run import LAST_STATE, TRAIN_CONFIG

    try:
        return bool(json.loads((run / TRAIN_CONFIG).read_text()).get("folds")) and not (run / LAST_STATE).exists()
    except (OSError, ValueError):
        return False


def _resumable(run: Path) -> bool:
    """A run with its config and a saved epoch (``mura train --resume`` continues it)."""
    from mura_cli.engine.run import LAST_STATE, TRAIN_CONFIG

    return (run / TRAIN_CONFIG).is_file() and (run / LAST_STATE).is_file()


def _discard_if_empty(run: Path) -> bool:
    """Remove ``run`` when it holds nothing but its train config (stopped before an epoch was saved)."""
    from mura_cli.engine.run import TRAIN_CONFIG

    if run.is_dir() and [p.name for p in run.iterdir()] == [TRAIN_CONFIG]:
        (run / TRAIN_CONFIG).unlink()
        run.rmdir()
        return True
    return False


class RunWatch:
    """Passes training's ``on_start`` on, and keeps the run folder it names (for the Ctrl-C line)."""

    def __init__(self, on_start: Callable[[dict[str, Any]], None]) -> None:
        self.on_start = on_start
        self.run: Path | None = None

    def __call__(self, info: dict[str, Any]) -> None:
        self.run = Path(info["run"])
        self.on_start(info)
