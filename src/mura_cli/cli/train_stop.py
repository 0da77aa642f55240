"""What ``mura train`` says and keeps when Ctrl-C stops it: the ``--resume`` command, or why there is none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mura_cli.errors import Interrupted
from mura_cli.models.run_folder import RunFolder


def interrupted(run: Path | None, *, resuming: bool) -> Interrupted:
    """The Ctrl-C line of ``mura train``: the ``--resume`` command when an epoch was saved, else what was kept."""
    folder = None if run is None else RunFolder(run)
    if folder is not None and (folder.is_folds or folder.resumable):
        return Interrupted(f"interrupted; resume with mura train --resume {run}")
    if run is None:
        return Interrupted("interrupted before training started; nothing to resume")
    if not resuming and RunFolder(run).remove_if_unstarted():
        return Interrupted(f"interrupted before the first epoch was saved; removed {run}; nothing to resume")
    return Interrupted(f"interrupted before the first epoch was saved; {run} holds nothing to resume")


class RunWatch:
    """Passes training's ``on_start`` on, and keeps the run folder it names (for the Ctrl-C line)."""

    def __init__(self, on_start: Callable[[dict[str, Any]], None]) -> None:
        self.on_start = on_start
        self.run: Path | None = None

    def __call__(self, info: dict[str, Any]) -> None:
        self.run = Path(info["run"])
        self.on_start(info)
