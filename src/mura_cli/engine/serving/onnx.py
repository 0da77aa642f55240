"""ONNX Runtime backend: the same logits and class activation maps as the torch model, without torch at run time.

The model is exported once (outputs: the logit and the CAM on the feature grid; dynamic batch) and cached beside
its run folder, keyed by the weights' hash, the input size and the opset, so a changed model is never served
from a stale file. ONNX Runtime is an optional extra: ``pip install "mura-cli[onnx]"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mura_cli.errors import ModelError
from mura_cli.models.run_folder import ONNX_OPSET, RunFolder
from mura_cli.utils import atomic_path, default_workers

if TYPE_CHECKING:
    from mura_cli.models.registry import MuraNet

OPSET = ONNX_OPSET


def onnx_available() -> bool:
    """True when ``onnxruntime`` can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx(model: Any, size: int, path: Path, opset: int = OPSET) -> Path:
    """Export ``model`` (a MuraNet) with outputs ``logits`` (B) and ``cams`` (Bxhxw), dynamic batch, atomically."""
    import torch

    class _WithCam(torch.nn.Module):
        def __init__(self, net: MuraNet) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.net.forward_with_cam(x)

    wrapper = _WithCam(model.cpu()).eval()
    dummy = torch.zeros(1, 3, size, size)
    dynamic = {"images": {0: "batch"}, "logits": {0: "batch"}, "cams": {0: "batch"}}
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice; the graph is checked below
        try:
            torch.onnx.export(
                wrapper,
                (dummy,),
                str(tmp),
                input_names=["images"],
                output_names=["logits", "cams"],
                dynamic_axes=dynamic,
                opset_version=opset,
                dynamo=False,
            )
        except Exception as exc:  # any exporter failure: one line naming the arch
            raise ModelError(f"cannot export {getattr(model, 'arch', 'the model')} to ONNX ({exc}); "
                             "use --engine torch") from None  # fmt: skip
    return path


class OnnxBackend:
    """An exported model in an ONNX Runtime CPU session (all graph optimisations; no thread spinning, since
    torch and NumPy work runs between calls in the same process)."""

    def __init__(self, path: Path, name: str = "", threads: int | None = None, quantized: bool = False) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or default_workers()
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a damaged cache file: say which and how to rebuild
            raise ModelError(f"{path}: ONNX Runtime cannot load it ({exc}); delete it to re-export") from None
        self.name = name or Path(path).stem
        self.path = Path(path)
        self.quantized = quantized
        """An int8 export (``mura export --int8``), served as ``--engine onnx-int8``."""

    def __call__(self, images: Any, with_cam: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.ascontiguousarray(np.asarray(images), dtype=np.float32)
        if with_cam:
            logits, cams = self.session.run(["logits", "cams"], {"images": x})
            return np.asarray(logits).reshape(-1), np.asarray(cams)
        (logits,) = self.session.run(["logits"], {"images": x})
        return np.asarray(logits).reshape(-1), None


def onnx_backend(network: Callable[[], Any], folder: Path, size: int, name: str) -> OnnxBackend:
    """The cached export of the run in ``folder`` (:meth:`RunFolder.onnx_export`) in an :class:`OnnxBackend`;
    when it is missing, ``network()`` builds the model (and imports torch) to make it. A cached export is served
    without torch."""
    path = RunFolder(folder).onnx_export(size)
    if not path.is_file():
        export_onnx(network(), size, path)
    return OnnxBackend(path, name=name)
