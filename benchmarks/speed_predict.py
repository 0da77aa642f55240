"""CPU screening speed, as ratios measured in one run: a naive loop, ``mura predict`` per engine (whole process),
``mura localize``, the bare forward pass, int8 against fp32, and the machine's matmul peak.

The images are real (``../shared/data/mura-sample`` PNGs and ``../shared/data/dicom`` files), linked under
new names until there are ``--images`` of them. The model is a run folder with random DenseNet-169 weights
at 320 px (speed does not depend on the weights). FLOPs per image come from ``torch.utils.flop_counter``.

    python benchmarks/speed_predict.py --images 300 --out bench-speed
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mura_cli.models.checkpoint import ModelConfig, save_run_model
from mura_cli.models.registry import MuraNet

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_inputs(n: int, out: Path) -> list[Path]:
    """``n`` files linked from the real PNGs and DICOMs, round robin (so decoding cost is the real mix)."""
    src = sorted((SHARED / "mura-sample").rglob("*.png")) + sorted((SHARED / "dicom").glob("*.dcm"))
    src = [p for p in src if "16x16" not in p.name]
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


def whole_process(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a ``mura`` subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(["mura", *args], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return dt, max(peak, before) / 1024


def bare_forward(arch: str, size: int, batch: int, engine: str, run: Path) -> float:
    """Images per second of the forward pass alone at ``batch``, after warm-up."""
    from mura_cli.engine.load import load_models

    backend = load_models([str(run)], "cpu", engine)[0].backend
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    backend(x)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 10:
        backend(x)
        n += batch
    return n / (time.perf_counter() - t0)


def flops_per_image(arch: str, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model = MuraNet(arch).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    return float(fc.get_total_flops())


def matmul_peak(n: int = 2048, seconds: float = 5.0) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        k += 1
    return 2 * n**3 * k / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--arch", default="densenet169")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--engines", default="torch,onnx")
    ap.add_argument("--out", type=Path, default=Path("bench-speed"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    files = make_inputs(a.images, a.out / "inputs")
    run = make_run(a.out / "run", a.arch, a.size)
    n = len(files)
    res: dict = {"images": n, "arch": a.arch, "size": a.size, "batch": a.batch_size, "cores": os.cpu_count()}
    res["naive_s"] = naive_loop(files, a.arch, a.size)
    for engine in a.engines.split(","):
        out = a.out / f"predict-{engine}.csv"
        cmd = ["predict", str(a.out / "inputs"), "--model", str(run), "--engine", engine, "--overwrite"]
        res[f"predict_{engine}_s"], res[f"predict_{engine}_mb"] = whole_process([*cmd, "--out", str(out)])
        res[f"forward_{engine}_ips"] = bare_forward(a.arch, a.size, a.batch_size, engine, run)
    best = min(a.engines.split(","), key=lambda e: res[f"predict_{e}_s"])
    loc = ["localize", str(a.out / "inputs"), "--model", str(run), "--engine", best, "--overwrite"]
    res["localize_s"], _ = whole_process([*loc, "--out", str(a.out / "boxes.json")])
    res["flops_per_image"] = flops_per_image(a.arch, a.size)
    res["matmul_flops"] = matmul_peak()
    fwd = res[f"forward_{best}_ips"]
    res["ratios"] = {
        "predict_vs_naive": res["naive_s"] / res[f"predict_{best}_s"],
        "predict_vs_bare_forward": (n / res[f"predict_{best}_s"]) / fwd,
        "forward_fraction_of_peak": fwd * res["flops_per_image"] / res["matmul_flops"],
        "localize_over_predict": res["localize_s"] / res[f"predict_{best}_s"] - 1,
    }
    print(json.dumps(res, indent=1))
    (a.out / "speed.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    sys.exit(main())
