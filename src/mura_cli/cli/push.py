"""``mura push RUN --repo org/name``: upload a run's model to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mura_cli.cli._console import console


def push(
    run: Annotated[Path, typer.Argument(help="Run folder (runs/NAME) or any folder in the Hub layout.")],
    *,
    repo: Annotated[str, typer.Option(help="Hub repo id, org/name.")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo private.")] = False,
    token: Annotated[
        str | None, typer.Option(envvar="HF_TOKEN", help="Hub token.", show_default="the saved Hub login")
    ] = None,
    message: Annotated[str, typer.Option(help="Commit message.")] = "Upload mura-cli model",
) -> None:
    """Upload a run's model to the Hugging Face Hub.

    Uploads model.safetensors, config.json and the model card; `mura predict --model org/name` then uses it.
    """
    from mura_cli.models.hub import push_to_hub

    url = push_to_hub(run, repo, token=token, private=private, commit_message=message)
    console.print(f"pushed [bold]{run}[/] to [bold]{repo}[/]: {url}")
