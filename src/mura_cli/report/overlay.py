"""Heatmap overlays for class activation maps: the radiograph, the map blended over it, the box, the probability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

# A perceptually ordered blue-to-red ramp (jet-like), 5 anchors interpolated.
_ANCHORS = np.array([[0, 0, 128], [0, 128, 255], [0, 220, 120], [255, 220, 0], [220, 0, 0]], dtype=np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """HxW in [0, 1] -> HxWx3 uint8 colours."""
    v = np.clip(values, 0.0, 1.0) * (len(_ANCHORS) - 1)
    i = np.minimum(v.astype(int), len(_ANCHORS) - 2)
    f = (v - i)[..., None]
    return (_ANCHORS[i] * (1 - f) + _ANCHORS[i + 1] * f).astype(np.uint8)


def render_overlay(
    pixels: np.ndarray, cam: np.ndarray, box: Any | None, probability: float, alpha: float = 0.4
) -> Image.Image:
    """The overlay as an RGB image at the radiograph's own size.

    The map is shown from 0 (transparent) to its maximum; negative evidence is not drawn.
    """
    grey = (np.clip(np.asarray(pixels, dtype=np.float32), 0, 1) * 255).astype(np.uint8)
    base = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    peak = float(cam.max())
    norm = np.clip(cam / peak, 0, 1) if peak > 0 else np.zeros_like(cam)
    heat = colormap(norm).astype(np.float32)
    a = (alpha * norm)[..., None]
    img = Image.fromarray((base * (1 - a) + heat * a).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 300))
    if box is not None:
        draw.rectangle([box.x0, box.y0, box.x1 - 1, box.y1 - 1], outline=(0, 255, 0), width=width)
    label = f"p(abnormal) = {probability:.3f}"
    draw.rectangle([0, 0, 8 + 7 * len(label), 18], fill=(0, 0, 0))
    draw.text((4, 3), label, fill=(255, 255, 255))
    return img


def save_overlay(path: str | Path, pixels: np.ndarray, cam: np.ndarray, box: Any | None, probability: float) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    render_overlay(pixels, cam, box, probability).save(out)
    return out


def save_heatmap(path: str | Path, cam: np.ndarray) -> Path:
    """The raw map: ``.npy`` (float32, as computed) or 16-bit PNG (min..max scaled to 0..65535)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        np.save(out, cam.astype(np.float32))
    else:
        lo, hi = float(cam.min()), float(cam.max())
        scaled = (cam - lo) / (hi - lo) if hi > lo else np.zeros_like(cam)
        Image.fromarray((scaled * 65535).astype(np.uint16)).save(out)
    return out
