"""``mura archs``: the supported backbones, their sizes and Hub weights."""

from __future__ import annotations

from rich.table import Table

from mura_cli.cli._console import console


def archs() -> None:
    """List the supported backbones and their Hub weights.

    With parameters, pretrained input size and normalization; any other timm model name works too.
    """
    from mura_cli.models.registry import ALIASES, list_backbones

    table = Table(title="backbones (any other timm model name works too)")
    for col in ("name", "timm model", "params", "pretrained input", "mean/std", "Hub weights (--weights default)"):
        table.add_column(col, justify="right" if col == "params" else "left")
    for b in list_backbones():
        table.add_row(
            b.name,
            b.timm_name,
            f"{b.params / 1e6:.1f}M",
            "x".join(map(str, b.input_size[1:])),
            "imagenet" if b.mean[0] == 0.485 else "inception",
            b.hub_repo or "-",
        )
    console.print(table)
    aliases = ", ".join(f"{k}={v}" for k, v in ALIASES.items() if k != v)
    console.print(f"aliases: {aliases}", soft_wrap=True)
