"""The ``mura`` command line: a thin typer layer over the library.

Each command lives in its own module as a plain function, registered on :data:`app` here; :func:`main` is
the one place where a :class:`~mura_cli.errors.MuraError` becomes a red one-line message and an exit code.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
from typing import Annotated

import typer
from rich.markup import escape

from mura_cli import __version__
from mura_cli.cli._console import err_console
from mura_cli.cli.archs import archs
from mura_cli.cli.benchmark import benchmark_cmd
from mura_cli.cli.demo import demo
from mura_cli.cli.export import export
from mura_cli.cli.localize import localize_cmd
from mura_cli.cli.predict import predict_cmd
from mura_cli.cli.prepare import prepare
from mura_cli.cli.pretrain import pretrain_cmd
from mura_cli.cli.push import push
from mura_cli.cli.train import train
from mura_cli.errors import INTERNAL_ERROR, Interrupted, MuraError, diagnose

EXIT_CODES = (
    "Exit codes: 0 done, 2 usage, 3 data, 4 model, 5 network (Hub, PACS), 6 done but some inputs failed (errors CSV), "
    "7 broken install, 70 internal error (please report it), 130 interrupted."
)
DEBUG_ENV = "MURA_DEBUG"

app = typer.Typer(
    name="mura",
    help="Abnormality detection and localization in musculoskeletal radiographs (MURA, DICOM, PNG/JPEG).",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    epilog=EXIT_CODES,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mura-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log library details to stderr.")] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help=f"Show the traceback of an internal error (or set {DEBUG_ENV}=1).")
    ] = False,
) -> None:
    """Abnormality detection and localization in musculoskeletal radiographs."""
    if debug:
        os.environ[DEBUG_ENV] = "1"  # read by main() when an internal error reaches it (and by worker processes)
    _setup_logging(verbose)


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _setup_logging(verbose: bool) -> None:
    """Library warnings (``mura_cli`` loggers) as tidy ``warning: ...`` lines on stderr; ``-v`` adds details."""
    logger = logging.getLogger("mura_cli")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LineFormatter())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("pydicom").setLevel(logging.ERROR)  # its warnings reach us through the reader, once each


# One file per command; each module holds a plain function and never imports this package back. Listed in the
# order a new user meets them: the demo, then the workflow.
app.command("demo")(demo)
app.command("prepare")(prepare)
app.command("archs")(archs)
app.command("train")(train)
app.command("pretrain")(pretrain_cmd)
app.command("export")(export)
app.command("push")(push)
app.command("predict", epilog=EXIT_CODES)(predict_cmd)
app.command("localize", epilog=EXIT_CODES)(localize_cmd)
app.command("benchmark", epilog=EXIT_CODES)(benchmark_cmd)


def _usage_error_line(err: Exception) -> str:
    """One line for a command-line usage mistake, whichever copy of click typer raised it from."""
    ctx = getattr(err, "ctx", None)
    where = getattr(ctx, "command_path", "") or "mura"
    msg = " ".join(str(err.format_message()).split())  # type: ignore[attr-defined]
    msg = re.sub(r"( Did you mean '[^']+'\?)\1+", r"\1", msg)  # some typer/click pairs suggest twice
    match = re.match(r"No such command '(.+)'", msg)
    if match and "Did you mean" not in msg and ctx is not None and hasattr(ctx.command, "list_commands"):
        close = difflib.get_close_matches(match.group(1), ctx.command.list_commands(ctx), n=1)
        if close:
            msg += f" Did you mean '{close[0]}'?"
    return f"{where}: {msg} (see '{where} -h')"


def _is_usage_error(err: Exception) -> bool:
    """True for click's exceptions (typer bundles its own copy, so match the shape, not the class)."""
    return isinstance(getattr(err, "exit_code", None), int) and callable(getattr(err, "format_message", None))


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _fail(err: MuraError) -> SystemExit:
    prefix = "" if isinstance(err, Interrupted) else "[bold red]error:[/] "
    err_console.print(f"{prefix}{escape(str(err))}", soft_wrap=True, highlight=False)
    return SystemExit(err.exit_code)


def _internal(err: Exception) -> SystemExit:
    """One line for a bug (or the fix, for a known broken install); the traceback only with MURA_DEBUG / --debug."""
    known = diagnose(err)
    if _debug():
        import traceback

        traceback.print_exception(err)
    if known is not None:
        return _fail(known)
    what = " ".join(str(err).split()) or "(no message)"
    how = f"rerun with {DEBUG_ENV}=1 for the traceback, and report it"
    if _debug():
        how = "report it with the traceback above"
    err_console.print(
        f"[bold red]error:[/] internal error: {type(err).__name__}: {escape(what)}; {how}",
        soft_wrap=True,
        highlight=False,
    )
    return SystemExit(INTERNAL_ERROR)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``mura`` executable; ``argv`` defaults to ``sys.argv[1:]``.

    The one place where errors become exit codes: :class:`MuraError` -> its ``exit_code`` (2 usage, 3 data,
    4 model, 5 network, 6 finished with failed inputs, 7 broken install, 130 interrupted with a resume hint), a
    command-line usage mistake -> 2, Ctrl-C elsewhere -> 130, any other exception (a bug) -> 70. Each is one
    line on stderr; ``MURA_DEBUG=1`` or ``mura --debug`` adds the traceback of a bug.
    """
    try:
        rc = app(args=argv, prog_name="mura", standalone_mode=False)
    except MuraError as err:
        raise _fail(err) from None
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted")
        raise SystemExit(130) from None
    except typer.Exit as e:
        if e.exit_code == 130 and isinstance(e.__cause__, KeyboardInterrupt):  # typer's way of passing Ctrl-C on
            err_console.print("interrupted")
        raise SystemExit(e.exit_code) from None
    except Exception as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `mura` or a bare group: help, exit 0
            typer.echo(e.format_message())  # type: ignore[attr-defined]
            raise SystemExit(0) from None
        if not _is_usage_error(e):
            raise _internal(e) from None
        err_console.print(f"[bold red]error:[/] {escape(_usage_error_line(e))}", soft_wrap=True)
        raise SystemExit(2 if e.exit_code == 1 else e.exit_code) from None  # type: ignore[attr-defined]
    raise SystemExit(rc if isinstance(rc, int) else 0)
