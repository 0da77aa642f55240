"""Class-activation-map boxes per image: the ``mura localize`` job.

:func:`localize` boxes one prediction's map (20% of its maximum, largest connected component, as the seed
report); :func:`run_localize` runs the whole job: predict with maps, box every image and hand it to the sinks
(:func:`localize_sinks`: overlays and raw heatmaps, the DICOM objects, the boxes as JSON or CSV).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mura_cli.cam import cam_peak, image_box
from mura_cli.config import LocalizeConfig
from mura_cli.config_infer import COMPONENT, THRESHOLD_FRAC
from mura_cli.engine.hooks import Failure, Hooks, errors_path, write_errors
from mura_cli.engine.results import to_pandas
from mura_cli.engine.serving.dicom_sink import DicomReport, dicom_report, open_sink
from mura_cli.engine.serving.load import Model
from mura_cli.engine.serving.predict import ImagePrediction, Localization
from mura_cli.engine.serving.screen import InferenceRun, require_scored, run_inference
from mura_cli.engine.serving.sinks import (
    FULL_MAP,
    BoxTable,
    Overlays,
    Sink,
    SinkContext,
    close_all,
    feed,
    needs_pixels,
)
from mura_cli.errors import UsageError
from mura_cli.utils import ensure_new, is_stdout


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


def localize_sinks(cfg: LocalizeConfig) -> tuple[list[Sink], BoxTable]:
    """``mura localize``'s sinks, in the order each image reaches them: overlays and heatmaps, the DICOM objects
    (``dicom_out``), the boxes (``out``; the table that also holds the job's rows, returned apart too); checked
    first: the DICOM options, then ``out``."""
    dicom = open_sink(cfg, ("sr", "pr", "sc"))
    ensure_new(cfg.out or None, cfg.overwrite)
    drawn = cfg.overlay or bool(cfg.heatmap)
    overlays = Overlays(Path(cfg.overlay_dir), cfg.overlay, cfg.heatmap, cfg.overwrite) if drawn else None
    boxes = BoxTable(cfg.out or None, cfg.threshold_frac, cfg.component, overlays.files if overlays else None)
    return [s for s in (overlays, dicom) if s is not None] + [boxes], boxes


def run_localize(
    cfg: LocalizeConfig, hooks: Hooks = Hooks(), *, model: Model | None = None, sinks: Sequence[Sink] = ()
) -> LocalizeReport:
    """Box the class activation map of every image in ``cfg.paths``; hand each to the sinks as it comes (boxes,
    overlays, heatmaps, DICOM objects: :func:`localize_sinks`, then ``sinks``, more outputs).

    An empty ``cfg.out`` writes no boxes file, ``-`` writes the JSON to standard output; ``model``: see
    :func:`~mura_cli.engine.serving.screen.run_inference`.

    Each row's ``study`` is the image's study as ``mura predict`` groups it (MURA study folder, DICOM
    StudyInstanceUID, else the file's folder). When no image could be scored, nothing is written but the
    errors CSV (:func:`~mura_cli.engine.serving.screen.require_scored` raises).
    """
    own, boxes = localize_sinks(cfg)
    every = [*own, *sinks]
    ensure_new(errors_path(cfg.out) if cfg.out and not is_stdout(cfg.out) else None, cfg.overwrite)
    locs: list[Localization] = []

    def box(p: ImagePrediction) -> ImagePrediction:
        """Box one image as it comes, hand it to the sinks, and keep it without map and pixels."""
        loc = localize(p, cfg.threshold_frac, cfg.component)
        feed(every, p, loc)
        locs.append(loc)
        return replace(p, cam=None, meta={k: v for k, v in p.meta.items() if k not in ("pixels", FULL_MAP)})

    kw: dict[str, Any] = {"with_cam": True, "keep_pixels": needs_pixels(every), "hooks": hooks, "consume": box}
    run = run_inference(cfg, per_image=False, model=model, **kw)
    written = close_all(every, SinkContext(run.models, hooks=hooks))  # no row, no boxes file (nothing scored)
    run = replace(run, failures=run.failures + tuple(f for w in written for f in w.failures))
    require_scored(run, cfg.out)
    rows, drawn = tuple(boxes.rows), sum(1 for r in boxes.rows if "overlay" in r)
    out = Path(cfg.out) if cfg.out else None
    errors = write_errors(out, (*run.failures, *run.skipped)) if out else None
    overlay_dir = Path(cfg.overlay_dir) if cfg.overlay else None
    return LocalizeReport(run, rows, out, drawn, errors, dicom_report(written), tuple(locs), overlay_dir)
