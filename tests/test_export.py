"""``mura export``: ONNX (fp32, or int8 only when tune AUROC holds) with a preprocessing sidecar, and the
``onnx-int8`` engine that uses it, through the real executable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mura_cli.engine.serving.onnx import onnx_available

from synth import make_mura_tree, mura, one_error_line

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not onnx_available(), reason="onnxruntime is not installed")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = make_mura_tree(root / "data", patients_per_part=4, valid_patients=1)
    args = ("--arch", "test_resnet", "--weights", "none", "--size", "32", "--epochs", "1", "--workers", "0")
    res = mura("train", "--data", data, *args, "--name", "run", cwd=root)
    assert res.returncode == 0, res.stderr
    return root, data, root / "runs" / "run"


def test_export_fp32_writes_model_and_preprocessing(trained):
    root, _, run = trained
    res = mura("export", run, "--out", root / "fp32", cwd=root)
    assert res.returncode == 0, res.stderr
    side = json.loads((root / "fp32" / "preprocessing.json").read_text())
    assert side["model"] == "model.onnx" and side["precision"] == "fp32"
    assert side["inputs"]["images"]["shape"] == ["batch", 3, 32, 32]
    assert side["preprocessing"]["resize"] == "stretch" and len(side["preprocessing"]["mean"]) == 3
    import onnxruntime as ort

    sess = ort.InferenceSession(str(root / "fp32" / "model.onnx"), providers=["CPUExecutionProvider"])
    logits, cams = sess.run(None, {"images": np.zeros((2, 3, 32, 32), np.float32)})
    assert logits.shape[0] == 2 and cams.ndim == 3
    again = mura("export", run, "--out", root / "fp32", cwd=root)  # nothing is overwritten silently
    assert again.returncode == 2 and "--overwrite" in one_error_line(again)


def test_export_int8_is_checked_against_fp32_and_serves_the_int8_engine(trained):
    root, data, run = trained
    res = mura("export", run, "--int8", "--calibration", "16", "--out", root / "int8", cwd=root)
    assert res.returncode == 0, res.stderr
    side = json.loads((root / "int8" / "preprocessing.json").read_text())
    check = side["int8_check"]
    assert set(check["study_auroc"]) == {"fp32", "int8"} and check["max_drop"] == 0.005
    pred = mura("predict", data / "valid", "--model", run, "--engine", "onnx-int8", "--out", root / "r.csv", cwd=root)
    if side["precision"] == "int8":
        assert (root / "int8" / "model-int8.onnx").is_file()
        assert pred.returncode == 0, pred.stderr
    else:  # the drop was too large: fp32 kept, said so, and the int8 engine asks for an export
        assert "stays fp32" in res.stderr and not (root / "int8" / "model-int8.onnx").exists()
        assert pred.returncode == 2 and "mura export" in one_error_line(pred)


def test_export_refuses_an_ensemble_and_a_non_run(tmp_path):
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "ensemble.json").write_text("{}")
    res = mura("export", tmp_path / "ens", cwd=tmp_path)
    assert res.returncode == 2 and "fold-1" in one_error_line(res)
    res = mura("export", tmp_path, cwd=tmp_path)
    assert res.returncode == 2 and "not a run folder" in one_error_line(res)
