"""The command line as a user meets it: the real ``mura`` executable in a subprocess.

Usage mistakes are one line and exit 2; the advertised command lines run as typed (``--model`` optional);
paths are taken as named; flags typed by the user win over a config file; resume refuses what it cannot honour.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from mura_cli.config import TransformConfig, to_dict
from mura_cli.engine.serving.load import resolve_model_specs
from mura_cli.engine.serving.predict import ImagePrediction, group_studies
from mura_cli.errors import ModelError
from mura_cli.models.checkpoint import ModelConfig, save_run_model
from mura_cli.models.registry import MuraNet

from synth import make_mura_tree, mura, one_error_line


def make_run(folder: Path, *, part: str = "all", parts: list[str] | None = None, threshold: float = 0.5) -> Path:
    """A finished run folder of a tiny random model, as ``mura train`` leaves it."""
    torch.manual_seed(0)
    cfg = {
        "arch": "test_resnet",
        "part": part,
        "parts": parts or [part],
        "threshold": threshold,
        "transform": to_dict(TransformConfig(size=32)),
    }
    save_run_model(MuraNet("test_resnet"), folder, ModelConfig.from_json(cfg))
    (folder / "summary.json").write_text("{}\n")
    return folder


# ------------------------------------------------------------------------------------------ usage mistakes


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["benchmarkx"], "No such command 'benchmarkx'"),
        (["predic"], "Did you mean 'predict'"),
        (["predict", "x", "--bogus"], "--bogus"),
        (["prepare"], "Missing argument 'ROOT'"),
        (["prepare", "x", "--tune-fraction", "abc"], "--tune-fraction"),
        (["train", "--epochs", "many"], "--epochs"),
    ],
)
def test_usage_mistakes_are_one_line_and_exit_2(tmp_path, args, needle):
    res = mura(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    line = one_error_line(res)
    assert needle in line and "-h" in line


def test_bare_mura_prints_help_without_traceback(tmp_path):
    res = mura(cwd=tmp_path)
    assert res.returncode in (0, 2)
    assert "Traceback" not in res.stderr and "Usage: mura" in res.stdout + res.stderr
    assert "predict" in res.stdout + res.stderr


def test_help_shows_plain_metavars_and_effective_defaults(tmp_path):
    res = mura("train", "-h", cwd=tmp_path)
    assert res.returncode == 0
    text = res.stdout
    for bad in ("<bool>", "<int>", "<float>", "<str>", "<list[str]>", "{"):
        assert bad not in text, bad
    assert "INTEGER" in text and "FLOAT" in text and "TEXT" in text
    for default in ("[default: 50]", "[default: 8]", "[default: 0.0001]", "[default: 320]"):
        assert default in text, default
    res = mura("predict", "-h", cwd=tmp_path)
    assert "PATHS..." in res.stdout and "<list[str]>" not in res.stdout and "PATH " in res.stdout


def test_typer_has_an_upper_bound():
    from importlib.metadata import requires

    typer_req = next(r for r in requires("mura-cli") if r.startswith("typer"))
    assert "<" in typer_req


# ------------------------------------------------------------------------------------------ --model is optional


def test_model_resolution_order(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    with pytest.raises(ModelError, match="mura train"):
        resolve_model_specs([], env={}, runs_dir=runs)
    old = make_run(runs / "old")
    new = make_run(runs / "new")
    os.utime(old / "summary.json", (1, 1))
    (runs / "unfinished").mkdir()  # no summary.json: still training
    assert resolve_model_specs([], env={}, runs_dir=runs).specs == (str(new),)
    assert resolve_model_specs([], env={"MURA_MODEL": "x/y"}, runs_dir=runs).specs == ("x/y",)
    assert resolve_model_specs(["a"], env={"MURA_MODEL": "x/y"}, runs_dir=runs).specs == ("a",)


@pytest.mark.slow
def test_predict_and_localize_as_typed_after_train(tmp_path):
    data = make_mura_tree(tmp_path / "data", patients_per_part=3, valid_patients=1)
    work = tmp_path / "work"
    work.mkdir()
    res = mura("predict", data, "--out", "results.csv", cwd=work)
    assert res.returncode == 4 and "mura train" in one_error_line(res)
    make_run(work / "runs" / "resnet-elbow", part="elbow", parts=["elbow"])
    res = mura("predict", data, "--out", "results.csv", "--workers", "0", cwd=work)
    assert res.returncode == 0, res.stderr
    assert "runs/resnet-elbow (newest complete run under runs/)" in res.stderr
    assert (work / "results.csv").is_file()
    # a model of one part on images of another: one warning per part, counting the images
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "images of wrist" in warnings[0] and "elbow" in warnings[0]
    one = next(data.rglob("*.png"))
    res = mura("localize", one, "--overlay", "--workers", "0", cwd=work)
    assert res.returncode == 0, res.stderr
    assert (work / "boxes.json").is_file() and len(list((work / "overlays").glob("*.png"))) == 1
    res = mura("predict", data, "--out", "r2.csv", cwd=work, env={"MURA_MODEL": str(work / "nope")})
    assert res.returncode == 4 and "no such run folder" in one_error_line(res)


@pytest.mark.slow
def test_paths_are_taken_as_named(tmp_path):
    """A path with `..` or a dot-folder that the user typed is read; dot-files below a passed folder are not."""
    run = make_run(tmp_path / "run")
    data = make_mura_tree(tmp_path / ".hidden" / "data", patients_per_part=1, valid_patients=0, parts=("XR_HAND",))
    img = next(data.rglob("*.png"))
    (img.parent / ".DS_Store.png").write_bytes(img.read_bytes())
    work = tmp_path / "work"
    work.mkdir()
    rel = os.path.relpath(img, work)
    assert rel.startswith("..")
    res = mura("localize", rel, "--model", run, "--workers", "0", cwd=work)
    assert res.returncode == 0, res.stderr
    assert json.loads((work / "boxes.json").read_text())["boxes"][0]["image"] == rel
    res = mura("predict", os.path.relpath(img.parent, work), "--model", run, "--per-image", "--workers", "0", cwd=work)
    assert res.returncode == 0, res.stderr
    rows = (work / "results.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and not any(".DS_Store" in r for r in rows)


# ------------------------------------------------------------------------------------------ thresholds


def _pred(study: str, p: float, thr: float, model: str) -> ImagePrediction:
    return ImagePrediction(
        path=study + "/1.png",
        frame=0,
        study=study,
        part="x",
        probability=p,
        model=model,
        width=1,
        height=1,
        threshold=thr,
    )


def test_each_study_is_labelled_at_its_own_models_threshold():
    preds = [_pred("a", 0.4, 0.3, "m1"), _pred("b", 0.4, 0.5, "m2"), _pred("b", 0.5, 0.5, "m2")]
    studies = {s.study: s for s in group_studies(preds)}
    assert studies["a"].prediction == 1 and studies["a"].threshold == 0.3
    assert studies["b"].prediction == 0 and studies["b"].threshold == 0.5
    assert [s.prediction for s in group_studies(preds, threshold=0.35)] == [1, 1]


@pytest.mark.slow
def test_per_part_runs_label_at_their_own_thresholds(tmp_path):
    data = make_mura_tree(tmp_path / "data", patients_per_part=2, valid_patients=0)
    runs = tmp_path / "by_part"
    make_run(runs / "elbow", part="elbow", parts=["elbow"], threshold=0.01)
    make_run(runs / "wrist", part="wrist", parts=["wrist"], threshold=0.99)
    res = mura("predict", data, "--model", runs, "--out", "r.csv", "--workers", "0", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = [ln.split(",") for ln in (tmp_path / "r.csv").read_text().splitlines()[1:]]
    by_part = {(r[1], r[4], r[5]) for r in rows}
    assert by_part == {("elbow", "1", "0.01"), ("wrist", "0", "0.99")}
    assert "per model" in res.stdout


# ------------------------------------------------------------------------------------------ train flags


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_mura_tree(tmp_path_factory.mktemp("tiny"), patients_per_part=4, valid_patients=0)


TRAIN = ("--weights", "none", "--size", "32", "--batch-size", "4", "--workers", "0", "--epochs", "1")


@pytest.mark.slow
def test_typed_flag_beats_config_file_even_at_its_default(tmp_path, tiny_data):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"arch": "resnet18", "lr": 0.01, "transform": {"size": 48}}))
    res = mura("train", "--data", tiny_data, "--config", cfg, "--arch", "test_resnet", "--lr", "0.0001",
               *TRAIN, "--name", "r", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    saved = json.loads((tmp_path / "runs" / "r" / "train_config.json").read_text())
    assert saved["arch"] == "test_resnet" and saved["lr"] == 0.0001 and saved["transform"]["size"] == 32
    res = mura("train", "--data", tiny_data, "--config", cfg, "--weights", "none", "--workers", "0",
               "--epochs", "1", "--arch", "test_resnet", "--name", "f", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    saved = json.loads((tmp_path / "runs" / "f" / "train_config.json").read_text())
    assert saved["lr"] == 0.01 and saved["transform"]["size"] == 48  # from the file, not the flag defaults


@pytest.mark.slow
def test_resume_honours_safe_flags_and_refuses_others(tmp_path, tiny_data):
    res = mura("train", "--data", tiny_data, "--arch", "test_resnet", *TRAIN, "--name", "r", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    run = tmp_path / "runs" / "r"
    res = mura("train", "--resume", run, "--lr", "0.1", "--arch", "resnet18", cwd=tmp_path)
    assert res.returncode == 2
    line = one_error_line(res)
    assert "--lr" in line and "--arch" in line and "--epochs" in line
    res = mura("train", "--resume", run, "--epochs", "2", "--device", "cpu", "--workers", "0", "--early-stop", "5",
               cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["epochs"] == 2 and saved["device"] == "cpu" and saved["early_stop"] == 5
    assert len((run / "metrics.csv").read_text().splitlines()) == 3
