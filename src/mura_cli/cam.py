"""Class activation maps and their boxes, as pure functions (arrays in, arrays or boxes out).

The map comes from :meth:`~mura_cli.models.registry.MuraNet.forward_with_cam`: the weighted sum of the last
feature maps by the linear head's weights (Zhou et al., CVPR 2016). :func:`cam_to_original` maps it back
through the exact inverse of the eval preprocessing (:func:`~mura_cli.data.transforms.eval_geometry`), and
:func:`cam_box` thresholds it at a fraction of its maximum and boxes the largest connected component.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mura_cli.data.transforms import Geometry


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

    def iou(self, other: Box) -> float:
        ix = max(0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union else 0.0

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1


def cam_to_original(cam: np.ndarray, geometry: Geometry, height: int, width: int) -> np.ndarray:
    """An hxw map on the network grid -> HxW float32 on the original pixel grid (bilinear, half-pixel centres).

    The map is first upsampled to the network input (out x out), placed at the crop offset in the resized frame
    (the cropped-away margin gets the map's minimum), then the resized frame is scaled back to height x width.
    """
    t = torch.as_tensor(np.asarray(cam, dtype=np.float32))[None, None]
    out = geometry.out
    up = torch.nn.functional.interpolate(t, size=(out, out), mode="bilinear", align_corners=False)
    rh, rw = geometry.resized
    if (rh, rw) != (out, out):
        canvas = torch.full((1, 1, rh, rw), float(up.min()))
        oy, ox = int(geometry.offset_y), int(geometry.offset_x)
        canvas[..., oy : oy + out, ox : ox + out] = up
        up = canvas
    full = torch.nn.functional.interpolate(up, size=(height, width), mode="bilinear", align_corners=False)
    return full[0, 0].numpy()


COMPONENTS = ("largest", "peak")


def cam_box(cam: np.ndarray, threshold_frac: float = 0.2, component: str = "largest") -> tuple[Box | None, float]:
    """Box around a connected region where ``cam >= threshold_frac * max(cam)``: the ``largest`` one (the
    seed's method), or the one holding the map's ``peak``.

    Returns ``(box or None, threshold)``; ``None`` when the map has no positive maximum.
    """
    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {COMPONENTS}, not {component!r}")
    from skimage.measure import label, regionprops

    peak = float(np.max(cam)) if cam.size else 0.0
    if not np.isfinite(peak) or peak <= 0:
        return None, float("nan")
    thr = threshold_frac * peak
    labels = label(cam >= thr, connectivity=2)
    regions = regionprops(labels)
    if not regions:
        return None, thr
    if component == "peak":
        at = labels[np.unravel_index(int(np.argmax(cam)), cam.shape)]
        best = next(r for r in regions if r.label == at)
    else:
        best = max(regions, key=lambda r: r.area)
    y0, x0, y1, x1 = best.bbox
    return Box(int(x0), int(y0), int(x1), int(y1)), thr


def cam_peak(cam: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the map's maximum."""
    y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return int(x), int(y)
