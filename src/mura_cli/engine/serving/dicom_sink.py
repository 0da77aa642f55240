"""The DICOM results sink: predictions (and boxes, overlays) of DICOM inputs in, DICOM objects out.

A :class:`~mura_cli.engine.serving.sinks.Sink`: predict and localize hand it what they made, image by image
(:meth:`DicomSink.add`); it keeps only each image's header, probability and box (a secondary capture is written at
once, drawn from the image and its map) and, at :meth:`DicomSink.close`, writes one measurement report per study and
one presentation state per boxed image (:mod:`mura_cli.report.dicom_objects`) under ``out_dir/<StudyInstanceUID>/``,
each file written whole or not at all; then, when a target is given, stores them with STOW-RS
(:func:`mura_cli.data.dicomweb.store`). Inputs that are not DICOM get no DICOM objects (counted, not failures).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mura_cli.cam import Box
from mura_cli.data.sources import read_header
from mura_cli.engine.hooks import Failure
from mura_cli.engine.serving.predict import ImagePrediction, Localization
from mura_cli.engine.serving.sinks import SinkContext, Written, image_map
from mura_cli.errors import MuraError, UsageError
from mura_cli.report.dicom_objects import (
    OBJECT_KINDS,
    Algorithm,
    ImageFinding,
    StudyFinding,
    build_gsps,
    build_sc,
    build_sr,
)
from mura_cli.utils import atomic_path

log = logging.getLogger(__name__)

HeaderReader = Callable[[str], Any]
"""``name -> header`` (a pydicom Dataset without pixel data), or ``None`` for an input that is not DICOM."""


def parse_objects(spec: str | Sequence[str] | None, applicable: Sequence[str]) -> tuple[str, ...]:
    """``sr,pr,sc`` (or a sequence) -> the kinds to write, in :data:`OBJECT_KINDS` order; ``None``/empty: all that
    ``applicable`` allows (predict has no boxes, so only the report applies there)."""
    if not spec:
        return tuple(applicable)
    items = [s.strip().lower() for s in ([spec] if isinstance(spec, str) else spec) for s in s.split(",")]
    bad = [s for s in items if s not in OBJECT_KINDS]
    if bad:
        raise UsageError(f"--dicom-objects {','.join(bad)}: expected some of {','.join(OBJECT_KINDS)}")
    missing = [s for s in items if s not in applicable]
    if missing:
        raise UsageError(
            f"--dicom-objects {','.join(missing)}: needs class activation map boxes; use mura localize for those"
        )
    return tuple(k for k in OBJECT_KINDS if k in items)


@dataclass(frozen=True)
class DicomReport:
    """What the sink wrote and sent.

    Attributes:
        written: the DICOM files written, by kind (``sr``, ``pr``, ``sc``).
        not_dicom: scored images that were not DICOM (no objects for them).
        stored: objects the STOW-RS target confirmed.
        failures: objects the target refused or that could not be sent (their local copies stay).
        sent: whether a STOW-RS target was given.
    """

    written: dict[str, tuple[Path, ...]]
    not_dicom: int = 0
    stored: int = 0
    failures: tuple[Failure, ...] = field(default=())
    sent: bool = False

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.written.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{len(v)} {k.upper()}" for k, v in self.written.items() if v) or "none"
        return kinds + (f", {self.not_dicom} not DICOM" if self.not_dicom else "")


@dataclass
class _Entry:
    header: Any
    pred: ImagePrediction
    box: Box | None


class DicomSink:
    """Collects scored DICOM images and writes their DICOM results (see the module docstring).

    Args:
        out_dir: where the objects go, one folder per study; created on demand.
        kinds: which objects (``sr``, ``pr``, ``sc``).
        header_of: reads an input's header by name (:func:`~mura_cli.data.sources.read_header`).
        threshold: label every study at this threshold; ``None``: at the mean threshold of the models that scored
            its images.
        aggregate: a study's probability from its images': ``mean`` or ``max``.
        send: a DICOMweb server to store the files written on (STOW-RS), keeping them either way.
    """

    def __init__(
        self,
        out_dir: str | Path,
        kinds: Sequence[str],
        header_of: HeaderReader = read_header,
        *,
        threshold: float | None = None,
        aggregate: str = "mean",
        send: str | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.kinds = tuple(kinds)
        self.header_of = header_of
        self.threshold, self.aggregate, self.send = threshold, aggregate, send
        self.needs_pixels = "sc" in self.kinds
        self._entries: list[_Entry] = []
        self._series: dict[tuple[str, str], str] = {}
        self._written: dict[str, list[Path]] = {k: [] for k in self.kinds}
        self._not_dicom = 0
        self._failures: list[Failure] = []

    def add(self, pred: ImagePrediction, localization: Localization | None = None) -> None:
        """Record one scored image (and its box); with ``sc`` and a map, write its secondary capture now."""
        box = localization.box if localization is not None else None
        try:
            header = self.header_of(pred.path)
        except MuraError as exc:  # a source that went away: this image has no DICOM results, the others go on
            self._failures.append(Failure(pred.path, f"{pred.path}: no DICOM results ({exc})", "dicom"))
            return
        if header is None:
            self._not_dicom += 1
            return
        entry = _Entry(header, pred, box)
        self._entries.append(entry)
        if "sc" in self.kinds and localization is not None and pred.cam is not None:
            from mura_cli.report.overlay import render_overlay

            overlay = np.asarray(render_overlay(pred.meta["pixels"], image_map(pred), box, pred.probability))
            finding = self._finding(entry)
            algo = Algorithm(pred.model, "", _version())
            n = len(self._written["sc"]) + 1
            self._build("sc", pred.path, build_sc, finding, overlay, algo, self._series_uid(header, "sc"), n)

    def close(self, context: SinkContext) -> Written:
        """Write what was collected, identifying the algorithm by ``context.models`` (names, weights SHA-256); with
        ``send``, store the files written on that server. The :class:`DicomReport` is ``report`` of the result."""
        from mura_cli.engine.serving.load import weights_sha256

        models = context.models
        names = "+".join(dict.fromkeys(m.short_name for m in models)) or "unknown"
        report = self.write(Algorithm(names, weights_sha256(models) or "unknown", _version()))
        if self.send:
            report = _store(report, self.send)
        files = tuple(f for k in OBJECT_KINDS for f in report.written.get(k, ()))
        return Written(files, report.failures, report)

    def write(self, algorithm: Algorithm) -> DicomReport:
        """Write the reports (one per study) and presentation states (one per boxed image); return what was written.

        Each study is labelled at ``threshold`` when given, else at the mean threshold of the models that scored
        its images, from the ``aggregate`` (``mean`` or ``max``) of its images' probabilities.
        """
        if "pr" in self.kinds:
            for n, e in enumerate((e for e in self._entries if e.box is not None), 1):
                series = self._series_uid(e.header, "pr")
                self._build("pr", e.pred.path, build_gsps, self._finding(e), algorithm, series, n)
        if "sr" in self.kinds:
            for study in self.studies(self.threshold, self.aggregate):
                header = study.images[0].source
                series = self._series_uid(header, "sr")
                self._build("sr", f"study {study.study_uid}", build_sr, study, algorithm, series)
        written = {k: tuple(v) for k, v in self._written.items()}
        return DicomReport(written, self._not_dicom, failures=tuple(self._failures))

    def studies(self, threshold: float | None, aggregate: str) -> list[StudyFinding]:
        """The collected images grouped by Study Instance UID, in input order."""
        by_study: dict[str, list[_Entry]] = {}
        for e in self._entries:
            by_study.setdefault(str(e.header.StudyInstanceUID), []).append(e)
        out = []
        for uid, entries in by_study.items():
            probs = [e.pred.probability for e in entries]
            prob = float(np.max(probs) if aggregate == "max" else np.mean(probs))
            thr = threshold if threshold is not None else float(np.mean([e.pred.threshold for e in entries]))
            out.append(StudyFinding(uid, prob, thr, tuple(self._finding(e) for e in entries)))
        return out

    def _finding(self, e: _Entry) -> ImageFinding:
        box = None if e.box is None else (e.box.x0, e.box.y0, e.box.x1, e.box.y1)
        return ImageFinding(e.header, e.pred.frame, e.pred.probability, box)

    def _series_uid(self, header: Any, kind: str) -> str:
        from pydicom.uid import generate_uid

        return self._series.setdefault((str(header.StudyInstanceUID), kind), str(generate_uid()))

    def _build(self, kind: str, name: str, build: Callable[..., Any], *args: Any) -> None:
        """Build one object (highdicom's warnings to the log) and write it; a source highdicom refuses (e.g. frames
        in a single-frame IOD) is a failure of that object, named, and the others go on."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ds = build(*args)
            except (ValueError, TypeError, AttributeError) as exc:
                why = f"{name}: no {kind.upper()} written: highdicom refused the source ({exc})"
                self._failures.append(Failure(name, why, "dicom"))
                return
        for w in caught:
            log.info("highdicom: %s", w.message)
        self._write(kind, ds)

    def _write(self, kind: str, ds: Any) -> Path:
        target = self.out_dir / str(ds.StudyInstanceUID) / f"{kind}-{ds.SOPInstanceUID}.dcm"
        with atomic_path(target) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        self._written[kind].append(target)
        return target


def _version() -> str:
    from mura_cli._version import __version__

    return __version__


def open_sink(
    cfg: Any,
    applicable: Sequence[str],
    header_of: HeaderReader = read_header,
    *,
    threshold: float | None = None,
    aggregate: str = "mean",
) -> DicomSink | None:
    """The sink an inference config asks for (``cfg.dicom_out``, ``cfg.dicom_objects``, ``cfg.send``), or ``None``;
    ``threshold``, ``aggregate``: see :class:`DicomSink`."""
    if not cfg.dicom_out:
        return None
    from mura_cli.report.dicom_objects import _hd

    _hd()  # a missing highdicom is one line before any work, not after it
    kinds = parse_objects(cfg.dicom_objects, applicable)
    return DicomSink(cfg.dicom_out, kinds, header_of, threshold=threshold, aggregate=aggregate, send=cfg.send)


def _store(report: DicomReport, send: str) -> DicomReport:
    """Store the files ``report`` lists on ``send`` (STOW-RS); the ones refused are failures, kept here."""
    from mura_cli.data.dicomweb import store

    files = [f for k in OBJECT_KINDS for f in report.written.get(k, ())]
    result = store(send, files)
    failed = tuple(Failure(str(f), f"{f}: not stored, kept here: {why}", "send") for f, why in result.failed)
    return replace(report, stored=len(result.stored), failures=report.failures + failed, sent=True)


def dicom_report(written: Sequence[Written]) -> DicomReport | None:
    """The DICOM sink's report among what a job's sinks wrote, or ``None`` (no ``--dicom-out``)."""
    return next((w.report for w in written if isinstance(w.report, DicomReport)), None)
