"""A torch Dataset over index rows: decode (from the cache when there is one), transform, label."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mura_cli.data.cache import cached_path
from mura_cli.data.index import IndexRow
from mura_cli.data.readers import read_image
from mura_cli.errors import DataError

log = logging.getLogger(__name__)


class MuraDataset(Dataset):
    """Samples ``{"image": 3xSxS tensor, "label": float tensor, "index": int, "valid": bool}`` for ``rows``.

    An image that cannot be decoded gives a zero image with ``valid`` False (the loop leaves it out and
    counts it) and its message is logged, so one bad file never stops a run.

    Args:
        rows: index rows (paths relative to ``root``).
        root: the dataset root.
        transform: HxW float32 [0, 1] -> tensor (see :func:`~mura_cli.data.transforms.build_transforms`).
        cache: a cache folder from ``mura prepare --cache``; cached copies are used when present.
    """

    def __init__(
        self,
        rows: Sequence[IndexRow],
        root: str | Path,
        transform: Callable[[Any], torch.Tensor],
        cache: str | Path | None = None,
    ) -> None:
        self.rows = list(rows)
        self.root = Path(root)
        self.transform = transform
        self.cache = Path(cache) if cache else None

    def __len__(self) -> int:
        return len(self.rows)

    def path_of(self, i: int) -> Path:
        row = self.rows[i]
        if self.cache is not None:
            c = cached_path(self.cache, row.path)
            if c.is_file():
                return c
        return self.root / row.path

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        try:
            pixels = read_image(self.path_of(i)).pixels
            valid = True
        except DataError as exc:
            log.warning("%s", exc)
            pixels, valid = np.zeros((64, 64), np.float32), False
        return {"image": self.transform(pixels), "label": torch.tensor(float(row.label)), "index": i, "valid": valid}

    def __repr__(self) -> str:
        return f"MuraDataset({len(self)} images, root={self.root}, cache={self.cache})"
