"""``mura predict`` and ``mura localize``: batch screening and class-activation-map boxes."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mura_cli.cli import app
from mura_cli.cli._console import console, err_console, progress
from mura_cli.errors import UsageError
from mura_cli.utils import plural

ModelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        help="Run folder, Hub repo (org/name or hf-hub:org/name), or a folder of per-part runs; repeat for "
        "an ensemble (mean of probabilities). Default: $MURA_MODEL, else the newest finished run under ./runs.",
        show_default=False,
    ),
]


def _check_new(path: Path | None, overwrite: bool) -> None:
    if path is not None and path.exists() and not overwrite:
        raise UsageError(f"{path}: exists; choose another name or pass --overwrite")


def _write_csv(path: Path, rows: list[dict[str, Any]], header: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        if not rows:
            return
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        if header:
            w.writeheader()
        w.writerows(rows)


def _run(
    paths: list[str],
    model: list[str],
    *,
    device: str,
    batch_size: int,
    workers: int,
    part: str | None,
    per_image: bool,
    with_cam: bool,
    keep_pixels: bool,
    max_pixels: int,
) -> tuple[list, list, list, list]:
    from mura_cli.engine.predict import discover_inputs, load_models, predict, resolve_model_specs
    from mura_cli.utils import resolve_device

    dev = resolve_device(device)
    files, skipped = discover_inputs(paths)
    if not files:
        raise UsageError(f"no image files among {', '.join(paths)} ({len(skipped)} other files skipped)")
    choice = resolve_model_specs(model or [])
    err_console.print(f"model: {', '.join(choice.specs)} ({choice.reason})", soft_wrap=True, highlight=False)
    models = load_models(choice.specs, dev)
    failures: list = []
    preds: list = []
    with progress() as bar:
        task = bar.add_task("images", total=len(files))
        seen: set[str] = set()

        def fail(f: Any) -> None:
            failures.append(f)
            bar.advance(task)
            err_console.print(f"[yellow]failed:[/] {f.reason}", soft_wrap=True)

        for p in predict(
            files,
            models,
            part=part,
            per_image=per_image,
            device=dev,
            batch_size=batch_size,
            workers=workers,
            with_cam=with_cam,
            keep_pixels=keep_pixels,
            max_pixels=max_pixels,
            on_failure=fail,
        ):
            preds.append(p)
            if p.path not in seen:
                seen.add(p.path)
                bar.advance(task)
    _warn_part_mismatches(preds, models)
    return preds, failures, skipped, models


def _warn_part_mismatches(preds: list, models: list) -> None:
    from mura_cli.engine.predict import part_mismatches

    for (part, name), n in sorted(part_mismatches(preds, models).items()):
        trained = ", ".join(next(m.parts for m in models if m.short_name == name))
        err_console.print(
            f"[yellow]warning:[/] {plural(n, 'image')} of {part} scored by {name}, trained on {trained} only: "
            "its output there is not validated",
            soft_wrap=True,
            highlight=False,
        )


def _summary(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column("what", style="bold")
    table.add_column("count", justify="right")
    for r in rows:
        table.add_row(*r)
    console.print(table)


@app.command("predict")
def predict_cmd(
    paths: Annotated[list[str], typer.Argument(help="Files, folders (recursive) or globs: PNG/JPEG/BMP/TIFF, DICOM.")],
    *,
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Study-level CSV.")] = Path("results.csv"),
    images: Annotated[Path | None, typer.Option(help="Also write one row per image to this CSV.")] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="csv, or mura (headerless Study,label rows for the official MURA scorer).")
    ] = "csv",
    part: Annotated[
        str | None,
        typer.Option(help="Body part for every input (else MURA path, DICOM BodyPartExamined, then the model's)."),
    ] = None,
    per_image: Annotated[bool, typer.Option("--per-image", help="Treat every image as its own study.")] = False,
    aggregate: Annotated[str, typer.Option(help="Study probability: mean (paper) or max.")] = "mean",
    threshold: Annotated[float | None, typer.Option(help="Abnormal threshold (default: the model's).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 16,
    workers: Annotated[int, typer.Option(help="Decoding processes (0 = in the main process).")] = 2,
    max_pixels: Annotated[int, typer.Option(help="Per-frame pixel limit (decompression-bomb guard).")] = 100_000_000,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Screen files and folders for abnormal studies; write one row per study."""
    from mura_cli.engine.predict import group_studies

    if fmt not in ("csv", "mura") or aggregate not in ("mean", "max"):
        raise UsageError("--format takes csv or mura; --aggregate takes mean or max")
    _check_new(out, overwrite)
    _check_new(images, overwrite)
    preds, failures, skipped, _ = _run(
        paths,
        model,
        device=device,
        batch_size=batch_size,
        workers=workers,
        part=part,
        per_image=per_image,
        with_cam=False,
        keep_pixels=False,
        max_pixels=max_pixels,
    )
    studies = group_studies(preds, threshold, aggregate)
    used = sorted({round(st.threshold, 4) for st in studies})
    thr = f"{used[0]:.2f}" if len(used) == 1 else f"per model, {used[0]:.2f}-{used[-1]:.2f}" if used else "-"
    if fmt == "mura":
        _warn_mura_paths(preds, per_image)
        _write_csv(out, [{"Study": s.study, "Model": s.prediction} for s in studies], header=False)
    else:
        _write_csv(out, [s.to_row() for s in studies])
    if images:
        _write_csv(images, [p.to_row() for p in preds])
    _summary(
        f"{plural(len(preds), 'image')} -> {out}",
        [
            ("studies", str(len(studies))),
            ("abnormal", str(sum(s.prediction for s in studies))),
            ("threshold", thr),
            ("skipped (not images)", str(len(skipped))),
            ("failed", str(len(failures))),
        ],
    )


def _warn_mura_paths(preds: list, per_image: bool) -> None:
    from mura_cli.engine.predict import mura_study_of

    found = [mura_study_of(p.path) for p in preds]
    assumed = sorted({m.split for m in found if m is not None and m.assumed})
    if assumed:
        err_console.print(
            "[yellow]warning:[/] study paths assumed under "
            f"{' and '.join(f'MURA-v1.1/{s}/' for s in assumed)} (the folders above XR_<PART> are not "
            "MURA-v1.1/<split>/); check them against the CSV you score with",
            soft_wrap=True,
        )
    outside = sum(m is None for m in found)
    if outside and not per_image:
        err_console.print(
            f"[yellow]warning:[/] {plural(outside, 'image')} not in the MURA layout "
            "(<split>/XR_<PART>/patient*/study*/): their rows will not match the official CSVs",
            soft_wrap=True,
        )


def _overlay_name(path: str, frame: int) -> str:
    parts = Path(path).with_suffix("").parts[-4:]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts)).strip("_")
    return f"{name}{f'_f{frame}' if frame else ''}_cam.png"


@app.command("localize")
def localize_cmd(
    paths: Annotated[list[str], typer.Argument(help="Files, folders (recursive) or globs: PNG/JPEG/BMP/TIFF, DICOM.")],
    *,
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Boxes as JSON (or CSV by suffix).")] = Path("boxes.json"),
    overlay: Annotated[bool, typer.Option("--overlay", help="Write a heatmap-and-box PNG per image.")] = False,
    overlay_dir: Annotated[Path, typer.Option(help="Folder for overlays and heatmaps.")] = Path("overlays"),
    heatmap: Annotated[str | None, typer.Option(help="Also write the raw CAM per image: png (16-bit) or npy.")] = None,
    threshold_frac: Annotated[float, typer.Option(help="Box threshold as a fraction of the CAM maximum.")] = 0.2,
    part: Annotated[str | None, typer.Option(help="Body part for every input.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 8,
    workers: Annotated[int, typer.Option(help="Decoding processes (0 = in the main process).")] = 2,
    max_pixels: Annotated[int, typer.Option(help="Per-frame pixel limit (decompression-bomb guard).")] = 100_000_000,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Class activation map per image, thresholded at 20% of its max; box of the largest component."""
    from mura_cli.engine.predict import localize
    from mura_cli.report.overlay import save_heatmap, save_overlay

    if not 0 < threshold_frac < 1:
        raise UsageError(f"--threshold-frac {threshold_frac}: must be in (0, 1)")
    if heatmap not in (None, "png", "npy"):
        raise UsageError("--heatmap takes png or npy")
    _check_new(out, overwrite)
    preds, failures, skipped, _ = _run(
        paths,
        model,
        device=device,
        batch_size=batch_size,
        workers=workers,
        part=part,
        per_image=True,
        with_cam=True,
        keep_pixels=overlay,
        max_pixels=max_pixels,
    )
    rows = []
    written = 0
    for p in preds:
        loc = localize(p, threshold_frac)
        row = loc.to_row()
        name = _overlay_name(p.path, p.frame)
        if overlay:
            target = overlay_dir / name
            _check_new(target, overwrite)
            save_overlay(target, p.meta["pixels"], p.cam, loc.box, p.probability)
            row["overlay"] = str(target)
            written += 1
        if heatmap:
            target = overlay_dir / name.replace("_cam.png", f"_heatmap.{heatmap}")
            _check_new(target, overwrite)
            save_heatmap(target, p.cam)
            row["heatmap"] = str(target)
        rows.append(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        _write_csv(out, rows)
    else:
        out.write_text(json.dumps({"threshold_frac": threshold_frac, "boxes": rows}, indent=2) + "\n")
    _summary(
        f"{plural(len(rows), 'image')} -> {out}",
        [
            ("boxes", str(sum(1 for r in rows if r["x0"] is not None))),
            ("overlays", str(written)),
            ("skipped (not images)", str(len(skipped))),
            ("failed", str(len(failures))),
        ],
    )
