"""``mura localize scan.dcm --overlay``: class activation map boxes, overlays and heatmaps per image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mura_cli.cli._console import (
    JsonOpt,
    QuietOpt,
    choice,
    config_from,
    dicom_rows,
    finish_inference,
    inference_hooks,
    piped_output,
    quiet_output,
    show_summary,
)
from mura_cli.cli.predict import (
    BodyPartOpt,
    DeviceOpt,
    DicomObjectsOpt,
    DicomOutOpt,
    EngineOpt,
    HashIdsOpt,
    MaxPixelsOpt,
    ModalityOpt,
    ModelOpt,
    OverwriteOpt,
    PartOpt,
    PathsArg,
    SaltOpt,
    SendOpt,
    SinceOpt,
    StudyOpt,
    TtaOpt,
    WorkersOpt,
)
from mura_cli.config import COMPONENTS, HEATMAP_FORMATS, LocalizeConfig
from mura_cli.utils import plural

_L = LocalizeConfig()
ComponentOpt = Annotated[
    str,
    typer.Option(
        click_type=choice(COMPONENTS), help="Which region above the threshold is boxed (peak: the one holding the max)."
    ),
]


def localize_cmd(
    ctx: typer.Context,
    paths: PathsArg,
    *,
    model: ModelOpt = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Boxes as JSON (or CSV by suffix); - writes the JSON to stdout.")
    ] = Path(_L.out),
    overlay: Annotated[bool, typer.Option("--overlay", help="Write a heatmap-and-box PNG per image.")] = False,
    overlay_dir: Annotated[Path, typer.Option(help="Folder for overlays and heatmaps.")] = Path(_L.overlay_dir),
    heatmap: Annotated[
        str | None,
        typer.Option(
            click_type=choice(HEATMAP_FORMATS),
            help="Also write the raw CAM per image (png: 16-bit).",
            show_default="not written",
        ),
    ] = None,
    threshold_frac: Annotated[
        float, typer.Option(help="Box threshold as a fraction of the CAM maximum.")
    ] = _L.threshold_frac,
    component: ComponentOpt = _L.component,
    part: PartOpt = None,
    device: DeviceOpt = _L.device,
    engine: EngineOpt = _L.engine,
    tta: TtaOpt = None,
    hash_ids: HashIdsOpt = False,
    salt: SaltOpt = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = _L.batch_size,
    workers: WorkersOpt = _L.workers,
    max_pixels: MaxPixelsOpt = _L.max_pixels,
    overwrite: OverwriteOpt = False,
    dicom_out: DicomOutOpt = None,
    dicom_objects: DicomObjectsOpt = None,
    send: SendOpt = None,
    study: StudyOpt = None,
    modality: ModalityOpt = None,
    since: SinceOpt = None,
    body_part: BodyPartOpt = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Box where the model looked in each image (CAM).

    The class activation map of the abnormal logit is thresholded at 20% of its maximum (--threshold-frac).
    The largest region above it is boxed (--component peak: the region holding the maximum).
    Boxes go to --out, one row per image; --overlay draws them on the radiograph.
    """
    from mura_cli.api import localize

    cfg = config_from(LocalizeConfig, ctx.params)
    piped = piped_output(cfg.out, json_out)
    dest = "stdout" if piped else cfg.out or "no boxes file"
    with quiet_output(quiet):
        with inference_hooks() as hooks:
            report = localize(cfg.paths, config=cfg, hooks=hooks)
        n = localize_summary(report, cfg.overlay_dir)
        labels = {"boxes": "boxes", "overlays": "overlays", "skipped": "skipped (not images)", "failed": "failed"}
        title = f"{plural(n['images'], 'image')} -> {dest}"
        where = f" in {cfg.overlay_dir}" if n["overlays"] else ""
        line = (
            f"{title}: {plural(n['boxes'], 'box', 'boxes')}, {plural(n['overlays'], 'overlay')}{where}, "
            f"{n['failed']} failed"
        )
        cells = {**{k: str(n[k]) for k in labels}, "overlays": f"{n['overlays']}{where}"}
        table = (title, [(label, cells[k]) for k, label in labels.items()] + dicom_rows(report.dicom))
        show_summary(n, table, line, quiet=quiet, as_json=json_out, err=piped)
    finish_inference(report.run.failures, report.run.skipped, report.errors, quiet=quiet)


def localize_summary(report: Any, overlay_dir: str) -> dict[str, Any]:
    """The ``--json`` summary of a localize run (what the table shows, plus the outputs and failures)."""
    return {
        "images": len(report.rows),
        "boxes": report.boxes,
        "overlays": report.overlays,
        "skipped": len(report.run.skipped),
        "failed": len(report.run.failures),
        "out": str(report.out) if report.out else None,
        "overlay_dir": overlay_dir if report.overlays else None,
        "errors_csv": str(report.errors) if report.errors else None,
        "dicom": dict(dicom_rows(report.dicom)) or None,
        "model": list(report.run.choice.specs),
        "failures": [f.to_row() for f in report.run.failures],
    }
