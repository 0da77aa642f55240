"""CPU screening speed, as ratios measured in one run: a naive loop, ``mura predict`` per engine (whole process),
``mura localize`` (in alternating pairs with predict), the bare forward pass, int8 against fp32, bf16 (torch
autocast, on CPUs with AMX or AVX512-BF16) against fp32, the machine's fp32 and bf16 matmul peaks, and
predict's peak memory over 10x more images (``--memory-images 0`` skips it).

The images are real (``../shared/data/mura-sample`` PNGs and ``../shared/data/dicom`` files), linked under
new names until there are ``--images`` of them. The model is a run folder with random DenseNet-169 weights
at 320 px (speed does not depend on the weights; the int8 model is calibrated on 32 of the images).
FLOPs per image come from ``torch.utils.flop_counter``. Peak memory is the largest sum of the proportional
resident sets (PSS) of the ``mura`` process and its decoding workers, sampled every 20 ms.

The pipeline cannot beat its inputs: ``decode_s`` is the single-core time to read and preprocess one image
of this mix, and ``ceiling_ips`` what a perfect overlap of decoding and the bare forward on all cores would
give (both compete for the same cores), so ``predict_vs_ceiling`` says how much of the possible is reached.

Memory is compared between ``--memory-images`` and ten times as many (the smaller run must be long enough
to reach the steady state: the first few batches grow ONNX Runtime's arena).

    python benchmarks/speed_predict.py --images 300 --out bench-speed
    python benchmarks/speed_predict.py --only memory --memory-images 100   # the memory comparison alone
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mura_cli.engine.evaluation.speed import flops_per_image, matmul_peak
from mura_cli.engine.serving.load import load_models
from mura_cli.hardware import cpu_info
from mura_cli.models.checkpoint import ModelConfig, save_run_model
from mura_cli.models.registry import MuraNet

SHARED = Path(os.environ.get("MURA_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def sources() -> list[Path]:
    """The distinct real files: MURA PNGs and CR DICOMs (the 16x16 toy file left out)."""
    src = sorted((SHARED / "mura-sample").rglob("*.png")) + sorted((SHARED / "dicom").glob("*.dcm"))
    return [p for p in src if "16x16" not in p.name]


def make_inputs(n: int, out: Path) -> list[Path]:
    """``n`` files linked from :func:`sources`, round robin (so decoding cost is the real mix)."""
    src = sources()
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(n):
        s = src[i % len(src)]
        dst = out / f"img{i:04d}{s.suffix}"
        if not dst.exists():
            os.symlink(s.resolve(), dst)
        files.append(dst)
    return files


def make_run(folder: Path, arch: str, size: int) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig.from_json({"arch": arch, "transform": {"size": size}, "threshold": 0.5})
    save_run_model(MuraNet(arch), folder, cfg)
    (folder / "summary.json").write_text("{}\n")
    return folder


def naive_loop(files: list[Path], arch: str, size: int) -> float:
    """What a user writes in ten minutes: PIL or pydicom, torchvision transforms, eager model, one image."""
    import pydicom
    from PIL import Image
    from torchvision import transforms as T

    model = MuraNet(arch).eval()
    tf = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    t0 = time.perf_counter()
    with torch.no_grad():
        for f in files:
            if f.suffix == ".dcm":
                a = pydicom.dcmread(f).pixel_array.astype(np.float32)
                im = Image.fromarray((255 * (a - a.min()) / max(np.ptp(a), 1)).astype(np.uint8)).convert("RGB")
            else:
                im = Image.open(f).convert("RGB")
            torch.sigmoid(model(tf(im)[None]))
    return time.perf_counter() - t0


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux ``/proc/<pid>/task/<tid>/children``)."""
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        for task in Path(f"/proc/{q}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                continue
    return out


def _tree_pss_mb(pid: int) -> dict[int, float]:
    """Proportional resident memory (PSS: pages shared by the forked workers counted once), MB, of ``pid`` and
    each of its descendants."""
    out = {}
    for q in _tree(pid):
        try:
            lines = Path(f"/proc/{q}/smaps_rollup").read_text().splitlines()
            out[q] = next(int(x.split()[1]) for x in lines if x.startswith("Pss:")) / 1024
        except (OSError, StopIteration):
            continue
    return out


def whole_process(args: list[str], memory: bool = False) -> float:
    """Wall seconds of a ``mura`` run; with ``memory``, its peak memory in MB instead (PSS of the process and
    its workers together, sampled every 0.1 s: sampling costs CPU, so it never runs in a timed run)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(["mura", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    while memory and proc.poll() is None:
        peak = max(peak, sum(_tree_pss_mb(proc.pid).values()))
        time.sleep(0.1)
    proc.wait()
    return peak if memory else time.perf_counter() - t0


def decode_seconds(files: list[Path], size: int) -> float:
    """Single-core seconds to read and preprocess one image of ``files`` as predict does (the pipeline's other
    half: DICOMs at the resolution that covers ``size``; NumPy and Pillow, one thread)."""
    from mura_cli.config import TransformConfig
    from mura_cli.data.preprocess import eval_input
    from mura_cli.data.readers import read_images

    tcfg = TransformConfig(size=size)
    for f in dict.fromkeys(files):  # warm-up: the decoders' imports and first calls are not per-file costs
        read_images(f, max_pixels=10**9, min_side=size)
    t0, n = time.perf_counter(), 0
    for f in files:
        for img in read_images(f, max_pixels=10**9, min_side=size):
            eval_input(img.pixels, tcfg)
            n += 1
    return (time.perf_counter() - t0) / max(n, 1)


def make_int8(run: Path, files: list[Path], size: int) -> Path:
    """The run's fp32 export quantized to int8 where ``--engine onnx-int8`` finds it (calibrated on 32 images)."""
    from mura_cli.config import TransformConfig
    from mura_cli.data.preprocess import eval_input
    from mura_cli.data.readers import read_images
    from mura_cli.engine.evaluation.export import quantize_onnx
    from mura_cli.models.run_folder import RunFolder

    tcfg = TransformConfig(size=size)
    x = np.stack([eval_input(read_images(f, max_pixels=10**9)[0].pixels, tcfg) for f in files[:32]])
    folder = RunFolder(run)
    return quantize_onnx(
        folder.onnx_export(size), folder.int8_export(size), [x[i : i + 16] for i in range(0, len(x), 16)]
    )


def bare_forward(arch: str, size: int, batch: int, engine: str, run: Path) -> float:
    """Images per second of the forward pass alone at ``batch``, after warm-up."""
    backend = load_models([str(run)], "cpu", engine)[0].backend
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    backend(x)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 10:
        backend(x)
        n += batch
    return n / (time.perf_counter() - t0)


def memory_growth(out: Path, run: Path, engine: str, n: int) -> dict:
    """Peak memory of ``mura predict`` over ``n`` and ``10 n`` images, and the growth (the ONNX export is made
    first, so neither run pays for it)."""
    load_models([str(run)], "cpu", engine)
    res: dict = {}
    for k in (n, 10 * n):
        folder = out / f"inputs-{k}"
        make_inputs(k, folder)
        cmd = ["predict", str(folder), "--model", str(run), "--engine", engine, "--overwrite"]
        res[f"predict_{k}_images_mb"] = whole_process([*cmd, "--out", str(out / f"mem-{k}.csv")], memory=True)
    res["memory_10x_over_1x"] = res[f"predict_{10 * n}_images_mb"] / res[f"predict_{n}_images_mb"] - 1
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--arch", default="densenet169")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--engines", default="torch,onnx,torch-bf16" if cpu_info().native_bf16 else "torch,onnx")
    ap.add_argument("--memory-images", type=int, default=100)
    ap.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True, help="Time int8 too (with onnx).")
    ap.add_argument("--only", choices=("memory",))
    ap.add_argument("--out", type=Path, default=Path("bench-speed"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    run = make_run(a.out / "run", a.arch, a.size)
    if a.only == "memory":
        res = memory_growth(a.out, run, "auto", a.memory_images)
        print(json.dumps(res, indent=1))
        (a.out / "memory.json").write_text(json.dumps(res, indent=1))
        return
    files = make_inputs(a.images, a.out / "inputs")
    n = len(files)
    cpu = cpu_info()
    res = {"images": n, "arch": a.arch, "size": a.size, "batch": a.batch_size, "cores": os.cpu_count(),
           "cpu": cpu.model, "amx_bf16": cpu.amx_bf16, "avx512_bf16": cpu.avx512_bf16}  # fmt: skip
    res["naive_s"] = naive_loop(files, a.arch, a.size)
    engines = a.engines.split(",")
    for engine in engines:
        if engine == "onnx":  # the one-off export, timed apart; the runs below find it cached
            t0 = time.perf_counter()
            load_models([str(run)], "cpu", "onnx")
            res["export_s"] = time.perf_counter() - t0
        cmd = ["predict", str(a.out / "inputs"), "--model", str(run), "--engine", engine, "--overwrite"]
        res[f"predict_{engine}_s"] = whole_process([*cmd, "--out", str(a.out / f"predict-{engine}.csv")])
        res[f"forward_{engine}_ips"] = bare_forward(a.arch, a.size, a.batch_size, engine, run)
    if "onnx" in engines and a.int8:
        t0 = time.perf_counter()
        make_int8(run, files, a.size)
        res["quantize_s"] = time.perf_counter() - t0
        res["forward_onnx-int8_ips"] = bare_forward(a.arch, a.size, a.batch_size, "onnx-int8", run)
    best = min(engines, key=lambda e: res[f"predict_{e}_s"])
    # localize against predict in alternating pairs, so that a change in the machine's load between distant
    # runs is not read as the cost of the maps (the best of each is compared)
    loc = ["localize", str(a.out / "inputs"), "--model", str(run), "--engine", best, "--overwrite"]
    pred = ["predict", str(a.out / "inputs"), "--model", str(run), "--engine", best, "--overwrite"]
    pairs = [
        (
            whole_process([*pred, "--out", str(a.out / "pair.csv")]),
            whole_process([*loc, "--out", str(a.out / "bx.json")]),
        )
        for _ in range(2)
    ]
    res["predict_paired_s"], res["localize_s"] = min(p for p, _ in pairs), min(q for _, q in pairs)
    if a.memory_images:
        res.update(memory_growth(a.out, run, best, a.memory_images))
    res["flops_per_image"] = flops_per_image(MuraNet(a.arch), a.size)
    res["matmul_flops"] = matmul_peak("fp32", seconds=5)
    res["matmul_bf16_flops"] = matmul_peak("bf16", seconds=5)
    res["decode_s"] = decode_seconds(sources() * 2, a.size)
    fwd = res[f"forward_{best}_ips"]
    res["ceiling_ips"] = 1 / (res["decode_s"] / res["cores"] + 1 / fwd)
    predict_ips = n / res[f"predict_{best}_s"]
    res["best_engine"] = best
    res["ratios"] = {
        "predict_vs_naive": res["naive_s"] / res[f"predict_{best}_s"],
        "predict_vs_bare_forward": predict_ips / fwd,
        "predict_vs_ceiling": predict_ips / res["ceiling_ips"],
        "forward_fraction_of_peak": fwd * res["flops_per_image"] / _peak(res, best),
        "localize_over_predict": res["localize_s"] / res["predict_paired_s"] - 1,
    }
    if "memory_10x_over_1x" in res:
        res["ratios"]["memory_10x_over_1x"] = res["memory_10x_over_1x"]
    for engine in engines:  # each engine's forward against the peak of its own precision
        res["ratios"][f"forward_{engine}_fraction_of_peak"] = (
            res[f"forward_{engine}_ips"] * res["flops_per_image"] / _peak(res, engine)
        )
    if "forward_torch-bf16_ips" in res and "forward_onnx_ips" in res:
        res["ratios"]["bf16_vs_onnx_fp32_forward"] = res["forward_torch-bf16_ips"] / res["forward_onnx_ips"]
        res["ratios"]["bf16_predict_vs_naive"] = res["naive_s"] / res["predict_torch-bf16_s"]
    if "forward_onnx-int8_ips" in res:
        res["ratios"]["int8_vs_fp32_forward"] = res["forward_onnx-int8_ips"] / res["forward_onnx_ips"]
    print(json.dumps(res, indent=1))
    (a.out / "speed.json").write_text(json.dumps(res, indent=1))


def _peak(res: dict, engine: str) -> float:
    return res["matmul_bf16_flops"] if engine == "torch-bf16" else res["matmul_flops"]


if __name__ == "__main__":
    sys.exit(main())
