"""The ``mura benchmark`` report: report.json, report.md, ROC/confusion/reliability PNGs and one offline index.html.

The sections are built once as :mod:`mura_cli.report.document` blocks and rendered to Markdown and HTML, so both
files hold the same tables. Every file is written to a temporary file in ``out_dir`` and renamed into place.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mura_cli.engine.serving.runtimes import TORCH
from mura_cli.errors import UsageError
from mura_cli.report.document import (
    METRIC_LABELS,
    OUTSIDE,
    OUTSIDE_NOTE,
    Block,
    Code,
    Interval,
    Table,
    render_html,
    render_markdown,
)
from mura_cli.report.document import fmt_num as _num
from mura_cli.report.plots import draw_confusions, draw_reliability, draw_roc, png_bytes
from mura_cli.scoring import METRIC_NAMES
from mura_cli.utils import atomic_path

Curves = Mapping[str, Mapping[str, tuple[Sequence[int], Sequence[float]]]]

REPORT_FILES = ("report.json", "report.md", "index.html")
_MAX_FAILURES = 50
_BOX_COLUMNS = ("mean_iou", "hit_rate", "pointing", "pointing_chance")


def _interval(m: Any) -> Interval:
    m = m if isinstance(m, Mapping) else {}
    return Interval(m.get("value"), m.get("low"), m.get("high"))


def _ordered(keys: Sequence[str]) -> list[str]:
    return [k for k in keys if k != "all"] + [k for k in keys if k == "all"]


def _jsonable(obj: Any) -> Any:
    """Non-finite floats become null, tuples lists, NumPy arrays and scalars Python lists and numbers."""
    if isinstance(obj, np.generic | np.ndarray):
        obj = obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def _threshold(report: Mapping[str, Any]) -> str:
    t = report.get("threshold")
    if t is None:  # one per model
        t = ", ".join(map(str, (report.get("model") or {}).get("threshold") or [])) or None
    return "n/a" if t is None else str(t)


def _header(report: Mapping[str, Any]) -> list[Block]:
    g = lambda key: report.get(key) or {}  # noqa: E731
    model, data, boot, machine = g("model"), g("data"), g("bootstrap"), g("machine")
    alpha = boot.get("alpha")
    level = f"{100 * (1 - alpha):g}% intervals" if isinstance(alpha, int | float) else "intervals"
    rows: list[tuple[str, Any]] = [
        ("Command", Code(report.get("command") or "n/a")),
        ("Created", str(report.get("created", "n/a"))),
    ]
    if model:
        rows += [
            ("Model", f"{model.get('arch', '?')}, part {model.get('part', '?')}, input {model.get('input', '?')} px"),
            ("Weights", ", ".join(map(str, model.get("specs") or [])) or "n/a"),
            ("Weights sha256", Code(model.get("sha256") or "n/a")),
        ]
    if data:
        counts = f"{data.get('images', '?')} images, {data.get('studies', '?')} studies"
        failed = f", {data['failed']} unreadable" if data.get("failed") else ""
        rows += [
            ("Data", f"{data.get('kind', '?')}, {data.get('split', '?')} split: {counts}{failed}"),
            ("Data root", Code(data.get("root", "n/a"))),
        ]
    rows += [
        ("Threshold", f"{_threshold(report)} (probability of abnormal)"),
        (
            "Bootstrap",
            f"{boot.get('resamples', '?')} resamples by {boot.get('unit', '?')}, seed {boot.get('seed', '?')}, {level}",
        ),
        ("Versions", ", ".join(f"{k} {v}" for k, v in g("versions").items()) or "n/a"),
        (
            "Machine",
            f"{machine.get('cpu') or 'CPU ?'}, {machine.get('cores', '?')} cores, GPU: {machine.get('gpu') or 'none'}"
            + "".join(
                f", {name}" for name, key in (("AMX", "amx_bf16"), ("AVX512-BF16", "avx512_bf16")) if machine.get(key)
            )
            + "".join(
                f", {p} matmul peak {machine[f'matmul_{p}_gflops']} GFLOP/s"
                for p in ("fp32", "bf16")
                if machine.get(f"matmul_{p}_gflops")
            ),
        ),
    ]
    return [("h1", "MURA benchmark report"), ("kv", rows)]


def _class_table(part: str, rep: Any) -> Table:
    rep = rep if isinstance(rep, Mapping) else {}
    cols = ("precision", "recall", "f1-score")
    rows: list[list[Any]] = []
    for name in ("normal", "abnormal"):
        r = rep.get(name) or {}
        rows.append([name, *(_num(r.get(c)) for c in cols), str(r.get("support", "n/a"))])
    support = sum((rep.get(n) or {}).get("support") or 0 for n in ("normal", "abnormal"))
    rows.append(["accuracy", "", "", _num(rep.get("accuracy")), str(support)])
    for name in ("macro avg", "weighted avg"):
        r = rep.get(name) or {}
        rows.append([name, *(_num(r.get(c)) for c in cols), str(r.get("support", "n/a"))])
    return Table(["class", "precision", "recall", "F1", "support"], rows, part)


def _level(level: str, parts: Mapping[str, Any], report: Mapping[str, Any]) -> list[Block]:
    names = _ordered(list(parts))
    rows: list[list[Any]] = [
        [key, *(str(parts[p].get(key, "n/a")) for p in names)] for key in ("n", "studies", "positives")
    ]
    keys = list(METRIC_NAMES) + [k for p in names for k in parts[p].get("metrics") or {} if k not in METRIC_NAMES]
    for key in dict.fromkeys(keys):
        cells = [_interval((parts[p].get("metrics") or {}).get(key)) for p in names]
        rows.append([METRIC_LABELS.get(key, key.replace("_", " ")), *cells])
    boot = report.get("bootstrap") or {}
    return [
        ("h2", f"{level.capitalize()} level"),
        (
            "p",
            f"Each cell is the point estimate [low, high] of its bootstrap interval at threshold "
            f"{_threshold(report)}, {boot.get('resamples', '?')} resamples by {boot.get('unit', '?')}; "
            f"n/a: undefined or not computed.",
        ),
        ("table", Table(["metric", *names], rows)),
        *_outside_note(rows),
        ("img", (f"roc_{level}.png", f"ROC curves, {level} level")),
        ("img", (f"reliability_{level}.png", f"Reliability (calibration), {level} level")),
        ("img", (f"confusion_{level}.png", f"Confusion matrices, {level} level")),
        ("h3", f"Per-class report, {level} level"),
        ("tables", [_class_table(p, parts[p].get("report")) for p in names]),
    ]


def _outside_note(rows: Sequence[Sequence[Any]]) -> list[Block]:
    """Why a point estimate lies outside its interval, when one in ``rows`` does (naming the rows)."""
    names = [str(r[0]) for r in rows if any(isinstance(c, Interval) and c.outside for c in r)]
    if not names:
        return []
    return [("note", OUTSIDE_NOTE.format(mark=OUTSIDE, rows=", ".join(names)))]


def _references(report: Mapping[str, Any]) -> list[Block]:
    refs = report.get("references") or []
    if not refs:
        return []
    levels = report.get("levels") or {}
    rows = []
    for ref in refs:
        text = str(ref.get("set", "")).lower()
        level = ref.get("level") or ("image" if "image" in text and "study" not in text else "study")
        entry = ((levels.get(level) or {}).get("parts") or {}).get(ref.get("part")) or {}
        ours = _interval((entry.get("metrics") or {}).get(ref.get("metric")))
        rows.append(
            [str(ref.get(k, "")) for k in ("source", "set", "part", "metric", "model")]
            + [_num(ref.get("value")), ours, level]
        )
    data = report.get("data") or {}
    return [
        ("h2", "Published reference numbers"),
        (
            "note",
            "**These reference numbers were NOT measured on this data.** Each was reported by its source on the "
            "set named in 'measured on' (often the hidden MURA test set), with other models and protocols. "
            f"They give context only; 'this run' is our model on {data.get('kind', '?')} "
            f"{data.get('split', '?')} at the level shown.",
        ),
        (
            "table",
            Table(
                ["source", "measured on", "part", "metric", "model", "reference", "this run (this data)", "level"], rows
            ),
        ),
    ]


def _boxes(boxes: Any) -> list[Block]:
    if not isinstance(boxes, Mapping):
        return [("h2", "Localisation"), ("p", "Not measured in this run (no reference boxes).")]
    parts = boxes.get("parts") or {}
    rows = []
    for p in _ordered(list(parts)):
        entry = parts[p] or {}
        m = entry.get("metrics") or entry  # {"metrics": {...}} (scoring.score_boxes) or the metrics inline
        chance = m.get("pointing_chance")
        chance = chance.get("value") if isinstance(chance, Mapping) else chance
        row: list[str | Interval] = [p, str(entry.get("images", "n/a"))]
        row += [_interval(m.get(k)) for k in ("mean_iou", "hit_rate", "pointing")] + [_num(chance)]
        rows.append(row)
    skipped = boxes.get("no_ground_truth")
    note = f" {skipped} images without reference boxes were not scored." if skipped else ""
    return [
        ("h2", "Localisation"),
        (
            "p",
            f"Boxes from the class activation map against reference boxes. A hit is IoU >= {boxes.get('iou_hit')}; "
            "pointing counts the map's peak inside a reference box, and chance is the share of the image the "
            f"reference boxes cover (what a random point would score).{note}",
        ),
        ("table", Table(["part", "images", *(METRIC_LABELS[k] for k in _BOX_COLUMNS)], rows)),
        *_outside_note(rows),
    ]


def _speed(speed: Any) -> list[Block]:
    rows_in = speed.get("rows") if isinstance(speed, Mapping) else None
    if not rows_in:
        return [("h2", "Speed"), ("p", "Not measured in this run.")]
    stages = list(dict.fromkeys(k for r in rows_in for k in r.get("ms_per_image") or {}))
    rows = [
        [
            str(r.get("arch", "")),
            str(r.get("engine", TORCH)),
            str(r.get("size", "")),
            str(r.get("batch", "")),
            str(r.get("device", "")),
            _num(r.get("images_per_s"), 1),
            *(_num((r.get("ms_per_image") or {}).get(s), 2) for s in stages),
            _num(r.get("peak_memory_mb"), 0),
            _num(r.get("peak_fraction"), 2),
        ]
        for r in rows_in
    ]
    stage_cols = [f"{s} ms/img" for s in stages]
    headers = ["arch", "engine", "input", "batch", "device", "images/s", *stage_cols, "peak memory MB", "forward/peak"]
    return [("h2", "Speed"), ("table", Table(headers, rows))]


def _failures(failures: Any) -> list[Block]:
    failures = list(failures or [])
    if not failures:
        return [("h2", "Failures (0)"), ("p", "None: every image was read.")]
    items = [f"{f.get('path', '?')}: {f.get('reason', '?')}" for f in failures[:_MAX_FAILURES]]
    if len(failures) > _MAX_FAILURES:
        items.append(f"... and {len(failures) - _MAX_FAILURES} more (all in report.json)")
    return [("h2", f"Failures ({len(failures)})"), ("list", items)]


def build_blocks(report: Mapping[str, Any]) -> list[Block]:
    """The report's sections, in order, as ``(kind, body)`` blocks that :func:`render_markdown` and
    :func:`render_html` both draw."""
    blocks = _header(report)
    levels = report.get("levels") or {}
    for level in levels:
        blocks += _level(level, (levels[level] or {}).get("parts") or {}, report)
    if not levels:
        blocks += [("h2", "Accuracy"), ("p", "Not measured in this run (no labelled data).")]
    return (
        blocks
        + _references(report)
        + _boxes(report.get("boxes"))
        + _speed(report.get("speed"))
        + _failures(report.get("failures"))
    )


def render_plots(report: Mapping[str, Any], curves: Curves) -> dict[str, bytes]:
    """``{file name: PNG bytes}``: ROC, confusion and reliability charts for every level of the report or curves."""
    levels = report.get("levels") or {}
    images: dict[str, bytes] = {}
    for level in dict.fromkeys([*levels, *curves]):
        parts = (levels.get(level) or {}).get("parts") or {}
        level_curves = {p: (curves.get(level) or {})[p] for p in _ordered(list(curves.get(level) or {}))}
        confusions = {p: (parts[p] or {}).get("confusion") for p in _ordered(list(parts))}
        note = f"rows: actual class, columns: predicted at threshold {_threshold(report)}; colour: share of the row"
        images[f"roc_{level}.png"] = png_bytes(draw_roc(level_curves, f"ROC curves, {level} level"))
        images[f"confusion_{level}.png"] = png_bytes(draw_confusions(confusions, f"Confusion, {level} level", note))
        images[f"reliability_{level}.png"] = png_bytes(draw_reliability(level_curves, f"Reliability, {level} level"))
    return images


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_benchmark_report(
    out_dir: str | Path, report: Mapping[str, Any], curves: Curves, *, overwrite: bool = False
) -> list[Path]:
    """Write a ``mura benchmark`` run as report.json, report.md, index.html and per level ``roc_<level>.png``,
    ``confusion_<level>.png`` and ``reliability_<level>.png``.

    Args:
        out_dir: the folder (created if missing).
        report: the JSON-ready results (command, model, data, levels, references, boxes, speed, failures).
        curves: per level and part, ``(labels, probabilities)`` for the ROC and reliability charts.
        overwrite: replace a report already in ``out_dir``.

    Returns:
        The files written: report.json, report.md, index.html, then the PNGs.

    Raises:
        UsageError: ``out_dir`` already holds a report and ``overwrite`` is false, or is not a folder.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder; choose another --out")
    if not overwrite and any((out / name).exists() for name in REPORT_FILES):
        raise UsageError(f"{out}: holds a benchmark report; choose another --out or pass --overwrite")
    clean = _jsonable(report)
    blocks = build_blocks(clean)
    images = render_plots(clean, curves)
    files = {
        "report.json": (json.dumps(clean, indent=2, default=str) + "\n").encode(),
        "report.md": render_markdown(blocks).encode(),
        "index.html": render_html(blocks, images).encode(),
        **images,
    }
    out.mkdir(parents=True, exist_ok=True)
    for name in [*images, "report.md", "index.html", "report.json"]:  # report.json last: it marks a complete report
        _write_atomic(out / name, files[name])
    return [out / name for name in files]
