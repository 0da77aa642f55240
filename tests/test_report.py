"""The benchmark report (report/benchmark.py): files, Markdown and HTML tables, offline HTML, plots, overwrite."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mura_cli.errors import UsageError
from mura_cli.metrics import binary_metrics, confusion
from mura_cli.report.benchmark import write_benchmark_report

PNGS = ("roc_{}.png", "confusion_{}.png", "reliability_{}.png")


def _entry(labels: np.ndarray, probs: np.ndarray, rng: np.random.Generator, studies: int) -> dict:
    m = binary_metrics(labels, probs, 0.5)
    tn, fp, fn, tp = confusion(labels, probs >= 0.5)
    values = {
        "kappa": m.kappa,
        "auroc": m.auroc,
        "accuracy": m.accuracy,
        "sensitivity": m.recall,
        "specificity": m.specificity,
        "precision": m.precision,
        "recall": m.recall,
        "f1": m.f1,
        "macro_f1": m.f1 * 0.98,
        "weighted_f1": m.f1 * 0.99,
        "ece": float(rng.uniform(0.02, 0.12)),
    }
    metrics = {}
    for k, v in values.items():
        ok = np.isfinite(v)
        w = float(rng.uniform(0.03, 0.12))
        low, high = max(v - w, -1.0 if k == "kappa" else 0.0), min(v + w, 1.0)
        metrics[k] = {"value": float(v) if ok else None, "low": low if ok else None, "high": high if ok else None}

    def row(p: float, r: float, s: int) -> dict:
        return {"precision": p, "recall": r, "f1-score": 2 * p * r / (p + r) if p + r else 0.0, "support": s}

    normal = row(tn / max(tn + fn, 1), tn / max(tn + fp, 1), tn + fp)
    abnormal = row(tp / max(tp + fp, 1), tp / max(tp + fn, 1), tp + fn)
    avg = {k: (normal[k] + abnormal[k]) / 2 for k in ("precision", "recall", "f1-score")}
    report = {
        "normal": normal,
        "abnormal": abnormal,
        "accuracy": m.accuracy,
        "macro avg": {**avg, "support": len(labels)},
        "weighted avg": {**avg, "support": len(labels)},
    }
    return {
        "n": len(labels),
        "studies": studies,
        "positives": int(labels.sum()),
        "metrics": metrics,
        "report": report,
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def sample_report(parts=("elbow", "hand", "humerus"), *, boxes=True, speed=True, seed=0) -> tuple[dict, dict]:
    """A plausible ``(report, curves)`` pair: two levels, each part plus ``all``, references, boxes, speed."""
    rng = np.random.default_rng(seed)
    levels: dict = {}
    curves: dict = {}
    for level, size in (("study", 60), ("image", 150)):
        levels[level], curves[level] = {"parts": {}}, {}
        all_l, all_p = [], []
        for part in parts:
            n = int(rng.integers(size // 2, size))
            labels = (rng.random(n) < 0.45).astype(int)
            probs = np.where(labels == 1, rng.beta(4, 2, n), rng.beta(2, 4.5, n))
            curves[level][part] = (labels.tolist(), probs.tolist())
            levels[level]["parts"][part] = _entry(labels, probs, rng, n if level == "study" else n // 2)
            all_l.append(labels)
            all_p.append(probs)
        if len(parts) > 1:
            labels, probs = np.concatenate(all_l), np.concatenate(all_p)
            curves[level]["all"] = (labels.tolist(), probs.tolist())
            levels[level]["parts"]["all"] = _entry(labels, probs, rng, len(labels))

    def ci(v: float) -> dict:
        return {"value": v, "low": v - 0.05, "high": v + 0.05}

    report = {
        "command": "mura benchmark --data /data/MURA-v1.1 --model runs/humerus-r18 --out /tmp/bench",
        "created": "2026-11-27T10:00:00Z",
        "versions": {"mura-cli": "0.1.0", "torch": "2.5.1", "timm": "1.0.12", "python": "3.11.7"},
        "machine": {"cpu": "AMD EPYC 7B13", "cores": 2, "gpu": None},
        "model": {
            "specs": ["runs/humerus-r18"],
            "sha256": "ab12" * 16,
            "arch": "resnet18",
            "part": "humerus",
            "input": 64,
        },
        "data": {"root": "/data/MURA-v1.1", "kind": "mura", "split": "tune", "images": 412, "studies": 180},
        "bootstrap": {"resamples": 2000, "seed": 0, "unit": "study", "alpha": 0.05},
        "threshold": 0.5,
        "levels": levels,
        "references": [
            {
                "source": "MURA paper (Rajpurkar et al. 2017), https://arxiv.org/abs/1712.06957",
                "set": "MURA test set (hidden), study level",
                "metric": "kappa",
                "part": part,
                "model": "DenseNet-169 ensemble",
                "value": v,
            }
            for part, v in zip(parts, (0.710, 0.851, 0.600), strict=False)
        ],
        "boxes": {
            "iou_hit": 0.3,
            "parts": {
                p: {
                    "images": 48,
                    "mean_iou": ci(0.31),
                    "hit_rate": ci(0.52),
                    "pointing": ci(0.6),
                    "pointing_chance": 0.12,
                }
                for p in [*parts, "all"]
            },
        }
        if boxes
        else None,
        "speed": {
            "rows": [
                {
                    "arch": a,
                    "size": s,
                    "batch": 16,
                    "device": "cpu",
                    "images_per_s": ips,
                    "ms_per_image": {"decode": 3.1, "preprocess": 1.2, "forward": 1000 / ips - 5, "cam_box": 0.8},
                    "peak_memory_mb": mem,
                }
                for a, s, ips, mem in (("densenet169", 320, 5.1, 812), ("resnet18", 224, 48.3, None))
            ]
        }
        if speed
        else None,
        "failures": [
            {"path": "/data/MURA-v1.1/valid/XR_HAND/patient1/study1_positive/image3.png", "reason": "truncated"}
        ],
    }
    return report, curves


def _expected(tmp: Path, levels=("study", "image")) -> set[str]:
    return {"report.json", "report.md", "index.html"} | {p.format(level) for level in levels for p in PNGS}


def test_writes_every_file_and_returns_them(tmp_path):
    report, curves = sample_report()
    out = tmp_path / "bench"
    paths = write_benchmark_report(out, report, curves)
    assert {p.name for p in paths} == _expected(out)
    assert all(p.parent == out and p.is_file() and p.stat().st_size > 0 for p in paths)
    assert sorted(f.name for f in out.iterdir()) == sorted(_expected(out))  # no temporary files left


def test_json_round_trip(tmp_path):
    report, curves = sample_report()
    write_benchmark_report(tmp_path, report, curves)
    assert json.loads((tmp_path / "report.json").read_text()) == report


def test_json_turns_nan_into_null(tmp_path):
    report, curves = sample_report(parts=("hand",))
    report["levels"]["study"]["parts"]["hand"]["metrics"]["kappa"]["value"] = float("nan")
    write_benchmark_report(tmp_path, report, curves)
    loaded = json.loads((tmp_path / "report.json").read_text())
    assert loaded["levels"]["study"]["parts"]["hand"]["metrics"]["kappa"]["value"] is None


def test_markdown_has_the_tables(tmp_path):
    report, curves = sample_report()
    report["levels"]["study"]["parts"]["hand"]["metrics"]["auroc"] = {"value": None, "low": None, "high": None}
    write_benchmark_report(tmp_path, report, curves)
    md = (tmp_path / "report.md").read_text()
    assert report["command"] in md and "resnet18" in md and "torch 2.5.1" in md
    assert "## Study level" in md and "## Image level" in md
    assert "| metric | elbow | hand | humerus | all |" in md
    kappa = report["levels"]["study"]["parts"]["elbow"]["metrics"]["kappa"]
    assert f"{kappa['value']:.3f} [{kappa['low']:.3f}, {kappa['high']:.3f}]".replace("-", "\u2212") in md
    auroc_row = next(line for line in md.splitlines() if line.startswith("| AUROC |"))
    assert auroc_row.split(" | ")[2] == "n/a"  # the nulled hand AUROC
    assert "| class | precision | recall | F1 | support |" in md and "| macro avg |" in md  # sklearn-style per part
    assert "NOT measured on this data" in md and "MURA test set (hidden), study level" in md
    assert "| part | images | mean IoU | hit rate | pointing | pointing chance |" in md
    assert "images/s" in md and "forward ms/img" in md
    assert "image3.png: truncated" in md
    assert "![ROC curves, study level](roc_study.png)" in md


def test_html_is_self_contained(tmp_path):
    report, curves = sample_report()
    write_benchmark_report(tmp_path, report, curves)
    page = (tmp_path / "index.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert "https://arxiv.org/abs/1712.06957" in page  # the source stays as plain text
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 6
    for data in images:
        Image.open(io.BytesIO(base64.b64decode(data))).verify()
    for text in ("Per-class report, study level", "NOT measured on this data", "pointing chance", "images/s"):
        assert text in page


@pytest.mark.parametrize("pattern", PNGS)
@pytest.mark.parametrize("level", ["study", "image"])
def test_plots_decode_with_sane_sizes(tmp_path, pattern, level):
    report, curves = sample_report()
    write_benchmark_report(tmp_path, report, curves)
    with Image.open(tmp_path / pattern.format(level)) as img:
        img.load()
        assert img.format == "PNG" and img.mode == "RGB"
        assert 400 <= img.width <= 2000 and 300 <= img.height <= 2000
        assert len(img.getcolors(1 << 16) or range(300)) > 8  # more than a blank canvas


def test_refuses_to_overwrite_before_writing_anything(tmp_path):
    report, curves = sample_report()
    write_benchmark_report(tmp_path, report, curves)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    with pytest.raises(UsageError, match="holds a benchmark report; choose another --out or pass --overwrite"):
        write_benchmark_report(tmp_path, report, curves)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    report["command"] = "mura benchmark --again"
    write_benchmark_report(tmp_path, report, curves, overwrite=True)
    assert json.loads((tmp_path / "report.json").read_text())["command"] == "mura benchmark --again"


def test_refuses_a_file_as_out_dir(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(UsageError, match="not a folder"):
        write_benchmark_report(tmp_path / "x", *sample_report())


def test_single_part_without_boxes_or_speed(tmp_path):
    report, curves = sample_report(parts=("wrist",), boxes=False, speed=False)
    paths = write_benchmark_report(tmp_path / "one", report, curves)
    assert {p.name for p in paths} == _expected(tmp_path)
    md = (tmp_path / "one" / "report.md").read_text()
    assert "| metric | wrist |" in md and "## Localisation\n\nNot measured" in md and "## Speed\n\nNot measured" in md


def test_a_part_with_one_class_only(tmp_path):
    report, curves = sample_report()
    labels, probs = curves["study"]["hand"]
    curves["study"]["hand"] = ([1] * len(labels), probs)
    report["levels"]["study"]["parts"]["hand"]["metrics"]["auroc"] = {"value": None, "low": None, "high": None}
    write_benchmark_report(tmp_path, report, curves)
    with Image.open(tmp_path / "roc_study.png") as img:
        assert img.width > 400
    assert "n/a" in (tmp_path / "report.md").read_text()


def test_empty_and_missing_pieces_do_not_crash(tmp_path):
    report, curves = sample_report(parts=("elbow",))
    curves["image"]["elbow"] = ([], [])
    report["levels"]["image"]["parts"]["elbow"]["confusion"] = None
    report["levels"]["image"]["parts"]["elbow"]["report"] = None
    del report["references"]
    report["failures"] = []
    write_benchmark_report(tmp_path, report, curves)
    md = (tmp_path / "report.md").read_text()
    assert "Published reference" not in md and "## Failures (0)" in md


def test_speed_only_run(tmp_path):
    """What engine.benchmark writes for ``--speed`` without ``--data``: no model info, data or levels."""
    report, _ = sample_report()
    report.update(model=None, data=None, levels={}, references=[], boxes=None, failures=[])
    paths = write_benchmark_report(tmp_path, report, {})
    assert {p.name for p in paths} == {"report.json", "report.md", "index.html"}
    md = (tmp_path / "report.md").read_text()
    assert (
        "## Accuracy\n\nNot measured" in md and "| densenet169 | torch | 320 | 16 | cpu | 5.1 |" in md
    )  # rows without an engine ran on torch


def test_renders_what_scoring_produces(tmp_path):
    """Levels from ``scoring.score_table`` and boxes from ``scoring.score_boxes`` (metrics nested per part)."""
    scoring = pytest.importorskip("mura_cli.scoring")
    rng = np.random.default_rng(1)
    n = 80
    labels = (rng.random(n) < 0.5).astype(int)
    probs = np.clip(np.where(labels == 1, rng.beta(4, 2, n), rng.beta(2, 4, n)), 0, 1)
    studies = [f"s{i // 2}" for i in range(n)]
    parts = ["hand" if i < 40 else "wrist" for i in range(n)]
    table = scoring.score_table(labels, probs, studies, parts, 0.5, n_resamples=20, seed=0)
    report, _ = sample_report(parts=("hand", "wrist"))
    report["levels"] = {"image": table}
    report["boxes"] = {
        "iou_hit": 0.3,
        "no_ground_truth": 3,
        "parts": {
            "hand": {
                "images": 10,
                "studies": 5,
                "with_box": 9,
                "metrics": {
                    "mean_iou": {"value": 0.4, "low": 0.3, "high": 0.5},
                    "hit_rate": {"value": 0.6, "low": 0.4, "high": 0.8},
                    "pointing": {"value": 0.7, "low": 0.5, "high": 0.9},
                    "pointing_chance": {"value": 0.125, "low": None, "high": None},
                },
            }
        },
    }
    curves = {"image": {"hand": (labels[:40].tolist(), probs[:40].tolist()), "wrist": (labels[40:], probs[40:])}}
    write_benchmark_report(tmp_path, report, curves)
    md = (tmp_path / "report.md").read_text()
    assert "| metric | hand | wrist | all |" in md
    assert "| hand | 10 | 0.400 [0.300, 0.500] | 0.600 [0.400, 0.800] | 0.700 [0.500, 0.900] | 0.125 |" in md
    assert "3 images without reference boxes" in md
    assert (tmp_path / "roc_image.png").is_file() and not (tmp_path / "roc_study.png").exists()


def test_interval_notation_has_a_comma_and_a_clear_minus():
    from mura_cli.report.document import format_interval

    assert format_interval(0.333, -0.027, 0.651) == "0.333 [\u22120.027, 0.651]"
    assert format_interval(-0.1, -0.14, 0.3, minus="-") == "-0.100 [-0.140, 0.300]"
    assert format_interval(-0.0001, -0.0002, 0.0) == "0.000 [0.000, 0.000]"  # no minus zero
    assert format_interval(None, 0.1, 0.2) == "n/a" and format_interval(0.5, None, None) == "0.500 [n/a]"
    assert format_interval(0.05, 0.06, 0.14) == "0.050 [0.060, 0.140] \u2020"  # outside its interval: marked


def test_metric_rows_follow_one_naming_scheme(tmp_path):
    from mura_cli.report.document import METRIC_LABELS
    from mura_cli.scoring import METRIC_NAMES

    assert set(METRIC_NAMES) <= set(METRIC_LABELS)
    report, curves = sample_report()
    write_benchmark_report(tmp_path, report, curves)
    md = (tmp_path / "report.md").read_text()
    rows = [
        line.split(" | ")[0].lstrip("| ") for line in md.split("## Study level")[1].splitlines() if line[:2] == "| "
    ]
    for key in METRIC_NAMES:
        assert METRIC_LABELS[key] in rows, key
    assert not any("_" in r for r in rows), rows  # no raw keys such as weighted_precision


def test_an_estimate_outside_its_percentile_interval_is_marked_and_explained(tmp_path):
    from mura_cli.scoring import score_table

    rng = np.random.default_rng(2)  # a calibrated model: resampling inflates ECE above the data's own
    probs = rng.uniform(0, 1, 150)
    labels = (rng.uniform(0, 1, 150) < probs).astype(int)
    table = score_table(labels, probs, np.arange(150).astype(str), np.array(["elbow"] * 150), threshold=0.5,
                        n_resamples=500)  # fmt: skip
    ece = table["parts"]["all"]["metrics"]["ece"]
    assert ece["value"] < ece["low"]
    report, curves = sample_report()
    report["levels"]["study"]["parts"]["elbow"]["metrics"]["ece"] = ece
    write_benchmark_report(tmp_path, report, curves)
    md = (tmp_path / "report.md").read_text()
    assert f"{ece['value']:.3f} [{ece['low']:.3f}, {ece['high']:.3f}] \u2020" in md
    note = next(line for line in md.splitlines() if line.startswith("> \u2020 marks"))
    assert "(here: ECE (lower is better))" in note and "biased under resampling" in note
    assert "biased under resampling" in (tmp_path / "index.html").read_text()
    assert "\u2212" not in (tmp_path / "report.json").read_text()  # JSON keeps plain numbers
