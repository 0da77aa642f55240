"""Boxes: one type (:class:`Box`), one way to read any box (:func:`corners`), one IoU (:func:`box_iou`).

A box is ``x0, y0`` inclusive top-left and ``x1, y1`` exclusive bottom-right, in pixels. CAM boxes are
:class:`Box`; ground truth read from label files (MURA's ``boxes.csv``, FracAtlas' COCO masks, the synthetic
set's lesions) is kept as plain :data:`Corners` tuples; every function here takes either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Corners = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)``, ``x1``/``y1`` exclusive: a box as label files give it."""
BoxLike = Any
"""A :class:`Box`, or a 4-sequence ``(x0, y0, x1, y1)``."""


@dataclass(frozen=True)
class Box:
    """A box in original pixels, ``x0, y0`` inclusive top-left and ``x1, y1`` exclusive bottom-right."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def area(self) -> int:
        return max(0, self.x1 - self.x0) * max(0, self.y1 - self.y0)

    def iou(self, other: BoxLike) -> float:
        """:func:`box_iou` of this box and ``other``."""
        return box_iou(self, other)

    def contains(self, x: float, y: float) -> bool:
        """:func:`contains` of this box and the point ``(x, y)``."""
        return contains(self, x, y)

    def scaled(self, grid: tuple[int, int], height: int, width: int) -> Box:
        """This box on a ``grid`` (rows, columns) map of an ``height`` x ``width`` image, in that image's pixels:
        the smallest box covering the grid cells it covers."""
        sy, sx = height / grid[0], width / grid[1]
        return Box(
            int(np.floor(self.x0 * sx)),
            int(np.floor(self.y0 * sy)),
            min(width, int(np.ceil(self.x1 * sx))),
            min(height, int(np.ceil(self.y1 * sy))),
        )


def corners(b: BoxLike) -> Corners:
    """A box as ``(x0, y0, x1, y1)`` floats, from a :class:`Box` or a 4-sequence."""
    if hasattr(b, "x0"):
        return float(b.x0), float(b.y0), float(b.x1), float(b.y1)
    x0, y0, x1, y1 = b
    return float(x0), float(y0), float(x1), float(y1)


def box_iou(a: BoxLike, b: BoxLike) -> float:
    """Intersection over union of two boxes (``x1, y1`` exclusive); 0 when both are empty."""
    ax0, ay0, ax1, ay1 = corners(a)
    bx0, by0, bx1, by1 = corners(b)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0) + max(0.0, bx1 - bx0) * max(0.0, by1 - by0) - inter
    return inter / union if union > 0 else 0.0


def contains(box: BoxLike, x: float, y: float) -> bool:
    """Whether the point ``(x, y)`` lies in ``box`` (``x1, y1`` exclusive)."""
    x0, y0, x1, y1 = corners(box)
    return x0 <= x < x1 and y0 <= y < y1


def in_any(boxes: Sequence[BoxLike], x: float, y: float) -> bool:
    """Whether the point ``(x, y)`` lies in any of ``boxes``."""
    return any(contains(b, x, y) for b in boxes)


__all__ = ["Box", "BoxLike", "Corners", "box_iou", "contains", "corners", "in_any"]
