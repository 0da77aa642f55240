"""Heatmap overlays for class activation maps: the radiograph, the map blended over it, the box, the probability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mura_cli.utils import atomic_path

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
    draw_label(img, f"p(abnormal) = {probability:.3f}", short=f"p = {probability:.2f}")
    return img


def label_size(height: int) -> int:
    """Text height in pixels for an image ``height`` pixels tall: ~2.8% of it (60 px on a 2140 px plate), so the
    label reads the same at fit-to-screen whatever the resolution; at least 12 px."""
    return max(12, round(0.028 * height))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont | None:
    """A scalable font at ``size`` px: Pillow's bundled one (Pillow >= 10.1 with FreeType), else DejaVu Sans."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError, AttributeError):  # Pillow < 10.1, or no FreeType
        pass
    for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except (ImportError, OSError):
            continue
    return None


def draw_label(img: Image.Image, text: str, short: str | None = None) -> None:
    """White ``text`` on a dark box in the top-left corner of ``img``, sized to the image (in place).

    On an image too narrow for ``text`` the label shrinks to fit (down to 8 px), then ``short`` is used instead.
    """
    w, h = img.size
    size = label_size(h)
    glyphs = _glyphs(text, size, w)
    if glyphs.width > w and short:
        glyphs = _glyphs(short, size, w)
    pad = max(2, round(glyphs.height * 0.35))
    ImageDraw.Draw(img).rectangle((0, 0, glyphs.width + 2 * pad - 1, glyphs.height + 2 * pad - 1), fill=(0, 0, 0))
    img.paste((255, 255, 255), (pad, pad, pad + glyphs.width, pad + glyphs.height), glyphs)


def _glyphs(text: str, size: int, max_width: int) -> Image.Image:
    """``text`` as an 8-bit mask about ``size`` px tall, shrunk towards 90% of ``max_width`` if wider."""
    font = _font(size)
    if font is None:  # no scalable font at all: the bitmap font, enlarged by whole pixels
        mask = _mask(text, ImageFont.load_default())
        k = max(1, min(round(size / max(1, mask.height)), int(0.9 * max_width / max(1, mask.width))))
        return mask.resize((mask.width * k, mask.height * k), Image.Resampling.NEAREST)
    mask = _mask(text, font)
    if mask.width > 0.9 * max_width:  # a narrow image: shrink the label to fit its width
        smaller = _font(max(8, int(size * 0.9 * max_width / mask.width)))
        mask = _mask(text, smaller) if smaller is not None else mask
    return mask


def _mask(text: str, font: Any) -> Image.Image:
    x0, y0, x1, y1 = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    mask = Image.new("L", (max(1, int(x1 - x0)), max(1, int(y1 - y0))), 0)
    ImageDraw.Draw(mask).text((-x0, -y0), text, fill=255, font=font)
    return mask


def save_overlay(path: str | Path, pixels: np.ndarray, cam: np.ndarray, box: Any | None, probability: float) -> Path:
    out = Path(path)
    with atomic_path(out) as tmp:
        render_overlay(pixels, cam, box, probability).save(tmp, format="PNG")
    return out


def save_heatmap(path: str | Path, cam: np.ndarray) -> Path:
    """The raw map: ``.npy`` (float32, as computed) or 16-bit PNG (min..max scaled to 0..65535)."""
    out = Path(path)
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, cam.astype(np.float32))
        else:
            lo, hi = float(cam.min()), float(cam.max())
            scaled = (cam - lo) / (hi - lo) if hi > lo else np.zeros_like(cam)
            Image.fromarray((scaled * 65535).astype(np.uint16)).save(tmp, format="PNG")
    return out
