"""Inference backends: one small interface over the runtimes that run a model.

A :class:`Backend` takes a batch of preprocessed images and returns the abnormality logits and, when asked,
the class activation maps on the feature grid, as NumPy arrays. Everything above it (the inference loop,
study grouping, CAM boxes) sees only NumPy, so another runtime (ONNX Runtime, say) plugs in here without
touching the rest, in the spirit of Ultralytics' ``AutoBackend``.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

import numpy as np
import torch


class Backend(Protocol):
    """A runnable model: Bx3xSxS float32 images -> (B logits, Bxhxw CAMs or ``None``)."""

    name: str

    def __call__(self, images: Any, with_cam: bool = False) -> tuple[np.ndarray, np.ndarray | None]: ...


def autocast_for(device: str, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``amp``; a no-op elsewhere."""
    if amp and device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class TorchBackend:
    """A :class:`~mura_cli.models.registry.MuraNet` in eval mode on ``device`` (bf16 autocast on CUDA).

    Args:
        model: the network (``forward`` gives logits, ``forward_with_cam`` logits and maps).
        device: torch device string.
        amp: bf16 autocast on CUDA.
        channels_last: feed channels-last tensors (faster convolutions on CPU and GPU).
        name: shown in outputs.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        device: str = "cpu",
        *,
        amp: bool = True,
        channels_last: bool = False,
        name: str = "",
    ) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.amp = amp
        self.channels_last = channels_last
        self.name = name or type(model).__name__

    @torch.inference_mode()
    def __call__(self, images: Any, with_cam: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        self.model.eval()  # a model shared with training (the tune pass) may have been left in train mode
        x = torch.as_tensor(images).to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(self.device, self.amp):
            if with_cam:
                logits, cam = self.model.forward_with_cam(x)
            else:
                logits, cam = self.model(x), None
        maps = None if cam is None else cam.float().cpu().numpy()
        return logits.float().cpu().numpy().reshape(-1), maps
