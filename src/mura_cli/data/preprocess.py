"""Eval preprocessing in NumPy and Pillow, without torch: from a reader's HxW float32 [0, 1] array to the
network's normalized 3xSxS float32 input.

Order: resize (antialiased bilinear) -> center crop -> clamp to [0, 1] -> contrast tools -> grey to 3 channels
-> normalize with the backbone's mean/std. Every engine and the training tune pass read their inputs through
:func:`eval_input`, so ONNX Runtime serves without importing torch and all of them see the same pixels.
The geometry is a pure function (:func:`eval_geometry`), so a class activation map maps back to the original
pixel grid exactly. Training adds its random augmentation in :mod:`mura_cli.data.transforms`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mura_cli.config import TransformConfig


@dataclass(frozen=True)
class Geometry:
    """How eval preprocessing maps original pixels to network pixels: ``x_net = x * scale_x - offset_x``.

    Attributes:
        scale_y: network pixels per original pixel, vertically.
        scale_x: network pixels per original pixel, horizontally.
        offset_y: rows cropped away at the top (in resized pixels).
        offset_x: columns cropped away at the left (in resized pixels).
        resized: (height, width) after resizing, before cropping.
        out: side of the square network input.
    """

    scale_y: float
    scale_x: float
    offset_y: float
    offset_x: float
    resized: tuple[int, int]
    out: int

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        """Network-pixel coordinates (edges, not centres) -> original-pixel coordinates."""
        return (x + self.offset_x) / self.scale_x, (y + self.offset_y) / self.scale_y


def eval_geometry(height: int, width: int, cfg: TransformConfig) -> Geometry:
    """The eval-time resize and crop for an image of ``height`` x ``width`` (pure function)."""
    if cfg.resize == "stretch":
        rh, rw = cfg.size, cfg.size
    else:
        s = cfg.size / min(height, width)
        rh, rw = max(cfg.size, round(height * s)), max(cfg.size, round(width * s))
    out = cfg.output_size
    # torchvision's center crop: top = int(round((h - out) / 2))
    oy, ox = round((rh - out) / 2.0), round((rw - out) / 2.0)
    return Geometry(scale_y=rh / height, scale_x=rw / width, offset_y=oy, offset_x=ox, resized=(rh, rw), out=out)


def resize_crop(pixels: np.ndarray, cfg: TransformConfig) -> np.ndarray:
    """HxW float32 -> ``out`` x ``out`` float32 in [0, 1]: :func:`eval_geometry`'s resize (Pillow's antialiased
    bilinear on 32-bit float pixels, what torchvision's ``antialias=True`` reproduces) and center crop."""
    a = np.ascontiguousarray(pixels, dtype=np.float32)
    g = eval_geometry(a.shape[0], a.shape[1], cfg)
    if g.resized != a.shape:
        from PIL import Image

        a = np.asarray(Image.fromarray(a).resize(g.resized[::-1], Image.Resampling.BILINEAR))
    oy, ox = int(g.offset_y), int(g.offset_x)
    return np.clip(a[oy : oy + g.out, ox : ox + g.out], 0.0, 1.0)


def has_contrast(cfg: TransformConfig) -> bool:
    """Whether ``cfg`` asks for any contrast tool."""
    return bool(cfg.equalize or cfg.clahe > 0 or cfg.sharpen > 0 or cfg.blur_sigma > 0)


def contrast(a: np.ndarray, cfg: TransformConfig) -> np.ndarray:
    """Histogram equalization, CLAHE, unsharp mask and Gaussian blur (scikit-image), as ``cfg`` asks, on an HxW
    array in [0, 1] -> HxW float32 in [0, 1]."""
    if not has_contrast(cfg):
        return np.asarray(a, dtype=np.float32)
    from skimage import exposure, filters

    a = np.asarray(a, dtype=np.float64)
    if cfg.equalize:
        a = exposure.equalize_hist(a)
    if cfg.clahe > 0:
        a = exposure.equalize_adapthist(np.clip(a, 0, 1), clip_limit=cfg.clahe)
    if cfg.sharpen > 0:
        a = filters.unsharp_mask(a, radius=2.0, amount=cfg.sharpen, preserve_range=True)
    if cfg.blur_sigma > 0:
        a = filters.gaussian(a, sigma=cfg.blur_sigma, preserve_range=True)
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def normalize(grey: np.ndarray, cfg: TransformConfig) -> np.ndarray:
    """HxW grey in [0, 1] -> 3xHxW float32: the channel replicated, then ``(x - mean) / std`` per channel."""
    mean = np.asarray(cfg.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(cfg.std, dtype=np.float32)[:, None, None]
    return np.ascontiguousarray((np.asarray(grey, dtype=np.float32)[None] - mean) / std, dtype=np.float32)


def eval_input(pixels: np.ndarray, cfg: TransformConfig) -> np.ndarray:
    """A reader's HxW float32 [0, 1] image -> the network's 3xSxS float32 input (see the module docstring).

    Example:
        >>> eval_input(read_image("scan.dcm").pixels, TransformConfig()).shape
        (3, 320, 320)
    """
    return normalize(contrast(resize_crop(pixels, cfg), cfg), cfg)
