"""The only rich consoles of the package, and the progress-bar factory. Nothing outside cli/ draws."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mura_cli.engine.hooks import Failure, Hooks
from mura_cli.errors import PartialFailure, UsageError
from mura_cli.report.document import MINUS, OUTSIDE, format_interval
from mura_cli.utils import STDOUT, is_stdout, plural

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

# Wide enough for tables when output is a pipe or a file (README snippets, CI logs).
_WIDTH = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "120"))

console = Console(width=_WIDTH, highlight=False)
err_console = Console(stderr=True, width=_WIDTH, highlight=False)


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors and the final line.")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print a JSON summary on stdout, and nothing else there (logs go to stderr).")
]


@contextmanager
def quiet_output(quiet: bool) -> Iterator[None]:
    """``--quiet`` for the block: tables, notices, warnings and progress are dropped; errors still show (a
    failed input through :func:`hooks_on`, the command's error through ``cli.main`` after the block), and
    :func:`final` prints the command's last line."""
    if not quiet:
        yield
        return
    logger = logging.getLogger("mura_cli")
    level = logger.level
    console.quiet = err_console.quiet = True
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        console.quiet = err_console.quiet = False
        logger.setLevel(level)


def final(text: str, *, err: bool = False) -> None:
    """The one line a command ends with, shown even under ``--quiet`` (plain text; ``err``: on stderr)."""
    typer.echo(text, err=err)


def print_json(data: Any) -> None:
    """``--json``: one JSON document on stdout."""
    typer.echo(json.dumps(data, indent=2, default=str))


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


def choice(values: Sequence[object]) -> click.Choice:
    """A closed set of option values: help shows ``[a|b]`` and click refuses anything else (any case)."""
    return click.Choice([str(v) for v in values], case_sensitive=False)


def config_from(cls: type[T], params: dict[str, Any], **renames: str) -> T:
    """Build a config dataclass from a command's parameters (``renames``: parameter -> field name).

    Lists become tuples and paths strings, as the configs hold them; parameters the config has no field for
    are left out.
    """
    names = {f.name for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in params.items():
        field_name = renames.get(key, key)
        if field_name in names:
            values[field_name] = (
                tuple(value or ()) if isinstance(value, list) else str(value) if isinstance(value, Path) else value
            )
    return cls(**values)


def retyped(*extra: str) -> str:
    """The command line as the user typed it (``mura`` and its arguments, shell-quoted), with ``extra`` options
    added when not already there: the command to run next."""
    args = sys.argv[1:]
    return shlex.join(["mura", *args, *(e for e in extra if e not in args)])


def typed_params(ctx: typer.Context) -> set[str]:
    """Names of the parameters the user gave (command line or environment), not left at their defaults."""
    given = set()
    for name in ctx.params:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT"):
            given.add(name)
    return given


@contextmanager
def inference_hooks(what: str = "images") -> Iterator[Hooks]:
    """Hooks that draw a progress bar over the inputs and print notices, warnings and failures as lines."""
    with progress() as bar:
        yield hooks_on(bar, what)


def hooks_on(bar: Progress, what: str = "images") -> Hooks:
    """:class:`Hooks` drawing on an existing progress display (one live display at a time)."""
    task = bar.add_task(what, total=None, visible=False)

    def say(text: str) -> None:
        bar.console.print(text, soft_wrap=True, highlight=False)

    def failed(f: Failure) -> None:
        if bar.console.quiet:  # an error: shown under --quiet too
            typer.echo(f"failed: {_reason(f)}", err=True)
        else:
            say(f"[yellow]failed:[/] {escape(_reason(f))}")

    def advance(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total, visible=done < total)

    return Hooks(
        on_info=lambda msg: say(escape(msg)),
        on_warning=lambda msg: say(f"[yellow]warning:[/] {escape(msg)}"),
        on_progress=advance,
        on_failure=failed,
    )


def _reason(f: Failure) -> str:
    return f.reason if f.path in f.reason else f"{f.path}: {f.reason}"


def interval(e: dict[str, Any] | None) -> str:
    """An estimate as ``0.333 [−0.027, 0.651]`` (a typographic minus and dagger where the terminal takes them)."""
    e = e or {}
    utf = "utf" in (console.encoding or "").lower()
    minus, mark = (MINUS, OUTSIDE) if utf else ("-", "+")
    return format_interval(e.get("value"), e.get("low"), e.get("high"), minus=minus, mark=mark)


def outside_mark() -> str:
    """The mark :func:`interval` puts after an estimate outside its interval."""
    return OUTSIDE if "utf" in (console.encoding or "").lower() else "+"


def piped_output(out: str, as_json: bool) -> bool:
    """Whether ``--out`` is stdout (``-``); refuses ``--json`` beside it, since both would write there."""
    piped = is_stdout(out)
    if as_json and piped:
        raise UsageError(f"--json and --out {STDOUT} both write to stdout; choose one")
    return piped


def show_summary(
    summary: dict[str, Any],
    table: tuple[str, list[tuple[str, str]]],
    line: str,
    *,
    quiet: bool,
    as_json: bool,
    err: bool,
) -> None:
    """A job's closing summary: the JSON document (``--json``), the final ``line`` (``--quiet``) or the
    ``(title, rows)`` table; ``err`` when stdout carries the output itself."""
    if as_json:
        print_json(summary)
    elif quiet:
        final(line, err=err)
    else:
        summary_table(*table, err=err)


def summary_table(title: str, rows: list[tuple[str, str]], *, err: bool = False) -> None:
    """A two-column summary (what, count) on stdout (``err``: on stderr, when stdout carries the output)."""
    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    for r in rows:
        table.add_row(*r)
    (err_console if err else console).print(table)


def finish_inference(
    failures: Sequence[Failure], skipped: Sequence[Failure], errors: Path | None, *, quiet: bool = False
) -> None:
    """After the summary: name each skipped path (failures were named as they happened; not under ``quiet``), say
    where the errors CSV is, and exit 6 (:class:`~mura_cli.errors.PartialFailure`) when any input failed."""
    for f in () if quiet else skipped:
        err_console.print(f"[dim]skipped:[/] {escape(_reason(f))}", soft_wrap=True, highlight=False)
    if errors is not None and not quiet:
        err_console.print(f"inputs not scored, with reasons: {escape(str(errors))}", soft_wrap=True, highlight=False)
    if failures:
        where = f", listed in {errors}" if errors is not None else ""
        raise PartialFailure(f"{plural(len(failures), 'input')} failed{where}; the others were scored and written")


def dicom_rows(report: Any) -> list[tuple[str, str]]:
    """Summary rows for the DICOM results sink (:class:`~mura_cli.engine.serving.dicom_sink.DicomReport`), if it ran."""
    if report is None:
        return []
    rows = [("DICOM results", report.summary())]
    if report.sent:
        rows.append(("stored (STOW-RS)", f"{report.stored} of {report.count}"))
    return rows
