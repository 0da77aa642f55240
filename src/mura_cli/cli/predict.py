"""``mura predict PATHS... --out results.csv``: screen files and folders for abnormal studies."""

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
    retyped,
    show_summary,
    typed_params,
)
from mura_cli.config import AGGREGATES, PREDICT_FORMATS, PredictConfig
from mura_cli.engine.serving.runtimes import AUTO_BF16_MIN_INPUTS, ENGINES
from mura_cli.errors import Interrupted
from mura_cli.utils import plural

_P = PredictConfig()

PathsArg = Annotated[
    list[str],
    typer.Argument(
        help="Files, folders (recursive) or globs: PNG/JPEG/BMP/TIFF, DICOM; or one DICOMweb server, "
        "dicomweb+http(s)://HOST:PORT/PATH (credentials from $MURA_DICOMWEB_TOKEN, or $MURA_DICOMWEB_USER and "
        "$MURA_DICOMWEB_PASSWORD)."
    ),
]
ModelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        help="Run folder, Hub repo (org/name or hf-hub:org/name), or a folder of per-part runs; repeat for "
        "an ensemble (mean of probabilities).",
        show_default="$MURA_MODEL, else the newest finished run under ./runs",
    ),
]
PartOpt = Annotated[
    str | None,
    typer.Option(
        metavar="PART",
        help="Body part for every input.",
        show_default="the MURA path's, else DICOM BodyPartExamined, else the model's",
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
EngineOpt = Annotated[
    str,
    typer.Option(
        click_type=choice(ENGINES),
        help="torch-bf16: torch in bf16; onnx: ONNX Runtime on CPU (pip install 'mura-cli\\[onnx]'); "
        "onnx-int8: after mura export --int8; auto: torch-bf16 on a CPU with native bf16 for a run whose bf16 "
        f"check passed and {AUTO_BF16_MIN_INPUTS}+ files, else onnx on CPU when installed, else torch.",
    ),
]
WorkersOpt = Annotated[int, typer.Option(help="Decoding processes (0 = in the main process).")]
TtaOpt = Annotated[
    bool | None,
    typer.Option(
        "--tta/--no-tta", show_default="as the model says", help="Average each image with its horizontal flip."
    ),
]
MaxPixelsOpt = Annotated[int, typer.Option(help="Per-frame pixel limit (decompression-bomb guard).")]
HashIdsOpt = Annotated[
    bool, typer.Option("--hash-ids", help="Replace DICOM study ids (StudyInstanceUID) by a salted hash.")
]
SaltOpt = Annotated[str | None, typer.Option(envvar="MURA_SALT", help="Secret salt for --hash-ids ($MURA_SALT).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]
ThresholdOpt = Annotated[float | None, typer.Option(help="Abnormal threshold.", show_default="the model's")]
DicomOutOpt = Annotated[
    Path | None,
    typer.Option(
        help="Also write DICOM results for DICOM inputs here, a folder per study: a TID 1500 structured report "
        "(localize: also presentation states with the box and secondary captures of the overlay).",
        show_default="not written",
    ),
]
DicomObjectsOpt = Annotated[
    str | None, typer.Option(help="Which DICOM results: sr,pr,sc.", show_default="all that apply")
]
SendOpt = Annotated[
    str | None,
    typer.Option(
        help="Store the DICOM results on this DICOMweb server (STOW-RS), dicomweb+http(s)://...; kept too.",
        show_default="not sent",
    ),
]
StudyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--study", help="DICOMweb source: a Study Instance UID to fetch; repeat for more.", show_default="none"
    ),
]
ModalityOpt = Annotated[
    str | None, typer.Option(help="DICOMweb source: modalities to keep, e.g. CR,DX.", show_default="all")
]
SinceOpt = Annotated[
    str | None, typer.Option(help="DICOMweb source: studies from this date on (YYYY-MM-DD).", show_default="any date")
]
BodyPartOpt = Annotated[
    str | None,
    typer.Option(help="DICOMweb source: BodyPartExamined values to keep, e.g. HAND.", show_default="all"),
]


def predict_cmd(
    ctx: typer.Context,
    paths: PathsArg,
    *,
    model: ModelOpt = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Study-level CSV (--format jsonl: results.jsonl); - writes it to stdout, for a pipe."
        ),
    ] = Path(_P.out),
    images: Annotated[
        Path | None, typer.Option(help="Also write one row per image to this CSV.", show_default="not written")
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            click_type=choice(PREDICT_FORMATS),
            help="mura: headerless Study,label rows for the official MURA scorer; jsonl: one JSON object per image.",
        ),
    ] = _P.fmt,
    part: PartOpt = None,
    per_image: Annotated[bool, typer.Option("--per-image", help="Treat every image as its own study.")] = False,
    aggregate: Annotated[
        str, typer.Option(click_type=choice(AGGREGATES), help="Study probability from its images (paper: mean).")
    ] = _P.aggregate,
    threshold: Annotated[
        str | None,
        typer.Option(
            help="Abnormal threshold: a number, or sens:0.9 / spec:0.9 (operating points a --folds run chose "
            "out of fold).",
            show_default="the model's",
        ),
    ] = None,
    device: DeviceOpt = _P.device,
    engine: EngineOpt = _P.engine,
    tta: TtaOpt = None,
    hash_ids: HashIdsOpt = False,
    salt: SaltOpt = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = _P.batch_size,
    workers: WorkersOpt = _P.workers,
    max_pixels: MaxPixelsOpt = _P.max_pixels,
    overwrite: OverwriteOpt = False,
    dicom_out: DicomOutOpt = None,
    dicom_objects: DicomObjectsOpt = None,
    send: SendOpt = None,
    study: StudyOpt = None,
    modality: ModalityOpt = None,
    since: SinceOpt = None,
    body_part: BodyPartOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue a killed run from its journal (<out>.partial.jsonl).")
    ] = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Screen files and folders for abnormal studies.

    Writes one row per study: the mean of its images' probabilities (--aggregate max), labelled at the threshold
    stored with the model that scored it (--threshold overrides). Existing outputs are kept unless --overwrite.
    """
    from mura_cli.api import predict

    params = dict(ctx.params)
    if fmt == "jsonl" and "out" not in typed_params(ctx):
        params["out"] = Path(_P.out).with_suffix(".jsonl")
    cfg = config_from(PredictConfig, params)
    piped = piped_output(cfg.out, json_out)
    dest = "stdout" if piped else cfg.out or "no study file"
    with quiet_output(quiet):
        try:
            with inference_hooks() as hooks:
                report = predict(cfg.paths, config=cfg, hooks=hooks)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted; resume with {retyped('--resume')}") from None
        n = predict_summary(report)
        rows = [
            ("studies", str(n["studies"])),
            ("abnormal", str(n["abnormal"])),
            ("threshold", report.threshold_label),
            ("skipped (not images)", str(n["skipped"])),
            ("failed", str(n["failed"])),
            *dicom_rows(report.dicom),
        ]
        title = f"{plural(n['images'], 'image')} -> {dest}"
        line = f"{title}: {plural(n['studies'], 'study', 'studies')}, {n['abnormal']} abnormal, {n['failed']} failed"
        show_summary(n, (title, rows), line, quiet=quiet, as_json=json_out, err=piped)
    finish_inference(report.run.failures, report.run.skipped, report.errors, quiet=quiet)


def predict_summary(report: Any) -> dict[str, Any]:
    """The ``--json`` summary of a predict run (what the table shows, plus the outputs and failures)."""
    run = report.run
    return {
        "images": len(run.predictions),
        "studies": len(report.studies),
        "abnormal": sum(s.prediction for s in report.studies),
        "thresholds": sorted({round(s.threshold, 6) for s in report.studies}),
        "skipped": len(run.skipped),
        "failed": len(run.failures),
        "out": str(report.out) if report.out else None,
        "images_csv": str(report.images) if report.images else None,
        "errors_csv": str(report.errors) if report.errors else None,
        "dicom": dict(dicom_rows(report.dicom)) or None,
        "model": list(run.choice.specs),
        "failures": [f.to_row() for f in run.failures],
    }
