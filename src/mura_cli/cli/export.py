"""``mura export RUN --format onnx [--int8]``: the model for ONNX runtimes, with its preprocessing as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mura_cli.cli._console import QuietOpt, choice, console, err_console, final, quiet_output
from mura_cli.engine.serving.runtimes import ONNX
from mura_cli.errors import UsageError
from mura_cli.models.run_folder import EXPORT_DIR, EXPORT_SIDECAR


def export(
    run: Annotated[Path, typer.Argument(help="Run folder (runs/NAME; one fold of a --folds ensemble).")],
    *,
    format: Annotated[str, typer.Option("--format", click_type=choice((ONNX,)), help="Export format.")] = ONNX,
    int8: Annotated[
        bool, typer.Option("--int8", help="Static int8 quantization, kept only if tune AUROC drops <= 0.005.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option(help=f"Folder for the model and {EXPORT_SIDECAR}.", show_default=f"RUN/{EXPORT_DIR}")
    ] = None,
    calibration: Annotated[int, typer.Option(help="Training images to calibrate int8 on.")] = 256,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier export.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Export a run's model to ONNX, with its preprocessing.

    The model gives logits and class activation maps for any batch size; preprocessing.json describes its input.
    --int8 also writes a statically quantized model when it keeps the tune AUROC.
    """
    from mura_cli.engine.evaluation.export import run_export

    if format != ONNX:
        raise UsageError(f"--format {format}: only onnx is supported")
    if calibration < 1:
        raise UsageError("--calibration must be at least 1")
    with quiet_output(quiet):
        with console.status("exporting" + (" and calibrating int8" if int8 else "")):
            result = run_export(run, out=out, int8=int8, calibration=calibration, overwrite=overwrite)
        if result.note:
            (err_console if result.precision == "fp32" else console).print(
                ("warning: " if result.precision == "fp32" else "") + result.note, soft_wrap=True
            )
    final(f"exported {result.model} ({result.precision}) and {result.sidecar}")
