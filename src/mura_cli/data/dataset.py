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
        masks: ``transform`` is built ``with_mask``: samples also hold ``"mask"`` (1xSxS, the row's ground-truth
            boxes after the same geometry; zeros without boxes) and ``"has_box"``. Images with boxes are read
            from the original file, whose pixel frame the boxes are in.
    """

    def __init__(
        self,
        rows: Sequence[IndexRow],
        root: str | Path,
        transform: Callable[[Any], Any],
        cache: str | Path | None = None,
        masks: bool = False,
    ) -> None:
        self.rows = list(rows)
        self.root = Path(root)
        self.transform = transform
        self.cache = Path(cache) if cache else None
        self.masks = masks

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
        boxed = self.masks and bool(row.boxes)
        path = self.path_of(i)
        try:
            pixels = read_image(path).pixels
            valid = True
        except DataError as exc:
            log.warning("%s", exc)
            pixels, valid, boxed = np.zeros((64, 64), np.float32), False, False
        out = {"label": torch.tensor(float(row.label)), "index": i, "valid": valid}
        if not self.masks:
            return {"image": self.transform(pixels), **out}
        sx = sy = 1.0
        if boxed and path != self.root / row.path:  # a cached copy: the boxes are in the original's pixels
            size = _upright_size(self.root / row.path)
            if size is None:
                pixels = read_image(self.root / row.path).pixels
            else:
                sy, sx = pixels.shape[0] / size[0], pixels.shape[1] / size[1]
        mask = np.zeros_like(pixels)
        for x0, y0, x1, y1 in row.boxes if boxed else ():
            x0, x1, y0, y1 = x0 * sx, x1 * sx, y0 * sy, y1 * sy
            mask[max(0, int(y0)) : int(np.ceil(y1)), max(0, int(x0)) : int(np.ceil(x1))] = 1.0
        image, m = self.transform(np.stack([pixels, mask]))
        return {"image": image, "mask": m, "has_box": boxed and bool(m.any()), **out}

    def __repr__(self) -> str:
        return f"MuraDataset({len(self)} images, root={self.root}, cache={self.cache})"


def _upright_size(path: Path) -> tuple[int, int] | None:
    """``(height, width)`` of a raster file as displayed (EXIF orientation applied), from its header only;
    ``None`` when Pillow cannot tell (a DICOM, say)."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as im:
            w, h = im.size
            if int(im.getexif().get(0x0112, 1) or 1) in (5, 6, 7, 8):  # transposed orientations swap the sides
                w, h = h, w
            return h, w
    except (OSError, ValueError, SyntaxError):
        return None
