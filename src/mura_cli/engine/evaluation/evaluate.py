"""The one inference loop: batches of images through a :class:`~mura_cli.engine.backends.Backend`.

:func:`~mura_cli.engine.backends.infer` is the single place where a batch becomes probabilities (and class
activation maps); :func:`evaluate` runs it over a loader of index rows (training's tune pass, benchmarks) and
:func:`~mura_cli.engine.serving.predict.predict` runs it over files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from mura_cli.config import TransformConfig
from mura_cli.data.dataset import MuraDataset
from mura_cli.data.index import IndexRow
from mura_cli.data.transforms import build_transforms
from mura_cli.engine.backends import Backend, BatchOutput, TorchBackend, autocast_for, infer


@dataclass(frozen=True)
class EvalResult:
    """Probabilities for the rows of a loader: dataset indices, probabilities and which rows decoded."""

    indices: np.ndarray
    probabilities: np.ndarray
    valid: np.ndarray


def evaluate(
    backend: Backend, batches: Iterable[dict[str, Any]], *, on_batch: Callable[[int, int], None] | None = None
) -> EvalResult:
    """Run ``backend`` over ``batches`` of ``{"image", "index", "valid"}`` (a loader of :class:`MuraDataset`)."""
    idx, probs, valid = [], [], []
    total = len(batches) if isinstance(batches, Sized) else 0
    for b, batch in enumerate(batches):
        probs.append(infer(backend, batch["image"]).probabilities)
        idx.append(np.asarray(batch["index"]))
        valid.append(np.asarray(batch["valid"]))
        if on_batch:
            on_batch(b + 1, total)
    if not idx:
        return EvalResult(np.zeros(0, int), np.zeros(0), np.zeros(0, bool))
    return EvalResult(np.concatenate(idx), np.concatenate(probs), np.concatenate(valid).astype(bool))


def rows_loader(
    rows: Sequence[IndexRow], root: str | Path, transform: TransformConfig, cache: Path | None, batch_size: int
) -> DataLoader:
    """Index rows in order through the eval transform, in this process: what :func:`evaluate` reads."""
    ds = MuraDataset(rows, root, build_transforms(transform, train=False), cache)
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)


def predict_loader(
    model: Any,
    loader: Iterable[dict[str, Any]],
    *,
    device: str = "cpu",
    precision: str = "fp32",
    channels_last: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`evaluate` for a torch model; returns ``(dataset indices, probabilities, valid mask)``."""
    backend = TorchBackend(model, device, precision=precision, channels_last=channels_last)
    res = evaluate(backend, loader, on_batch=on_batch)
    return res.indices, res.probabilities, res.valid


__all__ = ["BatchOutput", "EvalResult", "autocast_for", "evaluate", "infer", "predict_loader", "rows_loader"]
