"""The raster reader (PNG, JPEG, BMP, TIFF through Pillow): EXIF orientation, truncated files, any mode to grey."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mura_cli.data.image import Image, check_pixel_limit, rgb_to_unit_gray
from mura_cli.errors import DataError


@contextlib.contextmanager
def _pil_limits(max_pixels: int, allow_truncated: bool) -> Iterator[None]:
    """Set Pillow's bomb limit and truncated-file tolerance for this read only."""
    from PIL import Image as PILImage
    from PIL import ImageFile

    old_max, old_trunc = PILImage.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    PILImage.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = max_pixels, allow_truncated
    try:
        with warnings.catch_warnings():  # Pillow's "Corrupt EXIF data" and bomb warnings: the reader decides
            warnings.simplefilter("ignore")
            yield
    finally:
        PILImage.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = old_max, old_trunc


def read_raster(p: Path, *, max_pixels: int) -> Image:
    """Read a raster file upright (EXIF orientation applied); a truncated file is decoded as far as it goes."""
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    data = p.read_bytes()
    truncated = False
    try:
        im: PILImage.Image
        with _pil_limits(max_pixels, allow_truncated=False), PILImage.open(io.BytesIO(data)) as im:
            check_pixel_limit(p, im.height, im.width, max_pixels)
            fmt = (im.format or p.suffix.lstrip(".")).lower()
            orientation = int(im.getexif().get(0x0112, 1) or 1)
            try:
                im.load()
            except OSError as exc:
                if "truncated" not in str(exc).lower():
                    raise
                truncated = True
        if truncated:  # decode what is there; the missing rows come out grey, the way viewers show them
            with _pil_limits(max_pixels, allow_truncated=True), PILImage.open(io.BytesIO(data)) as im2:
                im2.load()
                im = im2.copy()
        transposed = ImageOps.exif_transpose(im) if orientation != 1 else im
        pixels = pil_to_unit(transposed)
    except UnidentifiedImageError:
        raise DataError(f"{p}: not an image Pillow can identify (PNG/JPEG/BMP/TIFF) nor DICOM; skip it") from None
    except PILImage.DecompressionBombError:
        raise DataError(
            f"{p}: declares more than {max_pixels:,} pixels (a decompression bomb?); "
            "raise --max-pixels if the file is trusted"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{p}: Pillow could not decode it ({exc}); the file may be damaged") from None
    meta = {
        "path": str(p),
        "format": fmt,
        "frame": 0,
        "frames": 1,
        "height": int(pixels.shape[0]),
        "width": int(pixels.shape[1]),
        "exif_orientation": orientation,
        "truncated": truncated,
        "PhotometricInterpretation": "MONOCHROME2",
    }
    return Image(pixels=pixels, meta=meta)


def pil_to_unit(im: Any) -> np.ndarray:
    """A Pillow image of any mode -> HxW float32 in [0, 1].

    8-bit and 16-bit modes are scaled by their type's maximum; RGB(A) with equal channels keeps one channel,
    other colour images go through BT.601 luma; alpha is dropped; palette images are expanded first;
    32-bit integer and float images are scaled by their own range.
    """
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        if mode not in ("RGB", "RGBA", "RGBX"):
            im = im.convert("RGB")
        arr = np.asarray(im)[..., :3]
        return rgb_to_unit_gray(arr)
    if mode == "LA":
        arr = np.asarray(im)[..., 0]
        return (arr.astype(np.float32) / 255.0).astype(np.float32)
    if mode == "1":
        return np.asarray(im, dtype=np.float32)
    if mode == "L":
        return np.asarray(im, dtype=np.float32) / 255.0
    if mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.float32)
        return arr / 65535.0
    if mode in ("I", "F"):
        arr = np.asarray(im).astype(np.float64)
        if mode == "I" and arr.min() >= 0 and arr.max() <= 65535:  # 16-bit data that Pillow widened
            return (arr / 65535.0).astype(np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        return ((arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)).astype(np.float32)
    return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
