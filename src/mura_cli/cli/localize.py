"""``mura localize scan.dcm --overlay``: class activation map boxes, overlays and heatmaps per image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mura_cli.cli._console import choice, config_from, dicom_rows, finish_inference, inference_hooks, summary_table
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
    out: Annotated[Path, typer.Option("--out", "-o", help="Boxes as JSON (or CSV by suffix).")] = Path(_L.out),
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
) -> None:
    """Box where the model looked in each image (CAM).

    The class activation map of the abnormal logit is thresholded at 20% of its maximum (--threshold-frac).
    The largest region above it is boxed (--component peak: the region holding the maximum).
    Boxes go to --out, one row per image; --overlay draws them on the radiograph.
    """
    from mura_cli.api import localize

    cfg = config_from(LocalizeConfig, ctx.params)
    with inference_hooks() as hooks:
        report = localize(cfg.paths, config=cfg, hooks=hooks)
    summary_table(
        f"{plural(len(report.rows), 'image')} -> {report.out}",
        [
            ("boxes", str(report.boxes)),
            ("overlays", str(report.overlays)),
            ("skipped (not images)", str(len(report.run.skipped))),
            ("failed", str(len(report.run.failures))),
            *dicom_rows(report.dicom),
        ],
    )
    finish_inference(report.run.failures, report.run.skipped, report.errors)
