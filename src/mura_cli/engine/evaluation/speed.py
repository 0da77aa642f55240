"""How fast a model screens radiographs: milliseconds per image for each stage, images per second, peak memory.

Stages, as Ultralytics' predictor times them: ``decode`` (file -> pixels), ``preprocess`` (pixels -> tensor),
``forward`` (the backend, after warm-up; the GPU is synchronised before the clock is read) and ``cam_box``
(the extra cost of the class activation map and its box on the original pixels). Each row names the engine it
ran on: a trained model's backend as loaded, and ``--arch`` models with random weights on ``--engine`` as predict
resolves it (ONNX Runtime on CPU when installed).
"""

from __future__ import annotations

import platform
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mura_cli.cam import cam_on_grid, image_box
from mura_cli.config import TransformConfig
from mura_cli.data.preprocess import eval_geometry, eval_input
from mura_cli.data.readers import read_images
from mura_cli.engine.backends import Backend
from mura_cli.engine.serving.runtimes import AUTO, TORCH, TORCH_BF16, arch_backend, engine_name, speed_engines
from mura_cli.utils import default_workers


@dataclass(frozen=True)
class SpeedRow:
    """One model at one input size and batch size."""

    arch: str
    size: int
    batch: int
    device: str
    images: int
    engine: str
    images_per_s: float
    ms_per_image: dict[str, float]
    peak_memory_mb: float
    forward_gflops: float | None = None
    peak_fraction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def machine_info(device: str, peaks: bool = False) -> dict[str, Any]:
    """CPU model and its bf16 features, cores, GPU name and library versions, for the header of a speed table;
    with ``peaks``, the CPU's fp32 and bf16 matmul peaks (GFLOP/s, :func:`matmul_peak`; about 3 s)."""
    import timm

    from mura_cli._version import __version__
    from mura_cli.hardware import cpu_info

    cpu = cpu_info()
    gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else None
    peak = {f"matmul_{p}_gflops": round(matmul_peak(p) / 1e9, 1) for p in ("fp32", "bf16")} if peaks else {}
    return {
        "cpu": cpu.model,
        "amx_bf16": cpu.amx_bf16,
        "avx512_bf16": cpu.avx512_bf16,
        **peak,
        "cores": default_workers(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "versions": {
            "mura-cli": __version__,
            "torch": torch.__version__,
            "timm": timm.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }


def matmul_peak(precision: str = "fp32", n: int = 2048, seconds: float = 1.5) -> float:
    """FLOP/s of a large ``n`` x ``n`` matrix product on the CPU in ``fp32`` or ``bf16`` (what the hardware's
    matrix units deliver; a network's forward pass can approach it, not beat it)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        k += 1
    return 2 * n**3 * k / (time.perf_counter() - t0)


def flops_per_image(model: torch.nn.Module, size: int) -> float:
    """FLOPs of one ``size`` px image through ``model`` (``torch.utils.flop_counter``: convolutions and matrix
    products, 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    return float(fc.get_total_flops())


def _clock(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def measure_speed(
    backend: Backend,
    transform: TransformConfig,
    files: Sequence[Path],
    *,
    arch: str,
    device: str,
    batch_size: int = 16,
    warmup: int = 1,
    repeats: int = 2,
) -> SpeedRow:
    """Time each stage on ``files`` (decoded once for the later stages), after ``warmup`` batches."""
    t0 = _clock("cpu")
    frames = [img for f in files for img in read_images(f, min_side=transform.size)]  # as predict reads them
    decode = (_clock("cpu") - t0) / max(len(frames), 1)
    t0 = _clock("cpu")
    inputs = [eval_input(img.pixels, transform) for img in frames]
    preprocess = (_clock("cpu") - t0) / max(len(inputs), 1)
    batches = [np.stack(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]
    for x in batches[:warmup]:
        backend(x, False)

    def timed(with_cam: bool) -> tuple[float, list[np.ndarray]]:
        maps: list[np.ndarray] = []
        start = _clock(device)
        for _ in range(repeats):
            for x in batches:
                _, cams = backend(x, with_cam)
                if cams is not None:
                    maps.extend(cams)
        return (_clock(device) - start) / (repeats * len(inputs)), maps

    forward, _ = timed(False)
    with_cam, maps = timed(True)
    t0 = _clock("cpu")
    for img, cam in zip(frames, maps[: len(frames)], strict=False):
        h, w = img.size
        image_box(cam_on_grid(cam, eval_geometry(h, w, transform), h, w), h, w)
    post = (_clock("cpu") - t0) / max(len(frames), 1)
    ms = {
        "decode": decode * 1e3,
        "preprocess": preprocess * 1e3,
        "forward": forward * 1e3,
        "cam_box": (max(with_cam - forward, 0.0) + post) * 1e3,
    }
    return SpeedRow(
        arch=arch,
        size=transform.output_size,
        batch=batch_size,
        device=device,
        images=len(frames),
        engine=engine_name(backend),
        images_per_s=1e3 / max(sum(ms.values()), 1e-9),
        ms_per_image={k: round(v, 3) for k, v in ms.items()},
        peak_memory_mb=round(_peak_memory_mb(device), 1),
    )


def measure_archs(
    archs: Sequence[str],
    files: Sequence[Path],
    *,
    size: int | None,
    device: str,
    batch_size: int,
    engine: str = TORCH,
    peaks: dict[str, Any] | None = None,
    on_row: Callable[[SpeedRow], None] | None = None,
) -> list[SpeedRow]:
    """:func:`measure_speed` for architectures with random weights at ``size`` (default: the training recipe's),
    on ``engine`` (``torch``, ``torch-bf16``, or ``onnx``: each exported to a temporary file first; ``auto`` as
    predict resolves it, torch for an arch that cannot be exported, plus a ``torch-bf16`` row on a CPU with native
    bf16). With ``peaks`` (:func:`machine_info`'s ``matmul_*_gflops``), each row gets its forward GFLOP/s and
    the fraction of the matmul peak of its precision."""
    from mura_cli.models.registry import MuraNet, pretrained_cfg

    rows = []
    for arch in archs:
        pcfg = pretrained_cfg(arch)
        side = size or TransformConfig().size
        tcfg = TransformConfig(size=side, mean=tuple(pcfg["mean"]), std=tuple(pcfg["std"]))
        net = MuraNet(arch)
        flops = flops_per_image(net, tcfg.output_size) if peaks else None
        for name in speed_engines(engine, device):
            backend = arch_backend(net, arch, tcfg.output_size, device, name, engine == AUTO)
            row = measure_speed(backend, tcfg, files, arch=arch, device=device, batch_size=batch_size)
            if flops and peaks:
                gflops = flops / max(row.ms_per_image["forward"], 1e-9) / 1e6
                peak = peaks.get(f"matmul_{'bf16' if row.engine == TORCH_BF16 else 'fp32'}_gflops")
                row = replace(
                    row, forward_gflops=round(gflops, 1), peak_fraction=round(gflops / peak, 3) if peak else None
                )
            rows.append(row)
            if on_row:
                on_row(row)
    return rows
