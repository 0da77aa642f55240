"""The screening jobs: :func:`run_inference` (inputs, model choice, every file through :func:`predict`; shared by
predict and localize) and :func:`run_predict` (``mura predict``: its sinks, :func:`predict_sinks`, fed once every
file is scored; resumable through a journal)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mura_cli.config import InferConfig, PredictConfig
from mura_cli.data.sources import Input, scan_sources, source_query
from mura_cli.engine.hooks import Failure, Hooks, errors_path, write_errors
from mura_cli.engine.results import to_pandas
from mura_cli.engine.serving.dicom_sink import DicomReport, dicom_report, open_sink
from mura_cli.engine.serving.journal import Journal, journal_path
from mura_cli.engine.serving.load import LoadedModel, Model, ModelChoice, at_operating_point, load_model, weights_sha256
from mura_cli.engine.serving.predict import (
    ImagePrediction,
    StudyPrediction,
    group_studies,
    part_mismatch_warnings,
    predict,
)
from mura_cli.engine.serving.sinks import ImageTable, Sink, SinkContext, StudyTable, close_all, feed
from mura_cli.errors import DataError, UsageError
from mura_cli.utils import ensure_new, hash_id, is_stdout, plural


@dataclass(frozen=True)
class InferenceRun:
    """What a pass over the inputs produced: predictions, failures (stages ``discover``, ``decode``, ``sanity``),
    skipped non-images (stage ``discover``, never a failure) and the model(s)."""

    predictions: tuple[ImagePrediction, ...]
    failures: tuple[Failure, ...]
    skipped: tuple[Failure, ...]
    models: tuple[LoadedModel, ...]
    choice: ModelChoice


def run_inference(
    cfg: InferConfig,
    *,
    per_image: bool,
    with_cam: bool = False,
    keep_pixels: bool = False,
    hooks: Hooks = Hooks(),
    journal: Journal | None = None,
    consume: Callable[[ImagePrediction], ImagePrediction] | None = None,
    model: Model | None = None,
) -> InferenceRun:
    """Discover the inputs, choose and load the model(s), predict every file; shared by predict and localize.

    With a ``journal`` every scored frame and failed file is recorded as it happens, and files an earlier run
    journalled are not scored again: their rows come back from the journal, in input order. Without a journal,
    ``consume`` sees each prediction as it is made and returns what to keep of it (localize boxes the map and
    drops it, so memory does not grow with the number of inputs). A loaded ``model`` is used as it is
    (``cfg.model``, ``device``, ``engine`` and ``tta`` then do not apply); else :func:`load_model` loads ``cfg.model``.
    """
    scan = scan_sources(cfg.paths, source_query(cfg))
    files = scan.images
    failures, skipped = ([Failure(str(i.path), f"{i.path}: {i.reason}", "discover") for i in v] for v in scan.split)
    for f in failures:
        hooks.on_failure(f)
    if not files:
        counts = f"{plural(len(failures), 'failed input')}, {plural(len(skipped), 'other path')} skipped"
        if failures:
            raise DataError(f"no readable image files among {', '.join(cfg.paths)} ({counts})")
        raise UsageError(f"no image files among {', '.join(cfg.paths)} ({counts})")
    if model is None:
        model = load_model(
            cfg.model,
            device=cfg.device,
            engine=cfg.engine,
            tta=cfg.tta,
            runs_dir=cfg.runs_dir,
            inputs=len(files),
            on_info=hooks.on_info,
        )
    choice, models = model.choice, list(model.members)
    if isinstance(getattr(cfg, "threshold", None), str):  # an operating point: each model's stored threshold
        models = at_operating_point(models, cfg.threshold)  # type: ignore[attr-defined]

    def failed(f: Failure) -> None:
        failures.append(f)
        hooks.on_failure(f)

    if journal is None:
        hooks_in = Hooks(on_progress=hooks.on_progress, on_failure=failed)
        kw: dict[str, Any] = {
            "per_image": per_image,
            "with_cam": with_cam,
            "keep_pixels": keep_pixels,
            "hooks": hooks_in,
        }
        preds = [consume(p) if consume else p for p in predict(files, models, cfg, **kw)]
    else:
        preds = _journalled(files, models, cfg, per_image, journal, hooks, failures)
    run = InferenceRun(tuple(preds), tuple(failures), tuple(skipped), tuple(models), choice)
    for message in part_mismatch_warnings(run.predictions, models):
        hooks.on_warning(message)
    return run


def _journalled(
    files: list[Input],
    models: list[LoadedModel],
    cfg: InferConfig,
    per_image: bool,
    journal: Journal,
    hooks: Hooks,
    failures: list[Failure],
) -> list[ImagePrediction]:
    """Predict the files ``journal`` has not finished, recording as it goes; with its rows, in input order."""
    settings = {k: getattr(cfg, k) for k in ("part", "engine", "tta", "hash_ids", "max_pixels")}
    journal.start(
        {
            "weights": weights_sha256(models),
            "models": [m.name for m in models],
            "per_image": per_image,
            **settings,
            "salt": hash_id("salt", cfg.salt) if cfg.salt else None,
        }
    )
    names = [str(f) for f in files]
    frames, old_failures = journal.restored(names)
    todo = [f for f, n in zip(files, names, strict=True) if not journal.done(n)]
    if len(todo) < len(files):
        hooks.on_info(f"resuming: {plural(len(files) - len(todo), 'file')} already scored, {len(todo)} to go")
    new_failures: list[Failure] = []

    def failed(f: Failure) -> None:
        new_failures.append(f)
        journal.record_failure(f)
        hooks.on_failure(f)

    preds = [ImagePrediction(**{k: v for k, v in f.items() if k != "frames"}) for f in frames]
    hooks_in = Hooks(on_progress=hooks.on_progress, on_failure=failed)
    for p in predict(todo, models, cfg, per_image=per_image, hooks=hooks_in):
        journal.record_frame({k: getattr(p, k) for k in _JOURNAL_FIELDS}, int(p.meta.get("frames", 1)))
        preds.append(p)
    order = {n: i for i, n in enumerate(names)}
    preds.sort(key=lambda p: (order[p.path], p.frame))
    failures.extend(sorted([*old_failures, *new_failures], key=lambda f: order.get(f.path, -1)))
    return preds


def _images(preds: tuple[ImagePrediction, ...], level: str) -> tuple[ImagePrediction, ...]:
    if level != "image":
        raise UsageError(f"level={level!r}: expected 'study' or 'image'")
    return preds


_JOURNAL_FIELDS = ("path", "frame", "study", "part", "probability", "model", "width", "height", "threshold")


@dataclass(frozen=True)
class PredictReport:
    """The ``mura predict`` job: its studies and images, and the files written: studies to ``out`` (``None``: not
    written, as :func:`mura_cli.predict` does by default), images to ``images``, failures to ``errors``."""

    run: InferenceRun
    studies: tuple[StudyPrediction, ...]
    out: Path | None
    images: Path | None
    errors: Path | None = None
    dicom: DicomReport | None = None

    @property
    def predictions(self) -> tuple[ImagePrediction, ...]:
        """One per image (per frame of a multi-frame DICOM), in input order."""
        return self.run.predictions

    @property
    def failures(self) -> tuple[Failure, ...]:
        """Inputs that could not be scored (the others were)."""
        return self.run.failures

    def to_records(self, level: str = "study") -> list[dict[str, Any]]:
        """The rows of the CSVs: one per study (``level="study"``, as ``--out``) or per image (``"image"``)."""
        return [r.to_row() for r in (self.studies if level == "study" else _images(self.run.predictions, level))]

    def to_pandas(self, level: str = "study") -> Any:
        """:meth:`to_records` as a ``pandas.DataFrame`` (needs pandas)."""
        return to_pandas(self.to_records(level))

    @property
    def threshold_label(self) -> str:
        """The threshold used, or its range when studies were labelled by models with different ones."""
        used = sorted({round(s.threshold, 4) for s in self.studies})
        if not used:
            return "-"
        return f"{used[0]:.2f}" if len(used) == 1 else f"per model, {used[0]:.2f}-{used[-1]:.2f}"


def require_scored(run: InferenceRun, out: str | Path) -> None:
    """When no image could be scored, list the failures beside ``out`` (when given) and raise; ``out`` itself
    is not written.

    Raises:
        DataError: every input failed (the message names the errors CSV).
    """
    if run.predictions:
        return
    errors = write_errors(out, (*run.failures, *run.skipped)) if out else None
    raise DataError(
        f"no image could be scored: {plural(len(run.failures), 'input')} failed"
        + (f", listed with reasons in {errors}" if errors else "")
        + (f"; {out} not written" if out else "")
    )


def _fixed(cfg: PredictConfig) -> float | None:
    """The threshold every study is labelled at, or ``None`` (an operating point: each model's own)."""
    return cfg.threshold if not isinstance(cfg.threshold, str) else None


def predict_sinks(cfg: PredictConfig) -> list[Sink]:
    """``mura predict``'s sinks, in the order they are closed: the study table (``out``), the image CSV
    (``images``), the DICOM reports (``dicom_out``); checked first: the DICOM options, then ``out``, ``images``."""
    dicom = open_sink(cfg, ("sr",), threshold=_fixed(cfg), aggregate=cfg.aggregate)
    ensure_new(cfg.out or None, cfg.overwrite)
    ensure_new(cfg.images, cfg.overwrite)
    sinks: list[Sink] = [StudyTable(cfg.out, cfg.fmt, cfg.per_image)] if cfg.out else []
    if cfg.images:
        sinks.append(ImageTable(cfg.images))
    return [*sinks, dicom] if dicom else sinks


def run_predict(
    cfg: PredictConfig, hooks: Hooks = Hooks(), *, model: Model | None = None, sinks: Sequence[Sink] = ()
) -> PredictReport:
    """Screen ``cfg.paths``: predict every image, group studies, hand them to the sinks (the study CSV, ...).

    An empty ``cfg.out`` writes no study CSV (nor a journal: nothing to resume); ``-`` writes it to standard output
    (no journal, and no errors CSV: failures are named as they happen); ``model``: see :func:`run_inference`;
    ``sinks``: more outputs, after :func:`predict_sinks`'.
    """
    if cfg.resume and not cfg.out:
        raise UsageError("resume needs the output file of the killed run: pass out")
    every = [*predict_sinks(cfg), *sinks]
    to_file = bool(cfg.out) and not is_stdout(cfg.out)
    ensure_new(errors_path(cfg.out) if to_file else None, cfg.overwrite)
    journal = Journal(journal_path(cfg.out), resume=cfg.resume, overwrite=cfg.overwrite) if to_file else None
    run = run_inference(cfg, per_image=cfg.per_image, hooks=hooks, journal=journal, model=model)
    if journal:
        journal.close(remove=not run.predictions)  # nothing scored: nothing to resume either
    require_scored(run, cfg.out)
    for p in run.predictions:
        feed(every, p)
    studies = group_studies(run.predictions, _fixed(cfg), cfg.aggregate)
    written = close_all(every, SinkContext(run.models, tuple(studies), hooks))
    run = replace(run, failures=run.failures + tuple(f for w in written for f in w.failures))
    errors = write_errors(cfg.out, (*run.failures, *run.skipped)) if cfg.out else None
    if journal:
        journal.close(remove=True)
    out = Path(cfg.out) if cfg.out else None
    images = Path(cfg.images) if cfg.images else None
    return PredictReport(run, tuple(studies), out, images, errors, dicom_report(written))
