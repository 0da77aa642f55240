"""The runtimes (``--engine``): one entry each, saying how it is detected, installed, exported and loaded.

predict, localize and benchmark load through :func:`load_backend`, the speed table through :func:`arch_backend`
and :func:`speed_engines`, its rows are named by :func:`engine_name`, ``--engine`` is checked and ``auto``
resolved by :func:`resolve_engine`. Adding a runtime (OpenVINO, say) is one :class:`Runtime` entry in
:data:`RUNTIMES` plus its backend class (a :class:`~mura_cli.engine.backends.Backend`); nothing else names a
runtime (``tests/test_layout.py`` checks). Importing this module imports neither torch nor ONNX Runtime.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mura_cli.engine.backends import Backend, TorchBackend
from mura_cli.errors import ModelError, UsageError
from mura_cli.models.run_folder import RunFolder

log = logging.getLogger(__name__)

TORCH, TORCH_BF16, ONNX, ONNX_INT8 = "torch", "torch-bf16", "onnx", "onnx-int8"
AUTO = "auto"
ONNX_INSTALL = 'ONNX Runtime is not installed; pip install "mura-cli[onnx]"'
"""The install hint of the ONNX Runtime engines (``mura export`` and ``--engine onnx``)."""


def _always() -> bool:
    return True


def _onnx_available() -> bool:
    from mura_cli.engine.serving.onnx import onnx_available

    return onnx_available()


@dataclass(frozen=True)
class Runtime:
    """One ``--engine``.

    Attributes:
        name: the ``--engine`` value.
        cpu_only: runs on the CPU only (another ``--device`` is refused).
        available: whether it can run here (its package imports).
        install: what to install when it cannot (``None``: always there).
        exported: how the model gets into it (shown in the README's engines section and ``--help``).
        speed_as: the runtime a speed table times for it (int8 needs a calibrated run, so it times fp32 ONNX).
    """

    name: str
    cpu_only: bool
    available: Callable[[], bool]
    install: str | None
    exported: str
    speed_as: str


RUNTIMES: dict[str, Runtime] = {
    r.name: r
    for r in (
        Runtime(TORCH, False, _always, None, "none: the safetensors weights", TORCH),
        Runtime(TORCH_BF16, False, _always, None, "none: torch with bf16 weights", TORCH_BF16),
        Runtime(ONNX, True, _onnx_available, ONNX_INSTALL, "once, cached in RUN/onnx/ (by weights hash)", ONNX),
        Runtime(ONNX_INT8, True, _onnx_available, ONNX_INSTALL, "mura export RUN --int8", ONNX),
    )
}
ENGINES = (*RUNTIMES, AUTO)
"""The ``--engine`` choices."""

AUTO_BF16_MIN_INPUTS = 300
"""``--engine auto`` keeps the torch-free ONNX Runtime path below this many input files: torch's start-up costs
about 6 s more than ONNX Runtime's, and bf16 saves about 0.025 s per full-size image end to end, so the two
cross near 260 files (whole-process sweep over 10/30/100 files on a 2-core Intel Xeon with AMX: bf16 still
1.37x slower at 100 with autocast; with the bf16 copy of the backbone the two tie at 100; see the README's
engines section)."""


def fp32_engine(device: str) -> str:
    """The fp32 engine ``auto`` starts from: ONNX Runtime on CPU when it is installed, torch elsewhere."""
    return ONNX if device == "cpu" and RUNTIMES[ONNX].available() else TORCH


def resolve_engine(engine: str, device: str) -> str:
    """``--engine`` checked against ``device`` and what is installed; ``auto`` becomes :func:`fp32_engine` (per
    model, :func:`load_backend` may then choose ``torch-bf16``, as
    :func:`~mura_cli.engine.serving.load.auto_bf16` says).

    Raises:
        UsageError: an unknown engine, a CPU-only one on another device, or one that is not installed.
    """
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine}: expected one of {', '.join(ENGINES)}")
    if engine == AUTO:
        return fp32_engine(device)
    runtime = RUNTIMES[engine]
    if runtime.cpu_only and device != "cpu":
        raise UsageError(f"--engine {engine} runs on the CPU; use --device cpu or --engine {TORCH} (device {device})")
    if not runtime.available():
        raise UsageError(f"{runtime.install} (or use --engine {TORCH})")
    return engine


def onnx_or_none(make: Callable[[], Backend], fallback: bool) -> Backend | None:
    """``make()``, an ONNX Runtime backend; when the export fails and ``fallback`` (``--engine auto``) allows
    torch instead, ``None`` after a warning naming the model, and the caller serves it with torch."""
    try:
        return make()
    except ModelError as exc:
        if not fallback:
            raise
        log.warning("%s; --engine auto uses torch for it", exc)
        return None


def load_backend(
    engine: str, folder: Path, size: int, device: str, name: str, network: Callable[[], Any], fallback: bool
) -> Backend:
    """The run in ``folder`` (input ``size``) behind the resolved ``engine``; ``network()`` builds the torch model
    (only when needed: ONNX Runtime on a cached export does not import torch). With ``fallback`` (``--engine
    auto``), torch when the ONNX export fails.

    Raises:
        UsageError: ``onnx-int8`` and the run has no int8 export.
    """
    backend: Backend | None = None
    if engine == TORCH_BF16:
        return TorchBackend(network(), device, precision="bf16", channels_last=True, name=name)
    if engine == ONNX:
        from mura_cli.engine.serving.onnx import onnx_backend

        backend = onnx_or_none(lambda: onnx_backend(network, folder, size, name), fallback)
    elif engine == ONNX_INT8:
        from mura_cli.engine.serving.onnx import OnnxBackend

        path = RunFolder(folder).int8_export(size)
        if not path.is_file():
            raise UsageError(
                f"{folder}: no int8 export; make one with `mura export {folder} --int8` (or --engine {ONNX})"
            )
        return OnnxBackend(path, name=name, quantized=True)
    if backend is None:
        backend = TorchBackend(network(), device, channels_last=True, name=name)  # measured faster on CPU and GPU
    return backend


def arch_backend(net: Any, arch: str, size: int, device: str, engine: str, fallback: bool) -> Backend:
    """A network with random weights (the speed table) on ``engine``: ONNX Runtime (exported to a temporary file;
    torch when that fails and ``fallback``), torch in bf16, or torch."""
    backend = None
    if engine == ONNX:
        import tempfile

        from mura_cli.engine.serving.onnx import OnnxBackend, export_onnx

        with tempfile.TemporaryDirectory() as tmp:  # the session holds the graph; the file can go

            def export() -> Backend:
                return OnnxBackend(export_onnx(net, size, Path(tmp) / f"{arch}.onnx"), name=arch)

            backend = onnx_or_none(export, fallback)
    if backend is None and engine == TORCH_BF16:
        return TorchBackend(net, device, precision="bf16", channels_last=True, name=arch)
    return TorchBackend(net, device, name=arch) if backend is None else backend


def speed_engines(engine: str, device: str) -> list[str]:
    """The engines a speed table times for ``--engine``: as predict resolves it (ONNX Runtime for int8 too), and
    for ``auto`` on a CPU with native bf16 also ``torch-bf16``, which ``auto`` picks for runs whose check passed."""
    from mura_cli.hardware import cpu_info

    names = [RUNTIMES[resolve_engine(engine, device)].speed_as]
    if engine == AUTO and device == "cpu" and cpu_info().native_bf16:
        names.append(TORCH_BF16)
    return names


def engine_name(backend: Backend) -> str:
    """The runtime a backend runs on (``torch``, ``torch-bf16``, ``onnx``, ``onnx-int8``), with ``+flip`` for
    test-time flips: what a speed row ran on."""
    from mura_cli.engine.backends import FlipBackend
    from mura_cli.engine.serving.onnx import OnnxBackend

    if isinstance(backend, FlipBackend):
        return engine_name(backend.inner) + "+flip"
    if isinstance(backend, OnnxBackend):
        return ONNX_INT8 if backend.quantized else ONNX
    on_cpu = getattr(backend, "device", "") == "cpu"
    return TORCH_BF16 if on_cpu and getattr(backend, "precision", "") == "bf16" else TORCH


__all__ = [
    "AUTO",
    "AUTO_BF16_MIN_INPUTS",
    "ENGINES",
    "ONNX",
    "ONNX_INSTALL",
    "ONNX_INT8",
    "RUNTIMES",
    "TORCH",
    "TORCH_BF16",
    "Runtime",
    "arch_backend",
    "engine_name",
    "fp32_engine",
    "load_backend",
    "onnx_or_none",
    "resolve_engine",
    "speed_engines",
]
