"""Scoring with bootstrap intervals: against scikit-learn, the official MURA scorer, and hand-made groups."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings

import numpy as np
import pytest
from sklearn import metrics as sk

from mura_cli.metrics import expected_calibration_error, roc_auc
from mura_cli.report.references import load_references, reference_rows
from mura_cli.scoring import (
    METRIC_NAMES,
    Estimate,
    bootstrap,
    bootstrap_batched,
    box_iou,
    classification_batch,
    covered_fraction,
    score_boxes,
    score_table,
)

PARTS = ("elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist")


def _kappa(y, p):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one label only: sklearn warns and returns NaN
        return sk.cohen_kappa_score(y, p)


def _images(seed, n_studies=150):
    """Image rows: 1-4 images per study, study labels, tied probabilities, parts by study."""
    rng = np.random.default_rng(seed)
    per_study = rng.integers(1, 5, n_studies)
    study = np.repeat(np.arange(n_studies), per_study)
    label = rng.integers(0, 2, n_studies)[study]
    prob = np.round(np.clip(label * 0.3 + rng.random(study.size) * 0.7, 0, 1), 2)
    part = np.array(PARTS)[study % len(PARTS)]
    return label, prob, np.array([f"s{i}" for i in study]), part


def test_estimate_is_frozen_and_json_ready():
    e = Estimate(0.5, 0.4, 0.6)
    assert e.to_dict() == {"value": 0.5, "low": 0.4, "high": 0.6}
    assert Estimate(math.nan).to_dict() == {"value": None, "low": None, "high": None}
    assert Estimate(np.float64(0.25), np.inf, 1.0).to_dict() == {"value": 0.25, "low": None, "high": 1.0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.value = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("seed", range(3))
def test_score_table_point_values_match_sklearn(seed):
    y, p, groups, parts = _images(seed)
    table = score_table(y, p, groups, parts, 0.5, n_resamples=50, seed=seed)
    assert list(table["parts"]) == [*PARTS, "all"]
    json.dumps(table, allow_nan=False)  # JSON-ready: no NaN, no numpy types
    for name, entry in table["parts"].items():
        mask = np.ones(y.size, bool) if name == "all" else parts == name
        yt, pt, pred = y[mask], p[mask], (p[mask] >= 0.5).astype(int)
        m = {k: v["value"] for k, v in entry["metrics"].items()}
        assert list(m) == list(METRIC_NAMES)
        assert (entry["n"], entry["studies"], entry["positives"]) == (mask.sum(), len(set(groups[mask])), yt.sum())
        assert m["kappa"] == pytest.approx(sk.cohen_kappa_score(yt, pred), abs=1e-12)
        assert m["auroc"] == pytest.approx(sk.roc_auc_score(yt, pt), abs=1e-12)
        assert m["accuracy"] == pytest.approx(sk.accuracy_score(yt, pred))
        assert m["sensitivity"] == m["recall"] == pytest.approx(sk.recall_score(yt, pred))
        assert m["specificity"] == pytest.approx(sk.recall_score(yt, pred, pos_label=0))
        assert m["precision"] == pytest.approx(sk.precision_score(yt, pred))
        assert m["f1"] == pytest.approx(sk.f1_score(yt, pred))
        assert m["macro_f1"] == pytest.approx(sk.f1_score(yt, pred, average="macro"))
        assert m["weighted_f1"] == pytest.approx(sk.f1_score(yt, pred, average="weighted"))
        assert m["weighted_precision"] == pytest.approx(entry["report"]["weighted avg"]["precision"])
        assert m["weighted_recall"] == pytest.approx(entry["report"]["weighted avg"]["recall"])
        assert m["ece"] == pytest.approx(expected_calibration_error(yt, pt), abs=1e-12)
        expected = sk.classification_report(yt, pred, output_dict=True, target_names=["normal", "abnormal"])
        assert entry["report"]["abnormal"]["f1-score"] == pytest.approx(expected["abnormal"]["f1-score"])
        assert entry["report"]["macro avg"]["recall"] == pytest.approx(expected["macro avg"]["recall"])
        tn, fp, fn, tp = sk.confusion_matrix(yt, pred, labels=[0, 1]).ravel().tolist()
        assert entry["confusion"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
        for v in entry["metrics"].values():
            assert v["low"] <= v["high"]


def test_score_table_edge_cases_one_class_empty_part_and_no_rows():
    y = np.array([1, 1, 1, 0, 1, 0, 1, 1])
    p = np.array([0.9, 0.2, 0.7, 0.1, 0.8, 0.3, 0.9, 0.9])
    parts = np.array(["hand", "hand", "hand", "wrist", "wrist", "wrist", "elbow", "elbow"])
    table = score_table(y, p, np.arange(8), parts, 0.5, n_resamples=100)
    assert list(table["parts"]) == ["elbow", "hand", "wrist", "all"]  # a part without rows is not listed
    hand, elbow = table["parts"]["hand"]["metrics"], table["parts"]["elbow"]["metrics"]
    assert hand["auroc"]["value"] is None and hand["specificity"]["value"] is None  # positives only
    assert hand["kappa"]["value"] == pytest.approx(_kappa([1, 1, 1], [1, 0, 1]))  # sklearn: 0.0
    assert elbow["kappa"] == {"value": None, "low": None, "high": None}  # sklearn: NaN (one label in common)
    assert math.isnan(_kappa([1, 1], [1, 1]))
    assert elbow["sensitivity"]["value"] == 1.0 and elbow["precision"]["value"] == 1.0
    assert score_table([], [], [], [], 0.5) == {"parts": {}}
    with pytest.raises(ValueError, match="reserved"):
        score_table([1], [0.5], ["a"], ["all"], 0.5)
    with pytest.raises(ValueError):
        score_table([1, 0], [0.5], ["a", "b"], ["x", "x"], 0.5)


def test_score_table_takes_a_threshold_per_row():
    y, p, groups, parts = _images(0)
    thr = np.where(parts == "hand", 0.8, 0.3)
    entry = score_table(y, p, groups, parts, thr, n_resamples=10)["parts"]["all"]
    pred = (p >= thr).astype(int)
    assert entry["metrics"]["kappa"]["value"] == pytest.approx(sk.cohen_kappa_score(y, pred), abs=1e-12)
    assert entry["confusion"]["tp"] == int(((pred == 1) & (y == 1)).sum())


def test_bootstrap_is_deterministic_and_covers_the_estimate():
    y, p, groups, parts = _images(1, n_studies=400)
    a = score_table(y, p, groups, parts, 0.5, n_resamples=300, seed=7)
    assert a == score_table(y, p, groups, parts, 0.5, n_resamples=300, seed=7)
    assert a != score_table(y, p, groups, parts, 0.5, n_resamples=300, seed=8)
    for name, m in a["parts"]["all"]["metrics"].items():
        if name != "ece":  # the ECE of a resample is biased upwards: its interval need not hold the estimate
            assert m["low"] <= m["value"] <= m["high"], name
        assert m["high"] - m["low"] < 0.25, name


def test_bootstrap_resamples_whole_groups_with_replacement():
    """Groups a (rows 0, 4), b (row 2), c (rows 1, 3, 5): every resample holds 3 whole groups."""
    groups = np.array(["a", "c", "b", "c", "a", "c"])
    seen: list[np.ndarray] = []

    def record(rows):
        seen.append(np.sort(rows))
        return float(rows.size)

    low, high = bootstrap(record, groups, np.arange(6), n_resamples=400, seed=3)
    assert len(seen) == 400
    sizes = {"a": 2, "b": 1, "c": 3}
    members = {"a": [0, 4], "b": [2], "c": [1, 3, 5]}
    drawn_twice = 0
    for rows in seen:
        counts = {g: np.isin(rows, members[g]).sum() // sizes[g] for g in sizes}
        for g in sizes:  # whole groups only: each row of a group appears as often as the group was drawn
            assert all((rows == r).sum() == counts[g] for r in members[g])
        assert sum(counts.values()) == 3
        drawn_twice += max(counts.values()) >= 2
    assert drawn_twice > 0  # with replacement
    assert 3 <= low <= high <= 9
    # deterministic: the same seed draws the same resamples
    first = seen[:]
    seen.clear()
    bootstrap(record, groups, np.arange(6), n_resamples=400, seed=3)
    assert all(np.array_equal(u, v) for u, v in zip(first, seen, strict=True))


def test_bootstrap_drops_nan_resamples_and_matches_the_batched_path():
    y, p, groups, _ = _images(2, n_studies=60)
    loop = bootstrap(roc_auc, groups, y, p, n_resamples=300, seed=5)
    batched = bootstrap_batched(classification_batch, groups, y.astype(bool), p, p >= 0.5, n_resamples=300, seed=5)
    assert loop == pytest.approx(batched["auroc"], abs=1e-12)
    kappa = bootstrap(lambda a, b: _kappa(a, b >= 0.5), groups, y, p, n_resamples=300, seed=5)
    assert kappa == pytest.approx(batched["kappa"], abs=1e-12)
    # three studies, one of them the only negative: resamples without it have no AUROC and are dropped
    low, high = bootstrap(roc_auc, ["a", "b", "c"], [1, 1, 0], [0.9, 0.4, 0.5], n_resamples=200)
    assert 0.0 <= low <= high <= 1.0
    assert all(math.isnan(v) for v in bootstrap(roc_auc, ["a", "b"], [1, 1], [0.9, 0.4], n_resamples=50))
    assert all(math.isnan(v) for v in bootstrap(roc_auc, [], [], [], n_resamples=50))


def test_official_mura_scorer_kappa_is_reproduced(tmp_path):
    """The official scorer: headerless ``Study,Model`` predictions merged with ``valid_labeled_studies.csv`` on
    Study, then sklearn's cohen_kappa_score per body part (from ``XR_<PART>`` in the path) and overall."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(11)
    rows = []
    for i in range(600):
        part = PARTS[rng.integers(len(PARTS))]
        label = int(rng.integers(0, 2))
        rows.append(
            (
                f"MURA-v1.1/valid/XR_{part.upper()}/patient{11000 + i}/study1_{'positive' if label else 'negative'}/",
                label,
            )
        )
    rng.shuffle(rows)
    (tmp_path / "valid_labeled_studies.csv").write_text("".join(f"{s},{lab}\n" for s, lab in rows))
    predicted = {s: int(lab if rng.random() < 0.8 else 1 - lab) for s, lab in rows}
    order = rng.permutation(len(rows))  # the predictions file need not follow the labels' order
    (tmp_path / "predictions.csv").write_text("".join(f"{rows[i][0]},{predicted[rows[i][0]]}\n" for i in order))

    labels = pd.read_csv(tmp_path / "valid_labeled_studies.csv", header=None, names=["Study", "Label"])
    preds = pd.read_csv(tmp_path / "predictions.csv", header=None, names=["Study", "Model"])
    merged = labels.merge(preds, on="Study")
    merged["Part"] = merged["Study"].str.extract(r"XR_([A-Z]+)/", expand=False).str.lower()
    official = {p: sk.cohen_kappa_score(g["Label"], g["Model"]) for p, g in merged.groupby("Part")}
    official["all"] = sk.cohen_kappa_score(merged["Label"], merged["Model"])

    studies = [s for s, _ in rows]
    table = score_table(
        [lab for _, lab in rows],
        [float(predicted[s]) for s in studies],  # 0/1 predictions as probabilities, threshold 0.5
        studies,
        [s.split("/")[2][3:].lower() for s in studies],
        0.5,
        n_resamples=20,
    )
    assert set(table["parts"]) == set(official)
    for part, kappa in official.items():
        assert table["parts"][part]["metrics"]["kappa"]["value"] == pytest.approx(kappa, abs=1e-12), part


def test_box_geometry_by_hand():
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # x1 is exclusive: touching boxes do not overlap
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
    # two overlapping boxes and one sticking out of a 20 x 10 image: the union, clipped
    boxes = [(0, 0, 10, 10), (5, 5, 15, 10), (18, 8, 30, 30)]
    mask = np.zeros((10, 20), bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    assert covered_fraction(boxes, 20, 10) == pytest.approx(mask.mean())
    assert covered_fraction([], 20, 10) == 0.0
    assert math.isnan(covered_fraction(boxes, 0, 10))


def test_score_boxes_per_part_with_intervals():
    gt = [[(0, 0, 10, 10)], [(0, 0, 10, 10), (20, 20, 30, 30)], [(0, 0, 50, 100)], [], [(10, 10, 20, 20)]]
    pred = [(0, 0, 10, 10), (20, 20, 25, 30), None, (0, 0, 5, 5), (0, 0, 5, 5)]
    peaks = [(5, 5), (30, 30), (0, 0), (1, 1), None]  # (30, 30) is just outside: x1, y1 exclusive
    sizes = [(100, 100)] * 5
    parts = ["hand", "hand", "wrist", "wrist", "wrist"]
    out = score_boxes(pred, peaks, gt, sizes, parts, ["s1", "s1", "s2", "s3", "s4"], iou_hit=0.3, n_resamples=200)
    assert out["iou_hit"] == 0.3 and out["no_ground_truth"] == 1
    json.dumps(out, allow_nan=False)
    hand, wrist, every = out["parts"]["hand"], out["parts"]["wrist"], out["parts"]["all"]
    assert list(out["parts"]) == ["hand", "wrist", "all"]
    assert (hand["images"], hand["studies"], hand["with_box"]) == (2, 1, 2)
    assert hand["mean_iou"]["value"] == pytest.approx((1.0 + 0.5) / 2)
    assert hand["hit_rate"]["value"] == 1.0 and hand["pointing"]["value"] == 0.5
    assert hand["mean_iou"]["low"] == hand["mean_iou"]["high"] == pytest.approx(0.75)  # one study: no spread
    assert hand["pointing_chance"] == pytest.approx((0.01 + 0.02) / 2)
    assert (wrist["images"], wrist["with_box"]) == (2, 1)
    assert wrist["mean_iou"]["value"] == 0.0 and wrist["pointing"]["value"] == 0.5
    assert wrist["pointing_chance"] == pytest.approx((0.5 + 0.01) / 2)
    assert every["images"] == 4 and every["hit_rate"]["value"] == 0.5
    assert every["hit_rate"]["low"] < every["hit_rate"]["high"]


def test_references_name_their_source_and_set():
    refs = load_references()
    assert refs["notes"] and refs["sources"]
    for entry in refs["entries"]:
        assert entry["source"] in refs["sources"] and entry["set"] and entry["model"]
        assert entry["level"] in ("study", "image") and isinstance(entry["checked"], bool)
        assert entry["part"] in (*PARTS, "all")
        assert set(entry["metrics"]) <= set(METRIC_NAMES)
    assert not any("radiologist" in e["model"].lower() and e["part"] != "all" for e in refs["entries"])
    paper = {
        e["part"]: e["metrics"]["kappa"]
        for e in refs["entries"]
        if "kappa" in e["metrics"] and "5 models" in e["model"]
    }
    assert paper["elbow"] == 0.710 and paper["finger"] == 0.389 and paper["all"] == 0.705
    rows = reference_rows("XR_ELBOW")
    assert rows == reference_rows("elbow") and rows[0]["part"] == "elbow"
    assert {"source", "set", "level", "part", "model", "metric", "value"} <= set(rows[0])
    assert {r["model"] for r in rows if r["metric"] == "weighted_f1"} >= {"VGG16", "DenseNet169"}
    assert reference_rows("knee") == []
    assert {r["value"] for r in reference_rows("all") if r["metric"] == "kappa"} >= {0.705, 0.778, 0.843, 0.602}
