"""``mura benchmark``: how good and how fast a model is, beside the published numbers.

:func:`run_benchmark` predicts the chosen split once (through the one inference loop), scores it per body part
and overall at image and study level with bootstrap confidence intervals resampled by study, optionally scores
CAM boxes against the index's ground-truth boxes and times the stages, and writes the report folder.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from mura_cli.config import BenchmarkConfig, InferConfig
from mura_cli.data.index import Index, IndexRow, part_from_name
from mura_cli.data.sources import input_named
from mura_cli.engine.hooks import Failure, Hooks, write_errors
from mura_cli.engine.results import to_pandas
from mura_cli.engine.serving.load import LoadedModel, Model, load_model, weights_sha256
from mura_cli.engine.serving.localize import localize
from mura_cli.engine.serving.predict import ImagePrediction, part_mismatch_warnings, predict
from mura_cli.errors import UsageError
from mura_cli.metrics import aggregate_by_study
from mura_cli.utils import plural

REPORT_FILE = "report.json"


@dataclass(frozen=True)
class BenchmarkReport:
    """What ``mura benchmark`` measured (``report``, JSON-ready), the files it wrote, and the images that could
    not be scored (listed in ``errors``, ``report.errors.csv`` in the report folder, when there are any)."""

    report: dict[str, Any]
    out: Path
    files: tuple[Path, ...]
    failures: tuple[Failure, ...]
    errors: Path | None = None

    def to_records(self) -> list[dict[str, Any]]:
        """The accuracy tables in long form: one row per level (study, image), part and metric, with the point
        value and its 95% bootstrap interval (``None`` where undefined). Empty for a speed-only run."""
        rows = []
        for level, table in (self.report.get("levels") or {}).items():
            for part, entry in table["parts"].items():
                for metric, est in entry["metrics"].items():
                    rows.append({"level": level, "part": part, "metric": metric, "n": entry["n"], **est})
        return rows

    def to_pandas(self) -> Any:
        """:meth:`to_records` as a ``pandas.DataFrame`` (needs pandas)."""
        return to_pandas(self.to_records())


@dataclass(frozen=True)
class _Scored:
    """Predictions of one split, aligned with its rows (rows whose file failed are left out)."""

    rows: tuple[IndexRow, ...]
    probabilities: np.ndarray
    thresholds: np.ndarray
    boxes: tuple[dict[str, Any], ...]
    failures: tuple[Failure, ...]


def choose_split(index: Index, split: str | None) -> str:
    """``split`` checked against the index; by default ``valid`` when the index has it, else ``tune``."""
    have = {r.split for r in index.rows}
    if split is None:
        split = "valid" if "valid" in have else "tune"
    if split != "all" and split not in have:
        raise UsageError(f"--split {split}: this index has {', '.join(sorted(have))} (or all)")
    return split


def run_benchmark(
    cfg: BenchmarkConfig, hooks: Hooks = Hooks(), *, command: str = "", model: Model | None = None
) -> BenchmarkReport:
    """Score and/or time a model as ``cfg`` says and write the report folder ``cfg.out``.

    A loaded ``model`` is used as it is (``cfg.model``, ``engine`` and ``tta`` then do not apply).
    """
    from mura_cli.engine.evaluation.speed import machine_info
    from mura_cli.report.benchmark import write_benchmark_report
    from mura_cli.utils import resolve_device

    out = Path(cfg.out)
    if (out / REPORT_FILE).exists() and not cfg.overwrite:
        raise UsageError(f"{out}: holds a benchmark report; choose another --out or pass --overwrite")
    if not cfg.data and not cfg.speed:
        raise UsageError("nothing to measure: pass --data ROOT (accuracy) and/or --speed")
    device = resolve_device(cfg.device)
    machine = machine_info(device, peaks=cfg.speed and device == "cpu")  # the matmul peaks for --speed rows
    report: dict[str, Any] = {
        "command": command,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": machine.pop("versions"),
        "machine": machine,
        "model": None,
        "data": None,
        "bootstrap": {"resamples": cfg.resamples, "seed": cfg.seed, "unit": "study", "alpha": 0.05},
        "threshold": cfg.threshold,
        "levels": {},
        "references": [],
        "boxes": None,
        "speed": None,
        "failures": [],
    }
    curves: dict[str, dict[str, tuple[list[int], list[float]]]] = {}
    models: list[LoadedModel] = []
    failures: tuple[Failure, ...] = ()
    # --arch without --model: a speed run with random weights, --data only gives the images to time
    scoring = bool(cfg.data) and (bool(cfg.model) or not cfg.archs)
    if scoring or not cfg.archs:
        if model is None:
            model = load_model(
                cfg.model, device=device, engine=cfg.engine, tta=cfg.tta, runs_dir=cfg.runs_dir, on_info=hooks.on_info
            )
        models = list(model.members)
        report["model"] = _model_info(model.choice.specs, models)
    index = None
    if cfg.data:
        index = _index(cfg)
    if scoring:
        assert index is not None
        curves, failures = _accuracy(cfg, index, models, report, hooks)
    if cfg.speed:
        report["speed"] = {"rows": [r.to_dict() for r in _speed(cfg, index, models, device, hooks, machine)]}
    files = write_benchmark_report(out, report, curves, overwrite=cfg.overwrite)
    return BenchmarkReport(report, out, tuple(files), failures, write_errors(out / "report.json", failures))


def _index(cfg: BenchmarkConfig) -> Index:
    """The index ``--data`` names: a dataset (prepared or not), or the labelled studies on a DICOMweb server."""
    from mura_cli.data.dicomweb import is_dicomweb, labelled_index

    if is_dicomweb(cfg.data):
        return labelled_index(cfg.data, cfg.labels)
    if cfg.labels:
        raise UsageError("--labels gives the truth of DICOMweb studies; a dataset folder carries its own labels")
    from mura_cli.engine.training.train_data import resolve_index

    return resolve_index(cfg.data)[0]


def _model_info(specs: tuple[str, ...], models: list[LoadedModel]) -> dict[str, Any]:
    first = models[0].config
    return {
        "specs": list(specs),
        "sha256": weights_sha256(models),
        "arch": "+".join(sorted({m.config.arch for m in models})),
        "part": "+".join(sorted({m.part for m in models})),
        "input": first.transform.output_size,
        "threshold": sorted({m.threshold for m in models}),
    }


def _accuracy(
    cfg: BenchmarkConfig, index: Index, models: list[LoadedModel], report: dict[str, Any], hooks: Hooks
) -> tuple[dict[str, dict[str, tuple[list[int], list[float]]]], tuple[Failure, ...]]:
    from mura_cli.report.references import reference_rows
    from mura_cli.scoring import score_boxes, score_table

    split = choose_split(index, cfg.split)
    part = part_from_name(cfg.part) if cfg.part else None
    rows = index.select(split=None if split == "all" else split, part=part)
    if not rows:
        raise UsageError(f"{cfg.data}: no images in split {split}{f' for part {part}' if part else ''}")
    with_boxes = cfg.boxes and any(r.boxes for r in rows)
    if cfg.boxes and not with_boxes:
        hooks.on_warning(f"--boxes: the {split} split of {cfg.data} has no ground-truth boxes; boxes not scored")
    scored = _predict_rows(index, rows, models, cfg, with_boxes, hooks)
    labels = np.array([r.label for r in scored.rows], dtype=int)
    studies = [r.study for r in scored.rows]
    parts = [r.part for r in scored.rows]
    report["data"] = {
        "root": str(index.root),
        "kind": index.kind,
        "split": split,
        "images": len(scored.rows),
        "studies": len(set(studies)),
        "failed": len(scored.failures),
    }
    kw = {"n_resamples": cfg.resamples, "seed": cfg.seed}
    image_table = score_table(labels, scored.probabilities, studies, parts, scored.thresholds, **kw)
    ids, s_labels, s_probs = aggregate_by_study(studies, labels, scored.probabilities)
    first_part = dict(zip(studies, parts, strict=True))
    thr_by_study: dict[str, list[float]] = defaultdict(list)
    for s, t in zip(studies, scored.thresholds, strict=True):
        thr_by_study[s].append(float(t))
    s_parts = [first_part[s] for s in ids]
    s_thr = np.array([np.mean(thr_by_study[s]) for s in ids])
    study_table = score_table(np.asarray(s_labels), np.asarray(s_probs), list(ids), s_parts, s_thr, **kw)
    report["levels"] = {"study": study_table, "image": image_table}
    from mura_cli.data.demo import DEMO_MANIFEST

    synthetic = (Path(index.root) / DEMO_MANIFEST).is_file()
    if index.kind == "mura" and not synthetic:  # published numbers are MURA's; beside other data they mislead
        report["references"] = [row for p in [*sorted(set(parts)), "all"] for row in reference_rows(p)]
    report["failures"] = [{"path": f.path, "reason": f.reason} for f in scored.failures]
    if with_boxes:
        b = scored.boxes
        report["boxes"] = score_boxes(
            [x["box"] for x in b],
            [x["peak"] for x in b],
            [x["truth"] for x in b],
            [x["size"] for x in b],
            [x["part"] for x in b],
            [x["study"] for x in b],
            iou_hit=0.3,
            **kw,
        )
    curves = {
        "study": _curves(s_parts, s_labels, s_probs),
        "image": _curves(parts, labels, scored.probabilities),
    }
    return curves, scored.failures


def _curves(parts: list[str], labels: Any, probs: Any) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = {"all": ([int(v) for v in labels], [float(v) for v in probs])}
    for p in sorted(set(parts)):
        idx = [i for i, q in enumerate(parts) if q == p]
        out[p] = ([int(labels[i]) for i in idx], [float(probs[i]) for i in idx])
    return out


def _offset_progress(report: Callable[[int, int], None], base: int, total: int, done: int, _part_total: int) -> None:
    """A part's progress as progress over all parts: ``base`` images were done before it."""
    report(base + done, total)


def _predict_rows(
    index: Index, rows: list[IndexRow], models: list[LoadedModel], cfg: BenchmarkConfig, with_boxes: bool, hooks: Hooks
) -> _Scored:
    """Predict every row once (per part, so per-part runs route correctly); frames of one file are averaged."""
    by_path: dict[str, list[ImagePrediction]] = defaultdict(list)
    boxes: dict[str, dict[str, Any]] = {}
    failures: list[Failure] = []
    done = 0
    infer_cfg = InferConfig(batch_size=cfg.batch_size, workers=cfg.workers)
    remote = index.kind == "dicomweb"
    path_of = {id(r): r.path if remote else str(index.resolve(r)) for r in rows}
    for part in sorted({r.part for r in rows}):
        part_rows = [r for r in rows if r.part == part]
        truth = {path_of[id(r)]: r for r in part_rows}
        files = [input_named(f) for f in truth]
        sub = Hooks(
            on_progress=partial(_offset_progress, hooks.on_progress, done, len(rows)), on_failure=failures.append
        )
        for p in predict(files, models, replace(infer_cfg, part=part), per_image=True, with_cam=with_boxes, hooks=sub):
            row = truth[p.path]
            if with_boxes and row.label == 1 and row.boxes and p.path not in boxes:
                loc = localize(p, cfg.threshold_frac, cfg.component)
                box = loc.box
                boxes[p.path] = {
                    "box": None if box is None else (box.x0, box.y0, box.x1, box.y1),
                    "peak": loc.peak,
                    "truth": [tuple(b) for b in row.boxes],
                    "size": (p.width, p.height),
                    "part": row.part,
                    "study": row.study,
                }
            by_path[p.path].append(replace(p, cam=None, meta={}))
        done += len(part_rows)
    for f in failures:
        hooks.on_failure(f)
    for message in part_mismatch_warnings([p for ps in by_path.values() for p in ps], models):
        hooks.on_warning(message)
    kept = [r for r in rows if path_of[id(r)] in by_path]
    preds_of = [by_path[path_of[id(r)]] for r in kept]
    probs = np.array([np.mean([p.probability for p in ps]) for ps in preds_of])
    thr = np.array([cfg.threshold if cfg.threshold is not None else ps[0].threshold for ps in preds_of])
    box_list = tuple(boxes[path_of[id(r)]] for r in kept if path_of[id(r)] in boxes)
    return _Scored(tuple(kept), probs, thr, box_list, tuple(failures))


def _speed(
    cfg: BenchmarkConfig,
    index: Index | None,
    models: list[LoadedModel],
    device: str,
    hooks: Hooks,
    peaks: dict[str, Any] | None = None,
) -> list[Any]:
    from mura_cli.engine.evaluation.speed import measure_archs, measure_speed

    files = speed_sample_files(index)
    hooks.on_info(f"speed: {plural(len(files), 'file')}, batch {cfg.batch_size}, device {device}")
    rows = []
    if cfg.archs:
        kw: dict[str, Any] = {
            "size": cfg.size,
            "device": device,
            "batch_size": cfg.batch_size,
            "engine": cfg.engine,
            "peaks": peaks,
        }
        rows += measure_archs(cfg.archs, files, **kw)
    for m in models[:1]:
        tcfg = m.transform if cfg.size is None else replace(m.transform, size=cfg.size, center_crop=None)
        name = f"{m.config.arch} ({m.short_name})"
        rows.append(measure_speed(m.backend, tcfg, files, arch=name, device=device, batch_size=cfg.batch_size))
    return rows


def speed_sample_files(index: Index | None, limit: int = 32) -> list[Path]:
    """Images to time: the first ``limit`` of ``index`` (``--data``) when given and on disk, else the built-in
    samples."""
    if index is not None and index.kind != "dicomweb":
        return [index.resolve(r) for r in index.rows[:limit]]
    from mura_cli.data.demo import generate_demo_set, sample_dicom
    from mura_cli.data.inputs import discover_inputs
    from mura_cli.utils import cache_dir

    demo = generate_demo_set(cache_dir() / "samples", studies_per_part=10, seed=0)
    images, _ = discover_inputs([demo / "valid"])
    return [*images[: limit - 1], sample_dicom()]
