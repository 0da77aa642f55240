"""Where results go: the :class:`Sink` protocol, and the file outputs of predict and localize as sinks.

A job builds its list of sinks from its config (:func:`~mura_cli.engine.serving.screen.predict_sinks`,
:func:`~mura_cli.engine.serving.localize.localize_sinks`: their files are checked against ``--overwrite`` before
anything runs), hands every sink every scored image as it comes
(:meth:`Sink.add`: the :class:`~mura_cli.engine.serving.predict.ImagePrediction`, and its
:class:`~mura_cli.engine.serving.predict.Localization` in localize), and closes them in order at the end
(:meth:`Sink.close`, with what only the end knows: the models, the studies); each says what it wrote
(:class:`Written`), and its failures go to the job's errors CSV. A new output is a new sink class here or in its
own module (the DICOM objects: :mod:`mura_cli.engine.serving.dicom_sink`), not a branch in the pipeline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mura_cli.cam import resize_map
from mura_cli.data.inputs import mura_path_warnings
from mura_cli.engine.hooks import Failure, Hooks
from mura_cli.engine.serving.load import LoadedModel
from mura_cli.engine.serving.predict import ImagePrediction, Localization, StudyPrediction
from mura_cli.utils import ensure_new, write_csv, write_json, write_text


@dataclass(frozen=True)
class SinkContext:
    """What a sink learns at the end of a job: the models that scored (``models``), the studies formed
    (``studies``; predict only) and the job's ``hooks`` (for warnings)."""

    models: tuple[LoadedModel, ...] = ()
    studies: tuple[StudyPrediction, ...] = ()
    hooks: Hooks = field(default_factory=Hooks)


@dataclass(frozen=True)
class Written:
    """What a sink wrote: the ``files``, the ``failures`` (they join the job's errors CSV), and a sink's own
    ``report`` (the DICOM sink's :class:`~mura_cli.engine.serving.dicom_sink.DicomReport`)."""

    files: tuple[Path, ...] = ()
    failures: tuple[Failure, ...] = field(default=())
    report: Any = None


class Sink(Protocol):
    """Consumes the scored images of a job and writes one output.

    A sink that draws on the radiograph sets ``needs_pixels = True`` (the job then keeps each image's pixels in
    ``prediction.meta["pixels"]`` until every sink has seen it); localize's predictions carry their map
    (``prediction.cam``) until then, predict's do not.
    """

    def add(self, prediction: ImagePrediction, localization: Localization | None = None) -> None:
        """One scored image (one frame), in input order."""

    def close(self, context: SinkContext) -> Written:
        """Write what is left to write; say what was written."""


def needs_pixels(sinks: Sequence[Sink]) -> bool:
    """Whether any of ``sinks`` draws on the radiograph."""
    return any(getattr(s, "needs_pixels", False) for s in sinks)


def feed(sinks: Sequence[Sink], prediction: ImagePrediction, localization: Localization | None = None) -> None:
    """Hand one scored image to every sink, in order."""
    for s in sinks:
        s.add(prediction, localization)


def close_all(sinks: Sequence[Sink], context: SinkContext) -> tuple[Written, ...]:
    """Close every sink, in order."""
    return tuple(s.close(context) for s in sinks)


FULL_MAP = "cam_full"
"""``prediction.meta`` key of the map at the image's own size, made by the first sink that draws (:func:`image_map`)
and let go with the pixels when every sink has seen the image."""


def image_map(pred: ImagePrediction) -> np.ndarray:
    """``pred.cam`` at the image's own size, resized once per image: the sinks that draw the same image share it
    through ``pred.meta``."""
    assert pred.cam is not None
    full = pred.meta.get(FULL_MAP)
    if full is None:
        full = pred.meta[FULL_MAP] = resize_map(pred.cam, pred.height, pred.width)
    return full


# ============================================================================================ predict


class StudyTable:
    """The study results of ``mura predict`` at ``out`` (``-``: standard output): ``csv`` (one row per study),
    ``mura`` (the MURA submission: study path, label; no header) or ``jsonl`` (one record per image with its
    study's probability, label and threshold)."""

    def __init__(self, out: str, fmt: str, per_image: bool) -> None:
        self.out, self.fmt, self.per_image = out, fmt, per_image
        self._preds: list[ImagePrediction] = []

    def add(self, prediction: ImagePrediction, localization: Localization | None = None) -> None:
        self._preds.append(prediction)

    def close(self, context: SinkContext) -> Written:
        studies = context.studies
        if self.fmt == "mura":
            for message in mura_path_warnings([p.path for p in self._preds], self.per_image):
                context.hooks.on_warning(message)
            write_csv(self.out, [{"Study": s.study, "Model": s.prediction} for s in studies], header=False)
        elif self.fmt == "jsonl":
            write_text(self.out, "".join(json.dumps(row) + "\n" for row in image_records(self._preds, studies)))
        else:
            write_csv(self.out, [s.to_row() for s in studies])
        return Written((Path(self.out),))


def image_records(preds: Sequence[ImagePrediction], studies: Sequence[StudyPrediction]) -> list[dict[str, Any]]:
    """One record per image (``--format jsonl``): its own row, then its study's probability, label and threshold."""
    by_study = {s.study: s for s in studies}
    records = []
    for p in preds:
        s = by_study[p.study]
        study = {"study_probability": round(s.probability, 6), "prediction": s.prediction}
        records.append({**p.to_row(), **study, "threshold": round(s.threshold, 6)})
    return records


class ImageTable:
    """One CSV row per image (per frame) at ``out`` (``--images``)."""

    def __init__(self, out: str) -> None:
        self.out = out
        self._rows: list[dict[str, Any]] = []

    def add(self, prediction: ImagePrediction, localization: Localization | None = None) -> None:
        self._rows.append(prediction.to_row())

    def close(self, context: SinkContext) -> Written:
        return Written((write_csv(self.out, self._rows),))


# ============================================================================================ localize


def overlay_name(path: str, frame: int) -> str:
    """A flat, safe file name for an image's overlay (its last four path parts, no folders)."""
    parts = Path(path).with_suffix("").parts[-4:]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts)).strip("_.")
    return f"{name}{f'_f{frame}' if frame else ''}_cam.png"


class Overlays:
    """Per image, into ``folder``: the map blended over the radiograph with its box (``overlay``, PNG) and the raw
    map at the image's size (``heatmap``: ``png`` 16-bit or ``npy``); each file refused if there, unless
    ``overwrite``."""

    def __init__(self, folder: Path, overlay: bool, heatmap: str | None, overwrite: bool) -> None:
        self.folder, self.overlay, self.heatmap, self.overwrite = folder, overlay, heatmap, overwrite
        self.needs_pixels = overlay
        self._written: list[Path] = []

    def files(self, prediction: ImagePrediction) -> dict[str, Path]:
        """The files of one image: ``overlay`` and/or ``heatmap``."""
        name = overlay_name(prediction.path, prediction.frame)
        out = {"overlay": self.folder / name} if self.overlay else {}
        if self.heatmap:
            out["heatmap"] = self.folder / name.replace("_cam.png", f"_heatmap.{self.heatmap}")
        return out

    def add(self, prediction: ImagePrediction, localization: Localization | None = None) -> None:
        from mura_cli.report.overlay import save_heatmap, save_overlay

        assert localization is not None
        for kind, target in self.files(prediction).items():
            ensure_new(target, self.overwrite)
            if kind == "overlay":
                full = image_map(prediction)
                save_overlay(target, prediction.meta["pixels"], full, localization.box, prediction.probability)
            else:
                save_heatmap(target, image_map(prediction))
            self._written.append(target)

    def close(self, context: SinkContext) -> Written:
        return Written(tuple(self._written))


class BoxTable:
    """One row per image (:meth:`~mura_cli.engine.serving.predict.Localization.to_row`, with the paths ``files``
    gives it: the overlay and heatmap) at ``out``: CSV for a ``.csv`` name, else JSON with the box settings
    (``-``: standard output); ``out=None`` only collects the rows. No row (nothing scored): nothing written."""

    def __init__(
        self,
        out: str | None,
        threshold_frac: float,
        component: str,
        files: Callable[[ImagePrediction], dict[str, Path]] | None = None,
    ) -> None:
        self.out, self.threshold_frac, self.component, self.files = out, threshold_frac, component, files
        self.rows: list[dict[str, Any]] = []

    def add(self, prediction: ImagePrediction, localization: Localization | None = None) -> None:
        assert localization is not None
        row = localization.to_row()
        if self.files is not None:
            row.update({k: str(v) for k, v in self.files(prediction).items()})
        self.rows.append(row)

    def close(self, context: SinkContext) -> Written:
        if not self.out or not self.rows:
            return Written()
        out = Path(self.out)
        if out.suffix.lower() == ".csv":
            write_csv(out, self.rows)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_json(out, {"threshold_frac": self.threshold_frac, "component": self.component, "boxes": self.rows})
        return Written((out,))


__all__ = [
    "FULL_MAP",
    "BoxTable",
    "ImageTable",
    "Overlays",
    "Sink",
    "SinkContext",
    "StudyTable",
    "Written",
    "close_all",
    "feed",
    "image_map",
    "image_records",
    "needs_pixels",
    "overlay_name",
]
