"""The ONNX Runtime engine gives the torch engine's probabilities and CAMs (within 1e-4) on real radiographs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mura_cli.config import InferConfig, TransformConfig
from mura_cli.engine.backends import TorchBackend
from mura_cli.engine.serving.load import LoadedModel, load_models
from mura_cli.engine.serving.onnx import onnx_backend
from mura_cli.engine.serving.predict import predict
from mura_cli.engine.serving.runtimes import resolve_engine
from mura_cli.errors import UsageError
from mura_cli.models.checkpoint import ModelConfig, save_run_model
from mura_cli.models.registry import MuraNet
from mura_cli.models.run_folder import RunFolder

from synth import SHARED_DATA, make_mura_tree

pytest.importorskip("onnxruntime")


def _inputs(tmp_path):
    """Real radiographs when ../shared is here (PNG and DICOM), else a synthetic MURA tree."""
    if SHARED_DATA.is_dir():
        pngs = sorted((SHARED_DATA / "mura-sample").rglob("*.png"))[:4]
        dicoms = [SHARED_DATA / "dicom" / n for n in ("CR_cspine_16x16_tiny_pydicom_bundled.dcm",
                                                      "CR_hip_RG2_jpeg_extended_lossy.dcm")]  # fmt: skip
        return pngs + dicoms
    return sorted(make_mura_tree(tmp_path / "d", patients_per_part=2, valid_patients=0).rglob("*.png"))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet18", "mobilenetv3_large_100", "efficientnet_b0"])
def test_onnx_engine_matches_torch(tmp_path, arch):
    torch.manual_seed(0)
    net = MuraNet(arch).eval()
    with torch.no_grad():  # a head with some signal, so the maps are not flat
        net.fc.weight.normal_(0, 0.05)
    run = tmp_path / "run"
    cfg = ModelConfig(arch=arch, transform=TransformConfig(size=96))
    save_run_model(net, run, cfg)
    files = _inputs(tmp_path)
    torch_model = LoadedModel(name="m", backend=TorchBackend(net), config=cfg, folder=run)
    onnx_model = LoadedModel(name="m", backend=onnx_backend(lambda: net, run, 96, "m"), config=cfg)
    a = list(predict(files, [torch_model], InferConfig(batch_size=3, workers=0), per_image=True, with_cam=True))
    b = list(predict(files, [onnx_model], InferConfig(batch_size=3, workers=0), per_image=True, with_cam=True))
    assert len(a) == len(b) == len(files)
    for p, q in zip(a, b, strict=True):
        assert abs(p.probability - q.probability) < 1e-4
        assert p.cam.shape == q.cam.shape and np.abs(p.cam - q.cam).max() < 1e-4


def test_export_is_cached_by_weights_size_and_opset(tmp_path):
    torch.manual_seed(0)
    run = tmp_path / "run"
    save_run_model(MuraNet("test_resnet"), run, ModelConfig(arch="test_resnet", transform=TransformConfig(size=32)))
    first = load_models([str(run)], "cpu", "onnx")[0]
    path = RunFolder(run).onnx_export(32)
    assert path.is_file() and path.parent == run / "onnx"
    stamp = path.stat().st_mtime_ns
    load_models([str(run)], "cpu", "onnx")
    assert path.stat().st_mtime_ns == stamp  # reused, not exported again
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    assert first.backend(x, True)[1].shape[0] == 2
    save_run_model(MuraNet("test_resnet"), run, ModelConfig(arch="test_resnet", transform=TransformConfig(size=32)))
    assert RunFolder(run).onnx_export(32) != path  # new weights, new key


def test_engine_choice():
    assert resolve_engine("auto", "cpu") == "onnx" and resolve_engine("auto", "cuda") == "torch"
    assert resolve_engine("torch", "cpu") == "torch"
    with pytest.raises(UsageError, match="--engine"):
        resolve_engine("tensorrt", "cpu")
    with pytest.raises(UsageError, match="CPU"):
        resolve_engine("onnx", "cuda")


def test_auto_is_the_default_and_falls_back_to_torch_for_a_model_that_cannot_export(tmp_path, monkeypatch, caplog):
    from mura_cli.engine.serving import onnx
    from mura_cli.errors import ModelError

    assert InferConfig().engine == "auto"
    run = tmp_path / "run"
    save_run_model(MuraNet("test_resnet"), run, ModelConfig(arch="test_resnet", transform=TransformConfig(size=32)))
    assert isinstance(load_models([str(run)], "cpu", "auto")[0].backend, onnx.OnnxBackend)

    def refuse(model, size, path, opset=onnx.OPSET):
        raise ModelError("cannot export test_resnet to ONNX (an op it lacks); use --engine torch")

    other = tmp_path / "other"
    save_run_model(MuraNet("test_resnet"), other, ModelConfig(arch="test_resnet", transform=TransformConfig(size=24)))
    monkeypatch.setattr(onnx, "export_onnx", refuse)
    assert isinstance(load_models([str(other)], "cpu", "auto")[0].backend, TorchBackend)
    assert "--engine auto uses torch" in caplog.text
    with pytest.raises(ModelError, match="cannot export"):
        load_models([str(other)], "cpu", "onnx")


@pytest.mark.slow
def test_predict_with_the_onnx_engine_writes_the_same_csv(tmp_path):
    from synth import mura

    torch.manual_seed(0)
    run = tmp_path / "run"
    save_run_model(MuraNet("resnet18"), run, ModelConfig(arch="resnet18", transform=TransformConfig(size=64)))
    data = make_mura_tree(tmp_path / "d", patients_per_part=2, valid_patients=0)
    for engine in ("torch", "onnx"):
        res = mura("predict", data, "--model", run, "--engine", engine, "--out", f"{engine}.csv", "--workers", "0",
                   cwd=tmp_path)  # fmt: skip
        assert res.returncode == 0, res.stderr
    rows = [(tmp_path / f"{e}.csv").read_text().splitlines() for e in ("torch", "onnx")]
    assert len(rows[0]) == len(rows[1]) > 1
    for a, b in zip(rows[0][1:], rows[1][1:], strict=True):
        pa, pb = float(a.split(",")[3]), float(b.split(",")[3])
        assert a.split(",")[0] == b.split(",")[0] and abs(pa - pb) < 1e-4


def _imported(stderr: str) -> set[str]:
    """Module names from ``python -X importtime`` output."""
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.slow
def test_onnx_engine_serves_predict_and_localize_without_importing_torch(tmp_path):
    """With the export cached, the ONNX hot path never imports torch (seconds at start-up, hundreds of MB): the
    readers, preprocessing, worker processes, CAM boxes and overlays are NumPy and Pillow."""
    import subprocess
    import sys

    run = tmp_path / "run"
    save_run_model(MuraNet("resnet18"), run, ModelConfig(arch="resnet18", transform=TransformConfig(size=64)))
    load_models([str(run)], "cpu", "onnx")  # the one-off export
    files = _inputs(tmp_path)
    folder = tmp_path / "in"
    folder.mkdir()
    for i, f in enumerate(files):
        (folder / f"img{i}{f.suffix}").symlink_to(f)
    for cmd in (["predict", "--out", "p.csv"], ["localize", "--overlay", "--out", "b.json"]):
        res = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "mura_cli", cmd[0], str(folder), "--model", str(run),
             "--engine", "onnx", "--workers", "2", *cmd[1:]],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr[-2000:]
        mods = _imported(res.stderr)
        assert "onnxruntime" in mods and "mura_cli.data.preprocess" in mods
        assert not {m for m in mods if m.split(".")[0] in ("torch", "torchvision", "timm")}
    assert len((tmp_path / "p.csv").read_text().splitlines()) > 1
