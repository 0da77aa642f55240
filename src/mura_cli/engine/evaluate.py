"""Inference over a loader: image probabilities (and per-image losses), shared by train and benchmark."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader


def autocast_for(device: str, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``amp``; a no-op elsewhere."""
    if amp and device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict_loader(
    model: torch.nn.Module,
    loader: DataLoader,
    *,
    device: str = "cpu",
    amp: bool = False,
    channels_last: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run ``model`` over ``loader``; returns ``(dataset indices, probabilities, valid mask)``."""
    model.eval()
    idx, probs, valid = [], [], []
    total = len(loader)
    for b, batch in enumerate(loader):
        x = batch["image"].to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(device, amp):
            logits = model(x)
        probs.append(torch.sigmoid(logits.float()).cpu().numpy())
        idx.append(batch["index"].numpy())
        valid.append(batch["valid"].numpy())
        if on_batch:
            on_batch(b + 1, total)
    if not idx:
        return np.zeros(0, int), np.zeros(0), np.zeros(0, bool)
    return np.concatenate(idx), np.concatenate(probs).astype(np.float64), np.concatenate(valid).astype(bool)
