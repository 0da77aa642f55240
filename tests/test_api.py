"""The Python API (``from mura_cli import load_model, predict, localize, benchmark``) on a real small model.

The model is a real MuraNet (timm's test_resnet, random weights) saved as ``mura train`` saves a run; the images
are a small synthetic MURA tree. The CLI calls these same functions: one test compares their outputs.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import FrozenInstanceError

import pytest
import torch

import mura_cli
from mura_cli import MuraError, benchmark, load_model, localize, predict
from mura_cli.config import TransformConfig, to_dict
from mura_cli.engine.serving.localize import Localization
from mura_cli.engine.serving.predict import ImagePrediction, StudyPrediction
from mura_cli.models.checkpoint import ModelConfig, save_run_model
from mura_cli.models.registry import MuraNet

from synth import make_mura_tree, mura, mura_tree_and_workdir

STUDY_COLUMNS = ["study", "part", "images", "probability", "prediction", "threshold", "model"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("api") / "run"
    torch.manual_seed(0)
    config = {"arch": "test_resnet", "part": "all", "threshold": 0.5, "transform": to_dict(TransformConfig(size=64))}
    save_run_model(MuraNet("test_resnet"), d, ModelConfig.from_json(config))
    return d


@pytest.fixture(scope="module")
def xrays(tmp_path_factory):
    return make_mura_tree(tmp_path_factory.mktemp("xrays"), patients_per_part=2, valid_patients=1)


def test_import_stays_light_and_names_resolve_on_use():
    code = (
        "import sys, mura_cli\n"
        "assert 'torch' not in sys.modules and 'mura_cli.api' not in sys.modules\n"
        "assert callable(mura_cli.predict) and callable(mura_cli.load_model)\n"
        "assert 'torch' not in sys.modules, 'the API imports torch only when a model is loaded'\n"
        "print(sorted(set(mura_cli.__all__) & {'load_model', 'predict', 'localize', 'benchmark', 'train'}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "['benchmark', 'load_model', 'localize', 'predict', 'train']"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mura_cli.nope  # noqa: B018


def test_predict_returns_typed_results_and_writes_nothing(run_dir, xrays, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = load_model(run_dir, device="cpu", engine="torch")
    assert model.name == "run" and model.parts == ("all",) and model.thresholds == (0.5,)
    assert repr(model) == "Model(name='run', parts=('all',), members=1, device='cpu')"
    result = predict(xrays, model=model, workers=0)
    assert result.out is None and list(tmp_path.iterdir()) == []  # nothing written unless out= is given
    assert result.studies and all(isinstance(s, StudyPrediction) for s in result.studies)
    assert all(isinstance(p, ImagePrediction) for p in result.predictions) and not result.failures
    assert sum(s.images for s in result.studies) == len(result.predictions)
    with pytest.raises(FrozenInstanceError):
        result.studies[0].probability = 1.0  # type: ignore[misc]
    records = result.to_records()
    assert len(records) == len(result.studies) and list(records[0]) == STUDY_COLUMNS
    assert [r["path"] for r in result.to_records("image")] == [p.path for p in result.predictions]
    frame = result.to_pandas("image")
    assert list(frame.columns) == list(result.to_records("image")[0]) and len(frame) == len(result.predictions)
    with pytest.raises(MuraError, match="level='series'"):
        result.to_records("series")
    # the same model named by its folder gives the same numbers
    again = predict([str(xrays)], model=str(run_dir), device="cpu", engine="torch", workers=0)
    assert [s.probability for s in again.studies] == [s.probability for s in result.studies]


def test_predict_options_are_the_config_fields(run_dir, xrays, tmp_path):
    model = load_model(run_dir, device="cpu", engine="torch")
    with pytest.raises(MuraError, match="unknown setting thresold"):
        predict(xrays, model=model, thresold=0.3)
    with pytest.raises(MuraError, match="--aggregate median: expected one of mean, max"):
        predict(xrays, model=model, aggregate="median")
    out = tmp_path / "studies.csv"
    result = predict(xrays, model=model, out=out, per_image=True, threshold=0.25, workers=0)
    assert result.out == out and len(result.studies) == len(result.predictions)
    assert {s.threshold for s in result.studies} == {0.25}
    with pytest.raises(MuraError, match="exists"):
        predict(xrays, model=model, out=out)  # nothing the user had is overwritten


@pytest.mark.slow
def test_cli_and_api_write_the_same_rows(run_dir, xrays, tmp_path):
    res = mura("predict", xrays, "--model", run_dir, "--out", "cli.csv", "--device", "cpu", "--engine", "torch",
               "--workers", "0", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    api = predict(xrays, model=run_dir, out=tmp_path / "api.csv", device="cpu", engine="torch", workers=0)
    cli_rows = list(csv.DictReader((tmp_path / "cli.csv").open()))
    assert cli_rows == list(csv.DictReader((tmp_path / "api.csv").open()))
    assert [r["study"] for r in cli_rows] == [r["study"] for r in api.to_records()]


def test_localize_returns_boxes_per_image(run_dir, xrays, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = localize(xrays, model=load_model(run_dir, device="cpu", engine="torch"), workers=0)
    assert result.out is None and list(tmp_path.iterdir()) == []
    assert result.localizations and all(isinstance(loc, Localization) for loc in result.localizations)
    assert len(result.localizations) == len(result.rows) == len(result.to_records())
    assert [r["image"] for r in result.to_records()] == [loc.path for loc in result.localizations]
    assert list(result.to_pandas().columns) == list(result.to_records()[0])


def test_benchmark_scores_a_labelled_tree(run_dir, xrays, tmp_path):
    out = tmp_path / "bench"
    result = benchmark(xrays.parent, model=run_dir, out=out, device="cpu", engine="torch", resamples=20, workers=0)
    assert (out / "report.json").is_file() and result.out == out
    records = result.to_records()
    assert {r["level"] for r in records} == {"study", "image"}
    kappa = [r for r in records if (r["level"], r["part"], r["metric"]) == ("study", "all", "kappa")]
    assert len(kappa) == 1 and set(kappa[0]) == {"level", "part", "metric", "n", "value", "low", "high"}
    assert len(result.to_pandas()) == len(records)


def test_to_pandas_without_pandas_says_what_to_do(run_dir, xrays, monkeypatch):
    result = predict(xrays, model=load_model(run_dir, device="cpu", engine="torch"), workers=0)
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(MuraError, match="pip install pandas"):
        result.to_pandas()
    assert result.to_records()  # plain records need nothing


@pytest.mark.slow
def test_train_from_python_gives_a_run_that_predict_takes_and_names_bad_settings(tmp_path, monkeypatch):
    data, work = mura_tree_and_workdir(tmp_path, patients_per_part=3)
    monkeypatch.chdir(work)
    tiny = {"arch": "test_resnet", "part": "all", "weights": "none", "epochs": 1, "workers": 0}
    result = mura_cli.train(data, transform=TransformConfig(size=32), name="api", **tiny)
    assert result.run_dir.name == "api" and (result.run_dir / "model.safetensors").is_file()
    assert len(result.epochs) == 1 and result.best.epoch == 1
    assert predict(data / "valid", model=result.run_dir, workers=0).studies  # the run serves as it is
    with pytest.raises(MuraError, match=r"train\(\): unknown setting 'epoch'; did you mean 'epochs'"):
        mura_cli.train(data, epoch=3)
    with pytest.raises(MuraError, match=r"'transform.size' = 'big': expected"):
        mura_cli.train(data, transform={"size": "big"})
    with pytest.raises(MuraError, match="keeps its own settings; drop arch"):
        mura_cli.train(resume=result.run_dir, arch="resnet50")
    res = mura_cli.train(resume=result.run_dir, epochs=2, workers=0)  # one more epoch, its own settings
    assert res.run_dir == result.run_dir and [e.epoch for e in res.epochs][-1] == 2
