"""The image every reader returns, and what the readers share: the pixel limit, colour to grey, one-line errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mura_cli.errors import DataError

DEFAULT_MAX_PIXELS = 100_000_000
"""Default decompression-bomb limit: 100 megapixels per frame (a 10k x 10k plate)."""


@dataclass(frozen=True)
class Image:
    """A decoded radiograph.

    Attributes:
        pixels: HxW float32 in [0, 1]; higher is brighter (bone bright).
        meta: what the reader kept: ``path``, ``format``, ``width``, ``height``, ``frame``, and for DICOM the
            UIDs, ``BodyPartExamined``, ``ViewPosition``, ``PixelSpacing``, ``PhotometricInterpretation``,
            ``TransferSyntaxUID``. Never patient name or ID.
    """

    pixels: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


def check_pixel_limit(p: Path, height: int, width: int, max_pixels: int) -> None:
    """Refuse a ``width`` x ``height`` frame over ``max_pixels`` (decompression-bomb guard)."""
    if height * width > max_pixels:
        raise DataError(
            f"{p}: {width}x{height} = {height * width:,} pixels exceeds the limit of {max_pixels:,} "
            "(decompression-bomb guard); raise it with --max-pixels if the file is trusted"
        )


def rgb_to_unit_gray(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 of any integer/float type -> HxW float32 in [0, 1]; equal channels are taken as they are."""
    rgb = np.asarray(rgb)
    top = _dtype_top(rgb)
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        gray = r
    else:  # ITU-R BT.601 luma, as Pillow's "L" conversion
        gray = 0.299 * r + 0.587 * g + 0.114 * b
    return np.clip(gray / top, 0.0, 1.0).astype(np.float32)


def _dtype_top(arr: np.ndarray) -> float:
    if np.issubdtype(arr.dtype, np.integer):
        return float(np.iinfo(arr.dtype).max)
    return 1.0


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut at ``limit`` characters."""
    reason = " ".join(str(exc).split())
    return reason[:limit] + "..." if len(reason) > limit else reason
