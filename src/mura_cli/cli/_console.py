"""The only rich consoles of the package, and the progress-bar factory. Nothing outside cli/ draws."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Wide enough for tables when output is a pipe or a file (README snippets, CI logs).
_WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "120"))

console = Console(width=_WIDTH, highlight=False)
err_console = Console(stderr=True, width=_WIDTH, highlight=False)


def progress(transient: bool = False) -> Progress:
    """A progress display with counts, elapsed time and ETA, drawn on stderr (hidden when not a TTY)."""
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=not err_console.is_terminal,
    )


def typed_params(ctx: typer.Context) -> set[str]:
    """Names of the parameters the user gave (command line or environment), not left at their defaults."""
    given = set()
    for name in ctx.params:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
            given.add(name)
    return given
