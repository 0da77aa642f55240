"""The image every reader returns, and what the readers share: the pixel limit, colour to grey, one-line errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mura_cli.config_infer import MAX_PIXELS
from mura_cli.errors import DataError

log = logging.getLogger("mura_cli.data.readers")  # the readers' one logger

DEFAULT_MAX_PIXELS = MAX_PIXELS
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

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the original frame: :attr:`shape` unless it was decoded at a reduced
        resolution (``meta["reduced"]``)."""
        if "reduced" in self.meta:
            return int(self.meta["height"]), int(self.meta["width"])
        return self.shape


def check_pixel_limit(p: Path | str, height: int, width: int, max_pixels: int) -> None:
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


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """An exception's message (or a text) on one line, cut at ``limit`` characters."""
    reason = " ".join(str(exc).split())
    return reason[:limit] + "..." if len(reason) > limit else reason


BLANK_RANGE = 0.01
"""An image whose 0.5-99.5 percentile range is under this (in [0, 1] units, ~2.5 of 255 grey levels) is blank."""


class BlankImageError(DataError):
    """An image that decodes to (near) constant pixels even over its own percentile range: nothing to score."""


def pixel_spread(pixels: np.ndarray, low: float = 0.5, high: float = 99.5) -> float:
    """The ``high`` - ``low`` percentile range of ``pixels`` (of a strided sample for speed)."""
    arr = np.asarray(pixels)
    step = max(1, int(np.sqrt(arr.size / 250_000)))
    sample = arr[::step, ::step] if arr.ndim == 2 else arr
    lo, hi = np.percentile(sample, [low, high])
    return float(hi - lo)


def is_near_constant(pixels: np.ndarray, min_range: float = BLANK_RANGE) -> bool:
    """True when the 0.5-99.5 percentile range of ``pixels`` (in [0, 1]) is under ``min_range``."""
    return pixel_spread(pixels) < min_range


def check_not_blank(image: Image, min_range: float = BLANK_RANGE) -> Image:
    """``image`` unchanged, or stretched to its own 0.5-99.5 percentile range when it is (near) constant.

    A stretch is logged as a warning naming the file; an image still constant after it raises.

    Raises:
        BlankImageError: the image is blank (constant, or constant but for a few pixels).
    """
    if not is_near_constant(image.pixels, min_range):
        return image
    where = _where(image)
    stretched = robust_range(image.pixels).astype(np.float32)
    if is_near_constant(stretched, min_range):
        lo, hi = float(image.pixels.min()), float(image.pixels.max())
        raise BlankImageError(
            f"{where}: blank image, its pixels are (near) constant ({lo:.3g}-{hi:.3g} in [0, 1]); not scored"
        )
    log.warning(
        "%s: pixel values span only %.4f of the display range; stretched to their 0.5-99.5 percentile range",
        where,
        pixel_spread(image.pixels),
    )
    return Image(pixels=np.ascontiguousarray(stretched), meta=dict(image.meta, stretched=True))


def _where(image: Image) -> str:
    path = str(image.meta.get("path", "image"))
    frame = int(image.meta.get("frame", 0) or 0)
    return f"{path} (frame {frame})" if int(image.meta.get("frames", 1) or 1) > 1 else path


def robust_range(values: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Scale to [0, 1] between the ``low`` and ``high`` percentiles (of a strided sample for speed)."""
    values = np.asarray(values, dtype=np.float64)
    step = max(1, int(np.sqrt(values.size / 250_000)))
    sample = values[::step, ::step] if values.ndim == 2 else values
    lo, hi = np.percentile(sample, [low, high])
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(values)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)
