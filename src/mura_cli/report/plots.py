"""Training curves as a PNG, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

_COLORS = {
    "train_loss": (31, 119, 180),
    "tune_loss": (255, 127, 14),
    "tune_kappa": (44, 160, 44),
    "tune_auroc": (214, 39, 40),
}


def _panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    series: dict[str, list[float]],
    epochs: list[int],
    title: str,
    y_range: tuple[float, float] | None = None,
) -> None:
    x0, y0, x1, y1 = box
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((x0 + 4, y0 - 14), title, fill=(0, 0, 0))
    values = [v for s in series.values() for v in s if math.isfinite(v)]
    if not values:
        return
    lo, hi = y_range if y_range else (min(values), max(values))
    if hi <= lo:
        hi = lo + 1.0
    n = max(epochs) - min(epochs) if len(epochs) > 1 else 1

    def xy(e: int, v: float) -> tuple[float, float]:
        return x0 + 8 + (x1 - x0 - 16) * (e - min(epochs)) / n, y1 - 8 - (y1 - y0 - 16) * (v - lo) / (hi - lo)

    for i, frac in enumerate((0.0, 0.5, 1.0)):
        v = lo + frac * (hi - lo)
        draw.text((x0 - 44, xy(epochs[0], v)[1] - 6), f"{v:.3g}", fill=(80, 80, 80))
        if i == 1:
            draw.line([(x0, xy(epochs[0], v)[1]), (x1, xy(epochs[0], v)[1])], fill=(225, 225, 225))
    for name, vals in series.items():
        pts = [xy(e, v) for e, v in zip(epochs, vals, strict=False) if math.isfinite(v)]
        color = _COLORS.get(name, (0, 0, 0))
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2)
        for px, py in pts:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=color)
    for k, name in enumerate(series):
        draw.text((x0 + 8 + 110 * k, y1 + 4), name, fill=_COLORS.get(name, (0, 0, 0)))


def save_training_curves(history: Sequence[Any], path: str | Path) -> Path:
    """Losses and tune kappa/AUROC per epoch, from a sequence of :class:`~mura_cli.engine.results.EpochResult`."""
    epochs = [e.epoch for e in history]
    img = Image.new("RGB", (900, 360), "white")
    draw = ImageDraw.Draw(img)
    kappas = [e.tune_kappa for e in history if math.isfinite(e.tune_kappa)]
    panels = (
        ((60, 30, 430, 320), ("train_loss", "tune_loss"), "loss (weighted BCE)", None),
        ((510, 30, 880, 320), ("tune_kappa", "tune_auroc"), "tune split, study level", (min(0.0, *kappas), 1.0)),
    )
    for box, keys, title, y_range in panels:
        series = {k: [getattr(e, k) for e in history] for k in keys}
        _panel(draw, box, series, epochs, title, **({"y_range": y_range} if y_range else {}))
    draw.text((440, 342), "epoch", fill=(0, 0, 0))
    out = Path(path)
    img.save(out)
    return out
