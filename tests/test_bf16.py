"""bf16 on CPUs that have it: detection, the engine's agreement with fp32 on real radiographs, the stored check
that ``--engine auto`` relies on, and ``mura train --precision``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mura_cli.cam import cam_on_grid, image_box
from mura_cli.config import TransformConfig
from mura_cli.data.preprocess import eval_geometry, eval_input
from mura_cli.data.readers import read_images
from mura_cli.engine.backends import TorchBackend
from mura_cli.engine.evaluation.bf16 import CHECK_NAME, MAX_PROBABILITY_DIFF, Bf16Check, bf16_passed, load_bf16_check
from mura_cli.engine.serving.load import AUTO_BF16_MIN_INPUTS, load_models
from mura_cli.hardware import cpu_info, resolve_precision
from mura_cli.models.checkpoint import WEIGHTS_NAME
from mura_cli.models.registry import MuraNet
from mura_cli.utils import sha256_files, write_json
from test_cli_usage import make_run

from synth import SHARED_DATA, make_mura_tree, mura, one_error_line

NATIVE = cpu_info().native_bf16
needs_bf16 = pytest.mark.skipif(
    not NATIVE, reason=f"this CPU ({cpu_info().model}) has neither AMX nor AVX512-BF16: bf16 would be emulated"
)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    text = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx512f {}\n\nprocessor\t: 1\n"
    cases = (("amx_bf16 amx_tile avx512_bf16", True, True), ("avx512_bf16", False, True), ("", False, False))
    for flags, amx, avx in cases:
        (tmp_path / "cpuinfo").write_text(text.format(flags))
        info = cpu_info(tmp_path / "cpuinfo")
        assert (info.model, info.amx_bf16, info.avx512_bf16, info.native_bf16) == ("Some CPU", amx, avx, amx or avx)
    assert not cpu_info(tmp_path / "missing").native_bf16


def test_precision_auto_is_bf16_on_gpus_and_native_cpus_only(tmp_path):
    (tmp_path / "with").write_text("model name: A\nflags: sse2 amx_bf16\n")
    (tmp_path / "without").write_text("model name: B\nflags: sse2 avx2\n")
    native, plain = cpu_info(tmp_path / "with"), cpu_info(tmp_path / "without")
    assert resolve_precision("auto", "cpu", native) == "bf16"
    assert resolve_precision("auto", "cpu", plain) == "fp32"
    assert resolve_precision("auto", "cuda:0", plain) == "bf16"
    assert resolve_precision("auto", "mps", native) == "fp32"
    assert resolve_precision("fp32", "cuda", native) == "fp32" and resolve_precision("bf16", "cpu", plain) == "bf16"


def _real_files():
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data not found at {SHARED_DATA} (set MURA_SHARED_DATA or put ../shared/data beside the repo)"
        )
    pngs = sorted((SHARED_DATA / "mura-sample").rglob("*.png"))
    dicoms = [p for p in sorted((SHARED_DATA / "dicom").glob("*.dcm")) if "16x16" not in p.name]
    return pngs + dicoms


@pytest.mark.slow
@needs_bf16
def test_bf16_engine_agrees_with_fp32_on_real_radiographs():
    """DenseNet-169 at 320 px on the 10 MURA PNGs and 8 CR DICOMs: probabilities within the check's tolerance,
    boxes within one cell of the network's feature grid (the map is taken in fp32 from the bf16 features)."""
    files = _real_files()
    torch.manual_seed(0)
    net = MuraNet("densenet169").eval()
    tcfg = TransformConfig(size=320)
    frames = [read_images(f, min_side=320)[0] for f in files]
    x = np.stack([eval_input(f.pixels, tcfg) for f in frames])
    (l32, c32), (l16, c16) = (
        TorchBackend(net, "cpu", precision=p, channels_last=True)(x, with_cam=True) for p in ("fp32", "bf16")
    )
    p32, p16 = 1 / (1 + np.exp(-l32.astype(np.float64))), 1 / (1 + np.exp(-l16.astype(np.float64)))
    assert np.abs(p16 - p32).max() <= MAX_PROBABILITY_DIFF
    for img, a, b in zip(frames, c32, c16, strict=True):
        h, w = img.size
        g = eval_geometry(h, w, tcfg)
        box32, box16 = (image_box(cam_on_grid(c, g, h, w), h, w)[0] for c in (a, b))
        assert box32 is not None and box16 is not None
        cell = max(h, w) / a.shape[0]  # original pixels per feature-grid cell (the longer side sets the scale)
        for u, v in zip(
            (box32.x0, box32.y0, box32.x1, box32.y1), (box16.x0, box16.y0, box16.x1, box16.y1), strict=True
        ):
            assert abs(u - v) <= cell, (img, box32, box16)


def _check(run, passed: bool, sha: str | None = None) -> None:
    diff = 0.001 if passed else 0.2
    check = Bf16Check(sha or sha256_files([run / WEIGHTS_NAME]), 20, 10, 0.9, 0.899, diff, diff / 2, "cpu", 0.005)
    write_json(run / CHECK_NAME, check.to_dict())


def _engine(run, inputs=None) -> str:
    from mura_cli.engine.evaluation.speed import engine_name

    return engine_name(load_models([str(run)], "cpu", "auto", inputs=inputs)[0].backend)


def test_auto_picks_bf16_only_where_the_check_passed(tmp_path):
    pytest.importorskip("onnxruntime")
    run = make_run(tmp_path / "run")
    assert _engine(run) == "onnx"  # never checked
    _check(run, passed=False)
    assert load_bf16_check(run) is not None and not bf16_passed(run)
    assert _engine(run) == "onnx"
    _check(run, passed=True, sha="0" * 64)  # a check of other weights counts for nothing
    assert load_bf16_check(run) is None and _engine(run) == "onnx"
    _check(run, passed=True)
    assert bf16_passed(run)
    assert _engine(run) == ("torch-bf16" if NATIVE else "onnx")
    assert _engine(run, inputs=AUTO_BF16_MIN_INPUTS - 1) == "onnx"  # a handful of files: the torch-free path
    (run / CHECK_NAME).write_text("{not json")
    assert not bf16_passed(run) and _engine(run) == "onnx"
    assert load_models([str(run)], "cpu", "torch-bf16")[0].backend.precision == "bf16"  # asked for: no check


@pytest.mark.slow
def test_precision_through_the_real_executable(tmp_path):
    data = make_mura_tree(tmp_path / "data", patients_per_part=10, valid_patients=0)
    base = ("train", "--data", data, "--arch", "test_resnet", "--weights", "none", "--size", "32", "--epochs", "1",
            "--batch-size", "4", "--workers", "0", "--part", "elbow")  # fmt: skip
    bad = mura(*base, "--precision", "fp16", cwd=tmp_path)
    line = one_error_line(bad)
    assert bad.returncode == 2 and "--precision" in line and "fp16" in line, bad.stderr
    for precision in ("fp32", "bf16", "auto"):
        res = mura(*base, "--precision", precision, "--name", precision, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        run = tmp_path / "runs" / precision
        expect = ("bf16" if NATIVE else "fp32") if precision == "auto" else precision
        assert json.loads((run / "train_config.json").read_text())["precision"] == expect
        assert json.loads((run / "summary.json").read_text())["precision"] == expect
        assert f", {expect}" in res.stdout
        # the check is made once, by training, on CPUs where auto could use it
        assert (run / CHECK_NAME).is_file() == NATIVE
        if NATIVE:
            check = json.loads((run / CHECK_NAME).read_text())
            assert check["images"] > 0 and check["max_probability_diff"] <= MAX_PROBABILITY_DIFF
