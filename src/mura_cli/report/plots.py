"""Plots as PNGs drawn with Pillow (no plotting library needed): training curves and the benchmark charts
(ROC curves, confusion matrices, reliability diagrams)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mura_cli.metrics import (
    calibration_bin_ids,
    calibration_bins,
    expected_calibration_error,
    roc_auc,
    roc_curve,
)
from mura_cli.utils import atomic_path

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
    with atomic_path(out) as tmp:
        img.save(tmp, format="PNG")
    return out


# --- benchmark charts -------------------------------------------------------------------------------------------

Curve = tuple[Sequence[int], Sequence[float]]  # (labels 0/1, probabilities of "abnormal")

_PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (188, 189, 34), (23, 190, 207)]  # fmt: skip
_INK, _MUTED, _GRID, _CHANCE = (25, 25, 25), (100, 100, 100), (230, 230, 230), (150, 150, 150)


def png_bytes(img: Image.Image) -> bytes:
    """The image encoded as PNG."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def part_color(index: int, part: str) -> tuple[int, int, int]:
    """The colour of a body part in every chart: near-black for ``all``, else the palette in order."""
    return _INK if part == "all" else _PALETTE[index % len(_PALETTE)]


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> Font:
    return ImageFont.load_default(size=size)


def _clean(curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    """Labels (bool) and probabilities (float64) with non-finite probabilities dropped."""
    t = np.asarray(curve[0], dtype=float).ravel()
    p = np.asarray(curve[1], dtype=float).ravel()
    keep = np.isfinite(p) & np.isfinite(t)
    return t[keep] > 0.5, np.clip(p[keep], 0.0, 1.0)


def _vertical_text(img: Image.Image, center: tuple[float, float], text: str, font: Font) -> None:
    _, _, right, bottom = font.getbbox(text)
    mask = Image.new("L", (int(right) + 2, int(bottom) + 2), 0)
    ImageDraw.Draw(mask).text((0, 0), text, fill=255, font=font)
    mask = mask.rotate(90, expand=True)
    x, y = round(center[0] - mask.width / 2), round(center[1] - mask.height / 2)
    img.paste(_INK, (x, y, x + mask.width, y + mask.height), mask)


def _dashed(draw: ImageDraw.ImageDraw, p0: tuple[float, float], p1: tuple[float, float], dash: float = 7) -> None:
    (x0, y0), (x1, y1) = p0, p1
    steps = max(1, int(math.hypot(x1 - x0, y1 - y0) / dash))
    for i in range(0, steps, 2):
        a, b = i / steps, min(i + 1, steps) / steps
        draw.line([(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a), (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)],
                  fill=_CHANCE, width=2)  # fmt: skip


def _unit_axes(
    img: Image.Image, box: tuple[int, int, int, int], xlabel: str, ylabel: str, below: int = 0, ticks: int = 5
) -> None:
    """Grid, frame, tick labels (0 to 1 on both axes), axis labels and the dashed diagonal; the x tick labels and
    the x label go ``below`` pixels under the frame (room for a strip that shares the x axis)."""
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    small, label = _font(13), _font(15)
    for k in range(ticks + 1):
        v = k / ticks
        x, y = x0 + (x1 - x0) * v, y1 - (y1 - y0) * v
        draw.line([(x, y0), (x, y1)], fill=_GRID)
        draw.line([(x0, y), (x1, y)], fill=_GRID)
        draw.text((x, y1 + below + 5), f"{v:g}", fill=_MUTED, font=small, anchor="mt")
        draw.text((x0 - 6, y), f"{v:g}", fill=_MUTED, font=small, anchor="rm")
    _dashed(draw, (x0, y1), (x1, y0))
    draw.rectangle(box, outline=_INK)
    draw.text(((x0 + x1) / 2, y1 + below + 26), xlabel, fill=_INK, font=label, anchor="mt")
    _vertical_text(img, (x0 - 46, (y0 + y1) / 2), ylabel, label)


def _ordered(parts: Sequence[str]) -> list[tuple[int, str]]:
    """Parts with their colour index, ``all`` drawn last (on top)."""
    indexed = list(enumerate(parts))
    return [p for p in indexed if p[1] != "all"] + [p for p in indexed if p[1] == "all"]


def draw_roc(curves: Mapping[str, Curve], title: str) -> Image.Image:
    """ROC curves, one line per part with its AUROC in the legend; parts with one class only are listed, not drawn."""
    font = _font(15)
    parts = list(curves)
    legend: list[tuple[str, tuple[int, int, int] | None]] = []
    lines: list[tuple[str, list[tuple[float, float]], tuple[int, int, int]]] = []
    box = (80, 56, 600, 576)
    for i, part in enumerate(parts):
        t, p = _clean(curves[part])
        n_pos, n = int(t.sum()), int(t.size)
        if n == 0 or n_pos in (0, n):
            legend.append((f"{part}: one class only (n={n}), no curve", None))
            continue
        fpr, tpr, _ = roc_curve(t, p)
        pts = [(box[0] + (box[2] - box[0]) * f, box[3] - (box[3] - box[1]) * r) for f, r in zip(fpr, tpr, strict=True)]
        lines.append((part, pts, part_color(i, part)))
        legend.append((f"{part}: AUROC {roc_auc(t, p):.3f} (n={n})", part_color(i, part)))
    legend.append(("chance (AUROC 0.5)", _CHANCE))
    width = box[2] + 40 + 34 + max(int(font.getlength(text)) for text, _ in legend) + 24
    img = Image.new("RGB", (max(width, 820), box[3] + 64), "white")
    draw = ImageDraw.Draw(img)
    draw.text(((box[0] + box[2]) / 2, 18), title, fill=_INK, font=_font(19), anchor="mt")
    _unit_axes(img, box, "false positive rate (1 - specificity)", "true positive rate (sensitivity)")
    for part, pts, line_color in sorted(lines, key=lambda line: line[0] == "all"):
        draw.line(pts, fill=line_color, width=4 if part == "all" else 3, joint="curve")
    x, y = box[2] + 40, box[1] + 4
    for text, color in legend:
        if color is _CHANCE:
            _dashed(draw, (x, y + 9), (x + 26, y + 9))
        elif color is not None:
            draw.line([(x, y + 9), (x + 26, y + 9)], fill=color, width=4)
        draw.text((x + 34, y), text, fill=_INK if color is not None else _MUTED, font=font)
        y += 26
    return img


def _grid(n: int, columns: int, cell: tuple[int, int], top: int) -> tuple[Image.Image, list[tuple[int, int]]]:
    cols = max(1, min(columns, n))
    rows = max(1, math.ceil(n / cols))
    img = Image.new("RGB", (cols * cell[0], top + rows * cell[1]), "white")
    return img, [(cell[0] * (k % cols), top + cell[1] * (k // cols)) for k in range(n)]


def _confusion_panel(draw: ImageDraw.ImageDraw, img: Image.Image, origin: tuple[int, int], part: str, c: Any) -> None:
    ox, oy = origin
    mx, my, sq = ox + 120, oy + 80, 90
    if not isinstance(c, Mapping) or not all(isinstance(c.get(k), int | float) for k in ("tn", "fp", "fn", "tp")):
        draw.text((ox + 210, oy + 12), part, fill=_INK, font=_font(17), anchor="mt")
        draw.text((ox + 210, oy + 170), "no confusion counts", fill=_MUTED, font=_font(14), anchor="mm")
        return
    cells = [[int(c["tn"]), int(c["fp"])], [int(c["fn"]), int(c["tp"])]]
    draw.text((mx + sq, oy + 12), f"{part} (n={sum(map(sum, cells))})", fill=_INK, font=_font(17), anchor="mt")
    draw.text((mx + sq, oy + 38), "predicted", fill=_MUTED, font=_font(13), anchor="mt")
    _vertical_text(img, (ox + 38, my + sq), "actual", _font(13))
    for k, name in enumerate(("normal", "abnormal")):
        draw.text((mx + sq * (k + 0.5), my - 5), name, fill=_INK, font=_font(14), anchor="mb")
        draw.text((mx - 8, my + sq * (k + 0.5)), name, fill=_INK, font=_font(14), anchor="rm")
    for i, row in enumerate(cells):
        total = sum(row)
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            fill = tuple(round(255 - (255 - b) * share) for b in (31, 119, 180))
            x, y = mx + sq * j, my + sq * i
            draw.rectangle([x, y, x + sq, y + sq], fill=fill, outline=_INK)
            ink = (255, 255, 255) if share > 0.55 else _INK
            draw.text((x + sq / 2, y + sq / 2 - 4), str(count), fill=ink, font=_font(24), anchor="mb")
            draw.text((x + sq / 2, y + sq / 2 + 6), f"{share:.0%} of row" if total else "-", fill=ink, font=_font(13),
                      anchor="mt")  # fmt: skip


def draw_confusions(confusions: Mapping[str, Any], title: str, note: str = "") -> Image.Image:
    """A grid of 2x2 confusion matrices, one per part: counts, coloured by the share of the true class (row)."""
    img, origins = _grid(len(confusions), 4, (320, 290), 64)
    draw = ImageDraw.Draw(img)
    draw.text((img.width / 2, 12), title, fill=_INK, font=_font(19), anchor="mt")
    draw.text((img.width / 2, 38), note, fill=_MUTED, font=_font(13), anchor="mt")
    for (ox, oy), part in zip(origins, confusions, strict=False):
        _confusion_panel(draw, img, (ox, oy), part, confusions[part])
    return img


def _reliability_panel(img: Image.Image, origin: tuple[int, int], part: str, curve: Curve, color: Any) -> None:
    draw = ImageDraw.Draw(img)
    ox, oy = origin
    t, p = _clean(curve)
    box = (ox + 80, oy + 40, ox + 370, oy + 330)
    if t.size == 0:
        draw.text((ox + 225, oy + 10), f"{part} (n=0)", fill=_INK, font=_font(16), anchor="mt")
        draw.text((ox + 225, oy + 180), "no predictions", fill=_MUTED, font=_font(14), anchor="mm")
        return
    mean_pred, frac, _ = calibration_bins(t, p)  # non-empty bins only
    counts = np.bincount(calibration_bin_ids(p), minlength=10)
    ece = expected_calibration_error(t, p)
    draw.text((ox + 225, oy + 10), f"{part} (n={t.size}, ECE {ece:.3f})", fill=_INK, font=_font(16), anchor="mt")
    _unit_axes(img, box, "mean predicted probability", "observed fraction abnormal", below=66)
    w, h = box[2] - box[0], box[3] - box[1]
    pts = [(box[0] + w * m, box[3] - h * f) for m, f in zip(mean_pred, frac, strict=True)]
    if len(pts) > 1:
        draw.line(pts, fill=color, width=3)
    for x, y in pts:
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=color, outline="white")
    top, bottom, bw = box[3] + 8, box[3] + 62, w / len(counts)
    _vertical_text(img, (box[0] - 46, (top + bottom) / 2), "count", _font(13))
    draw.line([(box[0], bottom), (box[2], bottom)], fill=_INK)
    for k in range(6):
        draw.line([(box[0] + w * k / 5, bottom), (box[0] + w * k / 5, bottom + 3)], fill=_INK)
    peak = max(int(counts.max()), 1)
    for k, n in enumerate(counts.tolist()):
        x = box[0] + bw * k
        y = bottom - (bottom - top - 16) * n / peak
        if n:
            draw.rectangle([x + 2, y, x + bw - 2, bottom], fill=(190, 205, 225))
        label = f"{n / 1000:.0f}k" if n >= 10000 else str(n)
        draw.text((x + bw / 2, y - 2), label, fill=_MUTED, font=_font(12), anchor="mb")


def draw_reliability(curves: Mapping[str, Curve], title: str) -> Image.Image:
    """Reliability diagrams, one panel per part: observed fraction abnormal against the mean predicted
    probability in 10 equal-width bins, the diagonal (perfect calibration) and the count of each bin below."""
    img, origins = _grid(len(curves), 3, (400, 460), 48)
    draw = ImageDraw.Draw(img)
    draw.text((img.width / 2, 12), title, fill=_INK, font=_font(19), anchor="mt")
    for origin, (i, part) in zip(origins, enumerate(curves), strict=False):
        _reliability_panel(img, origin, part, curves[part], part_color(i, part))
    return img
