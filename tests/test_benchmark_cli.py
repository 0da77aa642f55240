"""``mura benchmark`` and ``mura demo`` through the real executable: reports written, tables shown, errors one line."""

from __future__ import annotations

import json

import pytest
import torch

from mura_cli.config import TransformConfig
from mura_cli.engine.evaluation.benchmark import choose_split
from mura_cli.errors import UsageError
from mura_cli.models.checkpoint import ModelConfig, save_run_model
from mura_cli.models.registry import MuraNet

from synth import make_fracatlas, make_mura_tree, mura, one_error_line


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    cfg = ModelConfig(arch="test_resnet", part="all", parts=("elbow", "wrist"), transform=TransformConfig(size=32))
    save_run_model(MuraNet("test_resnet"), folder, cfg)
    (folder / "summary.json").write_text("{}\n")
    return folder


@pytest.mark.slow
def test_benchmark_writes_the_report_and_prints_the_table(tmp_path, tiny_run):
    data = make_mura_tree(tmp_path / "d", patients_per_part=4, valid_patients=3)
    res = mura("benchmark", "--data", data, "--model", tiny_run, "--out", "rep", "--resamples", "50", "--workers", "0",
               cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "study level" in res.stdout and "paper kappa*" in res.stdout and "elbow" in res.stdout
    assert "rep/index.html" in res.stdout
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["data"]["split"] == "valid" and report["data"]["kind"] == "mura"
    assert set(report["levels"]) == {"study", "image"}
    study_all = report["levels"]["study"]["parts"]["all"]
    assert study_all["studies"] == report["data"]["studies"] and "kappa" in study_all["metrics"]
    assert any(r["part"] == "elbow" for r in report["references"])  # published numbers beside MURA parts
    assert report["model"]["sha256"] and len(report["model"]["sha256"]) == 64
    for name in ("report.md", "index.html", "roc_study.png", "confusion_image.png", "reliability_study.png"):
        assert (tmp_path / "rep" / name).is_file(), name
    again = mura("benchmark", "--data", data, "--model", tiny_run, "--out", "rep", cwd=tmp_path)
    assert again.returncode == 2 and "--overwrite" in one_error_line(again)


@pytest.mark.slow
def test_benchmark_boxes_on_fracatlas_and_speed_of_archs(tmp_path, tiny_run):
    fa = make_fracatlas(tmp_path / "fa", n_fractured=6, n_normal=6)
    res = mura("benchmark", "--data", fa, "--model", tiny_run, "--split", "all", "--boxes", "--out", "rep",
               "--resamples", "50", "--workers", "0", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert report["boxes"]["parts"]["all"]["images"] > 0 and "pointing chance" in res.stdout
    assert report["references"] == []  # MURA's published numbers are not shown beside FracAtlas
    res = mura("benchmark", "--speed", "--arch", "test_resnet", "--size", "32", "--data", fa, "--out", "sp",
               "--batch-size", "4", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    speed = json.loads((tmp_path / "sp" / "report.json").read_text())["speed"]["rows"][0]
    assert speed["arch"] == "test_resnet" and speed["images_per_s"] > 0
    assert speed["engine"] == "onnx"  # --engine auto on CPU with ONNX Runtime: the engine predict would use
    assert set(speed["ms_per_image"]) == {"decode", "preprocess", "forward", "cam_box"}
    assert "img/s" in res.stdout
    report = json.loads((tmp_path / "sp" / "report.json").read_text())
    native = report["machine"]["amx_bf16"] or report["machine"]["avx512_bf16"]
    # auto on a CPU with native bf16 adds the engine auto picks for checked runs; each row against its peak
    assert [r["engine"] for r in report["speed"]["rows"]] == (["onnx", "torch-bf16"] if native else ["onnx"])
    assert report["machine"]["matmul_bf16_gflops"] > 0 and all(r["peak_fraction"] > 0 for r in report["speed"]["rows"])
    assert ("AMX" in res.stdout or "AVX512-BF16" in res.stdout) if native else "no native bf16" in res.stdout
    res = mura("benchmark", "--speed", "--arch", "test_resnet", "--size", "32", "--data", fa, "--out", "sp2",
               "--batch-size", "4", "--engine", "torch", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "sp2" / "report.json").read_text())["speed"]["rows"][0]["engine"] == "torch"


def test_benchmark_usage_errors(tmp_path, tiny_run):
    res = mura("benchmark", "--model", tiny_run, cwd=tmp_path)
    assert res.returncode == 2 and "nothing to measure" in one_error_line(res)
    res = mura("benchmark", "--data", tmp_path, "--split", "nope", "--model", tiny_run, cwd=tmp_path)
    assert res.returncode == 2 and "--split" in one_error_line(res)


def test_default_split_is_valid_when_present(tmp_path):
    from mura_cli.data.index import build_index

    index = build_index(make_mura_tree(tmp_path, patients_per_part=4, valid_patients=1))
    assert choose_split(index, None) == "valid" and choose_split(index, "tune") == "tune"
    with pytest.raises(UsageError, match="--split"):
        choose_split(build_index(make_fracatlas(tmp_path / "fa")), "valid")


@pytest.mark.slow
def test_demo_runs_end_to_end_small(tmp_path):
    """A small demo (the default one is timed by hand: see the README) runs every stage and says where things are."""
    res = mura("demo", "--out", "d", "--epochs", "1", "--studies-per-part", "12", "--size", "64", "--batch-size", "16",
               cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    d = tmp_path / "d"
    for name in ("results.csv", "boxes.json", "benchmark/index.html", "runs/demo/model.safetensors"):
        assert (d / name).is_file(), name
    assert list((d / "overlays").glob("*.png"))
    assert "everything is in d" in res.stdout and "random init" in res.stdout
    report = json.loads((d / "benchmark" / "report.json").read_text())
    assert report["boxes"] is not None and report["references"] == []  # synthetic data: no published numbers
    lines = res.stdout.strip().splitlines()
    assert lines[-2].startswith("reference: not compared (the reference holds for the default settings; changed: ")
    assert lines[-1].startswith("next: mura predict ")
    nxt = mura(*lines[-1].removeprefix("next: mura ").split(), cwd=tmp_path)  # the next command, as typed
    assert nxt.returncode == 0 and (tmp_path / "results.csv").is_file(), nxt.stderr
    res = mura("demo", "--out", "d", cwd=tmp_path)
    assert res.returncode == 2 and "--overwrite" in one_error_line(res)


@pytest.mark.slow
def test_speed_of_archs_on_the_built_in_samples(tmp_path):
    res = mura("benchmark", "--speed", "--arch", "test_resnet", "--size", "32", "--batch-size", "4", "--out", "sp",
               cwd=tmp_path, env={"MURA_CACHE": str(tmp_path / "cache")})  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = json.loads((tmp_path / "sp" / "report.json").read_text())["speed"]["rows"]
    assert rows[0]["arch"] == "test_resnet" and rows[0]["images"] >= 2  # demo images and the shipped tibia DICOM
