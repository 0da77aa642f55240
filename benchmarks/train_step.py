"""Training step time in bf16 against fp32 on the CPU: forward, backward and Adam, random weights, channels-last.

For each ``ARCH:SIZE`` the step is timed in fp32, bf16, fp32, bf16 (8 s each after two warm-up steps); the best
of each precision is printed with the ratio. bf16 is torch autocast over fp32 weights, as ``mura train
--precision bf16`` runs it.

    python benchmarks/train_step.py resnet18:64 densenet169:64 resnet18:160 densenet169:320
"""

from __future__ import annotations

import argparse
import time

import torch

from mura_cli.hardware import cpu_info
from mura_cli.models.registry import create_model


def step_time(arch: str, size: int, batch: int, precision: str, seconds: float = 8.0) -> float:
    """Seconds per optimizer step (the mean over ``seconds``, at least 3 steps)."""
    torch.manual_seed(0)
    model = create_model(arch).train().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.rand(batch).round()

    def one() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    one()
    one()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds or n < 3:
        one()
        n += 1
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="+", metavar="ARCH:SIZE")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    print(f"{cpu_info().describe()}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    for case in args.cases:
        arch, size = case.split(":")
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for precision in ("fp32", "bf16", "fp32", "bf16"):
            times[precision].append(step_time(arch, int(size), args.batch_size, precision))
        f, b = min(times["fp32"]), min(times["bf16"])
        ms = f"fp32 {f * 1000:7.0f} ms/step  bf16 {b * 1000:7.0f} ms/step"
        print(f"{arch:14s} {size:>4s} px: {ms}  bf16/fp32 {b / f:.2f}")


if __name__ == "__main__":
    main()
