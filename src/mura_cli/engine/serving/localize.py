"""Class-activation-map boxes per image: the ``mura localize`` job.

:func:`localize` boxes one prediction's map (20% of its maximum, largest connected component, as the seed
report); :func:`run_localize` runs the whole job: predict with maps, box every image, write the boxes
(JSON or CSV), overlays and raw heatmaps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mura_cli.cam import Box, cam_peak, image_box, resize_map
from mura_cli.config import LocalizeConfig
from mura_cli.config_infer import COMPONENT, THRESHOLD_FRAC
from mura_cli.engine.hooks import Failure, Hooks, errors_path, write_errors
from mura_cli.engine.results import to_pandas
from mura_cli.engine.serving.dicom_sink import DicomReport, close_sink, open_sink
from mura_cli.engine.serving.load import Model
from mura_cli.engine.serving.predict import ImagePrediction
from mura_cli.engine.serving.screen import InferenceRun, require_scored, run_inference
from mura_cli.errors import UsageError
from mura_cli.utils import ensure_new, is_stdout, write_csv, write_json


@dataclass(frozen=True)
class Localization:
    """The CAM box of one image, in original pixels."""

    path: str
    frame: int
    study: str
    probability: float
    box: Box | None
    cam_max: float
    threshold: float
    peak: tuple[int, int]

    def to_row(self) -> dict[str, Any]:
        b = self.box
        return {
            "image": self.path,
            "frame": self.frame,
            "study": self.study,
            "probability": round(self.probability, 6),
            "x0": b.x0 if b else None,
            "y0": b.y0 if b else None,
            "x1": b.x1 if b else None,
            "y1": b.y1 if b else None,
            "cam_max": round(self.cam_max, 6),
            "threshold": round(self.threshold, 6) if np.isfinite(self.threshold) else None,
            "peak_x": self.peak[0] if b else None,  # cam_peak says (0, 0) for a map with no positive evidence
            "peak_y": self.peak[1] if b else None,
        }


def localize(pred: ImagePrediction, threshold_frac: float = THRESHOLD_FRAC, component: str = COMPONENT) -> Localization:
    """Box the ``largest`` component of ``pred.cam`` above ``threshold_frac`` of its maximum (or the ``peak``'s),
    on the map's grid, and scale the box and the peak to the image's pixels."""
    if pred.cam is None:
        raise UsageError("localize needs predictions made with with_cam=True")
    box, thr = image_box(pred.cam, pred.height, pred.width, threshold_frac, component)
    return Localization(
        path=pred.path,
        frame=pred.frame,
        study=pred.study,
        probability=pred.probability,
        box=box,
        cam_max=float(pred.cam.max()),
        threshold=thr,
        peak=cam_peak(pred.cam, pred.height, pred.width),
    )


@dataclass(frozen=True)
class LocalizeReport:
    """The ``mura localize`` job: one box row per image written to ``out`` (``None``: not written, as
    :func:`mura_cli.localize` does by default), and what else was written (``overlays`` PNGs in ``overlay_dir``
    with ``--overlay``; ``errors``: the failed and skipped inputs, beside ``out``). ``localizations`` holds the
    same boxes typed, one per image."""

    run: InferenceRun
    rows: tuple[dict[str, Any], ...]
    out: Path | None
    overlays: int
    errors: Path | None = None
    dicom: DicomReport | None = None
    localizations: tuple[Localization, ...] = ()
    overlay_dir: Path | None = None

    @property
    def boxes(self) -> int:
        return sum(1 for r in self.rows if r["x0"] is not None)

    @property
    def failures(self) -> tuple[Failure, ...]:
        """Inputs that could not be scored (the others were)."""
        return self.run.failures

    def to_records(self) -> list[dict[str, Any]]:
        """One row per image, as ``boxes.json`` lists them (with ``overlay``/``heatmap`` paths when written)."""
        return [dict(r) for r in self.rows]

    def to_pandas(self) -> Any:
        """:meth:`to_records` as a ``pandas.DataFrame`` (needs pandas)."""
        return to_pandas(self.to_records())


def overlay_name(path: str, frame: int) -> str:
    """A flat, safe file name for an image's overlay (its last four path parts, no folders)."""
    parts = Path(path).with_suffix("").parts[-4:]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts)).strip("_.")
    return f"{name}{f'_f{frame}' if frame else ''}_cam.png"


def run_localize(cfg: LocalizeConfig, hooks: Hooks = Hooks(), *, model: Model | None = None) -> LocalizeReport:
    """Box the class activation map of every image in ``cfg.paths``; write boxes, overlays and heatmaps.

    An empty ``cfg.out`` writes no boxes file, ``-`` writes the JSON to standard output; ``model``: see
    :func:`~mura_cli.engine.serving.screen.run_inference`.

    Each row's ``study`` is the image's study as ``mura predict`` groups it (MURA study folder, DICOM
    StudyInstanceUID, else the file's folder). When no image could be scored, nothing is written but the
    errors CSV (:func:`~mura_cli.engine.serving.screen.require_scored` raises).
    """
    from mura_cli.report.overlay import render_overlay, save_heatmap, save_overlay

    sink = open_sink(cfg, ("sr", "pr", "sc"))
    ensure_new(cfg.out or None, cfg.overwrite)
    ensure_new(errors_path(cfg.out) if cfg.out and not is_stdout(cfg.out) else None, cfg.overwrite)
    rows, overlay_dir = [], Path(cfg.overlay_dir)
    locs: list[Localization] = []
    capture = sink is not None and "sc" in sink.kinds

    def box(p: ImagePrediction) -> ImagePrediction:
        """Box one image as it comes, write its overlay and heatmap, and keep it without map and pixels."""
        assert p.cam is not None
        loc = localize(p, cfg.threshold_frac, cfg.component)
        row = loc.to_row()
        name = overlay_name(p.path, p.frame)
        full = resize_map(p.cam, p.height, p.width) if cfg.overlay or cfg.heatmap or capture else None
        if full is not None and cfg.overlay:
            target = overlay_dir / name
            ensure_new(target, cfg.overwrite)
            save_overlay(target, p.meta["pixels"], full, loc.box, p.probability)
            row["overlay"] = str(target)
        if full is not None and cfg.heatmap:
            target = overlay_dir / name.replace("_cam.png", f"_heatmap.{cfg.heatmap}")
            ensure_new(target, cfg.overwrite)
            save_heatmap(target, full)
            row["heatmap"] = str(target)
        if sink:
            sc = (
                np.asarray(render_overlay(p.meta["pixels"], full, loc.box, p.probability))
                if capture and full is not None
                else None
            )
            sink.add(p, loc.box, sc)
        rows.append(row)
        locs.append(loc)
        return replace(p, cam=None, meta={k: v for k, v in p.meta.items() if k != "pixels"})

    kw: dict[str, Any] = {"with_cam": True, "keep_pixels": cfg.overlay or capture, "hooks": hooks, "consume": box}
    run = run_inference(cfg, per_image=False, model=model, **kw)
    dicom = close_sink(sink, run.models, send=cfg.send)
    if dicom is not None:
        run = replace(run, failures=run.failures + dicom.failures)
    require_scored(run, cfg.out)
    written = sum(1 for r in rows if "overlay" in r)
    if not cfg.out:
        return LocalizeReport(
            run, tuple(rows), None, written, None, dicom, tuple(locs), overlay_dir if cfg.overlay else None
        )
    out = Path(cfg.out)
    if out.suffix.lower() == ".csv":
        write_csv(out, rows)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, {"threshold_frac": cfg.threshold_frac, "component": cfg.component, "boxes": rows})
    errors = write_errors(out, (*run.failures, *run.skipped))
    return LocalizeReport(
        run, tuple(rows), out, written, errors, dicom, tuple(locs), overlay_dir if cfg.overlay else None
    )
