"""The ``mura`` command line: a thin typer layer over the library.

Every command module registers itself on :data:`app`; :func:`main` is the one place where a
:class:`~mura_cli.errors.MuraError` becomes a red one-line message and an exit code.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mura_cli import __version__
from mura_cli.cli._console import err_console
from mura_cli.errors import MuraError

app = typer.Typer(
    name="mura",
    help="Abnormality detection and localization in musculoskeletal radiographs (MURA, DICOM, PNG/JPEG).",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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
) -> None:
    """Abnormality detection and localization in musculoskeletal radiographs."""
    if verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


from mura_cli.cli import predict as _predict  # noqa: E402,F401
from mura_cli.cli import prepare as _prepare  # noqa: E402,F401  (registers the command)
from mura_cli.cli import train as _train  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``mura`` executable; ``argv`` defaults to ``sys.argv[1:]``."""
    try:
        rc = app(args=argv, prog_name="mura", standalone_mode=False)
    except MuraError as err:
        err_console.print(f"[bold red]error:[/] {err}", soft_wrap=True)
        raise SystemExit(err.exit_code) from None
    except typer.Abort:
        err_console.print("[red]aborted[/]")
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]")
        raise SystemExit(130) from None
    except typer.Exit as e:  # click.exceptions.Exit
        raise SystemExit(e.exit_code) from None
    except Exception as e:
        import click

        if isinstance(e, click.ClickException):
            e.show()
            raise SystemExit(e.exit_code) from None
        raise
    raise SystemExit(rc if isinstance(rc, int) else 0)
