"""What the CPU can do, read from ``/proc/cpuinfo`` without importing torch, and the numeric precision it implies.

bf16 pays on a CPU only where the hardware multiplies bf16 natively: Intel AMX (``amx_bf16``, Sapphire Rapids
and later) or AVX512-BF16 (``avx512_bf16``: Cooper Lake, AMD Zen 4 and later). Elsewhere bf16 is emulated
and slower than fp32, so ``auto`` keeps fp32 there.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""``/proc/cpuinfo`` flags that mean native bf16 arithmetic."""


@dataclass(frozen=True)
class CpuInfo:
    """The CPU's model name and its bf16 features (``amx_bf16``, ``avx512_bf16``)."""

    model: str
    amx_bf16: bool
    avx512_bf16: bool

    @property
    def native_bf16(self) -> bool:
        return self.amx_bf16 or self.avx512_bf16

    def describe(self) -> str:
        """``Intel(R) Xeon(R) Processor (AMX, AVX512-BF16)``, or ``(no native bf16)``."""
        feats = [n for n, on in (("AMX", self.amx_bf16), ("AVX512-BF16", self.avx512_bf16)) if on]
        return f"{self.model} ({', '.join(feats) if feats else 'no native bf16'})"


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """The first processor's model name and bf16 flags; no flags where the file cannot be read (not Linux)."""
    fields: dict[str, str] = {}
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's
    flags = set(fields.get("flags", "").split())
    model = fields.get("model name") or platform.processor() or platform.machine()
    return CpuInfo(model, "amx_bf16" in flags, "avx512_bf16" in flags)


def resolve_precision(precision: str, device: str, cpu: CpuInfo | None = None) -> str:
    """``fp32`` or ``bf16`` for ``device``: ``auto`` is bf16 on CUDA and on CPUs with native bf16, else fp32.

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS` (configs check it first).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16"
    if device == "cpu":
        return "bf16" if (cpu or cpu_info()).native_bf16 else "fp32"
    return "fp32"


__all__ = ["BF16_FLAGS", "PRECISIONS", "CpuInfo", "cpu_info", "resolve_precision"]
