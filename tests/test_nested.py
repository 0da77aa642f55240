"""Issue 19: fold schemes (later block, region), operating points and temperature chosen out of fold, nested
cross-validation, and ``mura train --folds K --nested`` / ``mura predict --threshold sens:0.9`` end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mura_cli.calibration import (
    apply_temperature,
    checked_temperature,
    fit_temperature,
    parse_operating_point,
    threshold_at,
)
from mura_cli.config import TrainConfig
from mura_cli.config_infer import PredictConfig
from mura_cli.data.index import IndexRow, patient_folds
from mura_cli.engine.training.nested import (
    Choices,
    blind_ensemble,
    choose,
    inner_rows,
    nested_estimate,
    pair_members,
)
from mura_cli.errors import DataError, UsageError
from mura_cli.metrics import aggregate_by_study, roc_auc
from mura_cli.utils import write_csv

from synth import TINY_TRAIN, mura, mura_tree_and_workdir, one_error_line


def _rows(n_patients: int = 40) -> list[IndexRow]:
    return [
        IndexRow(f"p{p:05d}/s.png", "train", "elbow" if p % 2 else "hand", f"patient{p:05d}", f"p{p}/s", p % 3 == 0)
        for p in range(n_patients)
    ]


def test_later_folds_hold_out_the_last_patient_numbers_of_every_stratum():
    rows = _rows()
    folds = patient_folds(rows, 4, seed=0, scheme="later")
    strata: dict[tuple[str, bool], list[int]] = {}
    for r in rows:
        strata.setdefault((r.part, r.label), []).append(int(r.patient[7:]))
    for numbers in strata.values():
        late = {n for n in numbers if folds[f"patient{n:05d}"] == 4}
        assert late and min(late) > max(n for n in numbers if n not in late)  # a block at the end of each stratum
    assert set(folds.values()) == {1, 2, 3, 4}
    assert patient_folds(rows, 4, seed=0, scheme="later") == folds  # seeded


def test_region_folds_leave_one_part_out():
    rows = _rows()
    folds = patient_folds(rows, 2, scheme="region")
    assert {folds[r.patient] for r in rows if r.part == "elbow"} == {1}
    assert {folds[r.patient] for r in rows if r.part == "hand"} == {2}
    with pytest.raises(DataError, match="pass --folds 2"):
        patient_folds(rows, 3, scheme="region")
    with pytest.raises(DataError, match="--folds-by"):
        patient_folds(rows, 3, scheme="by-moon")


def test_operating_points_hold_their_target_on_the_data_they_are_chosen_on():
    y = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    s = np.linspace(0.05, 0.95, 10)
    t = threshold_at(y, s, "sens:0.8")
    assert ((s >= t) & (y == 1)).sum() / 5 >= 0.8 and ((s >= t + 0.1) & (y == 1)).sum() / 5 < 0.8
    t = threshold_at(y, s, "spec:0.8")
    assert ((s < t) & (y == 0)).sum() / 5 >= 0.8
    assert np.isnan(threshold_at([1, 1], [0.2, 0.4], "sens:0.9"))
    assert parse_operating_point("spec:0.95") == ("spec", 0.95)
    for bad in ("sens:1.5", "ppv:0.9", "sens", "sens:x"):
        with pytest.raises(ValueError, match="sens:T or spec:T"):
            parse_operating_point(bad)


def test_temperature_undoes_overconfidence_and_keeps_the_ranking():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-z))).astype(int)
    over = 1 / (1 + np.exp(-3 * z))  # logits three times too large
    t = fit_temperature(y, over)
    assert t == pytest.approx(3, rel=0.1)
    cal = apply_temperature(over, t)
    assert roc_auc(y, cal) == pytest.approx(roc_auc(y, over), abs=1e-6)  # the ranking stays
    assert fit_temperature([1, 1], [0.3, 0.9]) == 1.0


def test_temperature_fitted_on_study_means_does_not_over_soften_studies():
    """Three noisy views per study: averaging them already softens the study, so the study-level fit is sharper
    than the image-level one and has the lower study log loss (what `mura predict` reports)."""
    rng = np.random.default_rng(0)
    zs = rng.normal(0, 2, 1500)
    ys = (rng.random(1500) < 1 / (1 + np.exp(-zs))).astype(int)
    p = 1 / (1 + np.exp(-(np.repeat(zs, 3) + rng.normal(0, 2, 4500))))
    y, groups = np.repeat(ys, 3), np.repeat([f"s{i}" for i in range(1500)], 3)

    def study_log_loss(t: float) -> float:
        _, lab, s = aggregate_by_study(groups, y, apply_temperature(p, t))
        return float(-np.mean(lab * np.log(s) + (1 - lab) * np.log1p(-s)))

    t_image, t_study = fit_temperature(y, p), fit_temperature(y, p, groups=groups)
    assert t_study < t_image * 0.7
    assert study_log_loss(t_study) < study_log_loss(t_image) - 0.01
    one_each = [str(i) for i in range(300)]  # one image per study: the same fit as per image
    assert fit_temperature(y[:300], p[:300], groups=one_each) == fit_temperature(y[:300], p[:300])
    assert fit_temperature([1, 1, 0], [0.3, 0.9, 0.2], groups=["a", "a", "a"]) == 1.0  # one study label only


def test_a_temperature_is_kept_only_where_it_pays_on_other_folds():
    """Every fold overconfident alike: the temperature holds on folds it was not fitted on and is kept. One
    fold overconfident and the rest calibrated (a shift): fitted on the mix it misfits both, and is dropped."""
    rng = np.random.default_rng(1)

    def fold(k: int, scale: float) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
        z = rng.normal(0, 1.5, 400)
        y = (rng.random(400) < 1 / (1 + np.exp(-z))).astype(int)
        return y, 1 / (1 + np.exp(-scale * z)), [f"{k}-{i}" for i in range(400)], [k] * 400

    alike = [fold(k, 3.0) for k in (1, 2, 3)]
    y, p, g, f = (np.concatenate([part[i] for part in alike]) for i in range(4))
    assert checked_temperature(y, p, g, f) == pytest.approx(3, rel=0.15)
    shifted = [fold(1, 1.0), fold(2, 1.0), fold(3, 1.0), fold(4, 6.0)]
    y, p, g, f = (np.concatenate([part[i] for part in shifted]) for i in range(4))
    assert fit_temperature(y, p, groups=g) > 1.2
    assert checked_temperature(y, p, g, f) == 1.0
    assert checked_temperature(y[:400], p[:400], g[:400], f[:400]) == fit_temperature(y[:400], p[:400], groups=g[:400])


def _pred_rows(rng: np.random.Generator, fold: int, n: int, shift: float = 0.0) -> list[dict]:
    y = rng.random(n) < 0.5
    p = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(shift, 0.2, n), 0.01, 0.99)
    return [
        {
            "study": f"f{fold}s{i}",
            "part": "elbow",
            "label": int(y[i]),
            "fold": fold,
            "probability": float(p[i]),
            "probability_tta": float(p[i]),
        }
        for i in range(n)
    ]


def test_nested_choices_never_see_the_fold_they_score():
    rng = np.random.default_rng(1)
    k = 4
    outer = [r for f in range(1, k + 1) for r in _pred_rows(rng, f, 60)]
    pairs = {(j, i): _pred_rows(rng, j, 60) + _pred_rows(rng, i, 60) for j, i in pair_members(k)}
    assert len(pairs) == 6 and (1, 4) in pairs
    inner = inner_rows(pairs, 2)
    assert {r["fold"] for r in inner} == {1, 3, 4}
    choices = {f: choose(inner_rows(pairs, f)) for f in range(1, k + 1)}
    flipped = [{**r, "label": 1 - r["label"]} if r["fold"] == 2 else r for r in outer]  # fold 2's labels change...
    assert choose(inner_rows(pairs, 2)) == choices[2]  # ...and its choices cannot
    est = nested_estimate(outer, choices, scope={1: "random", 2: "random", 3: "random", 4: "later"})
    assert set(est["table"]["parts"]) == {"later", "random", "all"}
    assert est["table"]["parts"]["all"]["studies"] == 240 and est["table"]["parts"]["later"]["studies"] == 60
    assert est["table"]["parts"]["all"]["metrics"]["auroc"]["value"] > 0.8
    assert nested_estimate(flipped, choices)["table"]["parts"]["all"]["metrics"]["auroc"]["value"] < 0.8
    sens = est["operating_points"]["sens:0.9"]["all"]["sensitivity"]
    assert sens["low"] <= sens["value"] <= sens["high"]
    assert set(est["choices"]) == {"1", "2", "3", "4"} and est["ece_before"]["all"]["value"] >= 0


def test_the_blind_ensemble_averages_exactly_the_models_that_never_saw_each_fold():
    outer = [
        {
            "path": f"f{f}/{i}.png",
            "study": f"f{f}s{i}",
            "label": i % 2,
            "fold": f,
            "probability": 0.2,
            "probability_tta": 0.3,
        }
        for f in (1, 2, 3)
        for i in range(4)
    ]
    inner = [
        {**r, "model": f"{j}-{k}", "probability": 0.8, "probability_tta": 0.9}
        for j, k in pair_members(3)
        for r in outer
        if r["fold"] in (j, k)
    ]
    inner.append({**outer[0], "model": "2-3", "probability": 1.0})  # a model that trained on fold 1: never averaged
    ens = blind_ensemble(outer, inner)
    assert len(ens) == len(outer) and {r["members"] for r in ens} == {3}  # outer model k + the 2 pairs {j, k}
    assert all(r["probability"] == pytest.approx(0.6) and r["probability_tta"] == pytest.approx(0.7) for r in ens)
    assert [(r["study"], r["label"], r["fold"]) for r in ens] == [(r["study"], r["label"], r["fold"]) for r in outer]
    assert {r["members"] for r in blind_ensemble(outer, [])} == {1}  # no pair models: the outer model alone


def test_nested_configs_are_checked():
    assert TrainConfig(folds=5, fold=5, inner=2, folds_by="later").inner == 2
    with pytest.raises(UsageError, match="inner fold"):
        TrainConfig(folds=5, fold=2, inner=2)
    with pytest.raises(UsageError, match="--nested needs"):
        TrainConfig(folds=2, nested=True)
    with pytest.raises(UsageError, match="--folds-by"):
        TrainConfig(folds=3, folds_by="sideways")
    assert PredictConfig(paths=("x",), threshold="0.3").threshold == 0.3
    assert PredictConfig(paths=("x",), threshold="spec:0.9").threshold == "spec:0.9"
    with pytest.raises(UsageError, match="sens:T or spec:T"):
        PredictConfig(paths=("x",), threshold="sens:2")
    assert Choices().to_dict()["temperature"] == 1.0


@pytest.mark.slow
def test_train_folds_nested_stores_a_labelled_estimate_and_predict_takes_operating_points(tmp_path):
    data, work = mura_tree_and_workdir(tmp_path, patients_per_part=6)
    args = TINY_TRAIN
    cv = ("--folds", "3", "--nested", "--folds-by", "later", "--workers", "0", "--name", "cv")
    res = mura("train", "--data", data, *args, *cv, cwd=work)
    assert res.returncode == 0, res.stderr
    assert "nested cross-validation" in res.stdout and "not a generalization estimate" in res.stdout
    run = work / "runs" / "cv"
    info = json.loads((run / "summary.json").read_text())
    assert info["folds_by"] == "later" and info["members"] == ["fold-1", "fold-2", "fold-3"]
    assert "not a generalization estimate" in info["oof"]["label"] and "nested" in info["nested"]["label"]
    assert set(info["nested"]["table"]["parts"]) == {"random", "later", "all"}
    assert sorted(p.name for p in (run / "nested").iterdir()) == ["inner-1-2", "inner-1-3", "inner-2-3"]
    with open(run / "inner.csv") as f:
        inner = list(csv.DictReader(f))
    for r in inner:  # a pair model predicts only the two folds it never saw
        assert r["fold"] in r["model"].split("-")
    ensemble = info["nested"]["ensemble"]
    assert "never saw it" in ensemble["label"] and set(ensemble["table"]["parts"]) == {"random", "later", "all"}
    assert "nested cross-validation, the ensemble" in res.stdout
    card = (run / "README.md").read_text()
    assert "Nested cross-validation (the estimate)" in card and "fitted to" in card
    assert "Nested cross-validation of the ensemble" in card
    member = json.loads((run / "fold-1" / "config.json").read_text())
    assert member.get("temperature", 1.0) == info["temperature"] and set(member.get("operating_points", {})) <= {
        "sens:0.9",
        "spec:0.9",
    }
    if "sens:0.9" in member.get("operating_points", {}):
        res = mura("predict", data / "valid", "--out", "r.csv", "--threshold", "sens:0.9", "--workers", "0", cwd=work)
        assert res.returncode == 0, res.stderr
        with open(work / "r.csv") as f:
            rows = list(csv.DictReader(f))
        assert rows and all(
            float(r["threshold"]) == pytest.approx(member["operating_points"]["sens:0.9"]) for r in rows
        )
    res = mura("predict", data / "valid", "--out", "r2.csv", "--threshold", "sens:1.2", cwd=work)
    assert res.returncode == 2 and "sens:T or spec:T" in one_error_line(res)
    single = ("train", "--data", data, *args, "--workers", "0", "--name", "one")
    assert mura(*single, cwd=work).returncode == 0
    res = mura("predict", data / "valid", "--model", "runs/one", "--out", "r3.csv", "--threshold", "spec:0.9", cwd=work)
    assert res.returncode == 2 and "stores no such operating point" in one_error_line(res)


def _fold_rows(rng: np.random.Generator, fold: int, strength: float, model: str | None = None) -> list[dict]:
    """Two images per study (labels fixed by the fold, so every model scores the same images); the probability
    separates the labels by ``strength``."""
    out = []
    labels = np.random.default_rng(fold).random(30) < 0.5
    for i in range(30):
        y = int(labels[i])
        for v in range(2):
            p = float(np.clip(0.5 + strength * (y - 0.5) + rng.normal(0, 0.25), 0.01, 0.99))
            row = {"path": f"f{fold}s{i}/{v}.png", "study": f"f{fold}s{i}", "part": "humerus", "label": y, "fold": fold}
            out.append(row | {"probability": p, "probability_tta": p} | ({"model": model} if model else {}))
    return out


@pytest.mark.slow
def test_recipe_vs_naive_scores_a_finished_run_against_naive_rows_paired_by_study(tmp_path):
    """The benchmark behind the README's tables, without training: a nested run's oof.csv and inner.csv and the
    naive loop's rows give the three project scorings, the naive row and the paired difference per scope."""
    rng = np.random.default_rng(0)
    run = tmp_path / "run"
    run.mkdir()
    write_csv(run / "oof.csv", [r for k in range(1, 6) for r in _fold_rows(rng, k, 0.6)])
    write_csv(
        run / "inner.csv", [r for j, k in pair_members(5) for f in (j, k) for r in _fold_rows(rng, f, 0.6, f"{j}-{k}")]
    )
    naive = [r for k in range(1, 6) for r in _fold_rows(rng, k, 0.2)]
    write_csv(tmp_path / "naive-rows.csv", [{k: v for k, v in r.items() if k != "probability_tta"} for r in naive])
    script = Path(__file__).parents[1] / "benchmarks" / "recipe_vs_naive.py"
    args = ["unused-data", "--run", str(run), "--naive-rows", str(tmp_path / "naive-rows.csv"), "--out", str(tmp_path)]
    res = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = ("== later ==", "project, nested", "project, cross-fitted", "project, nested ensemble", "naive (chooses")
    for line in lines:
        assert line in res.stdout
    assert "project (nested) - naive: study AUROC difference, paired by study" in res.stdout
    assert "nested ensemble - one model per fold" in res.stdout
    result = json.loads(next(tmp_path.glob("results-*.json")).read_text())
    assert set(result["difference"]) == {"random", "later", "all"}
    diff, low, high = result["difference"]["all"]
    assert low <= diff <= high and diff > 0.1  # the stronger project rows win, paired by study
    assert result["naive (chooses nothing)"]["operating_points"] == {}  # the naive loop chose none
