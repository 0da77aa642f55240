"""Class activation maps and their boxes, as pure functions (arrays in, arrays or boxes out).

The map comes from :meth:`~mura_cli.models.registry.MuraNet.forward_with_cam`: the weighted sum of the last
feature maps by the linear head's weights (Zhou et al., CVPR 2016). :func:`cam_to_original` maps it back
through the exact inverse of the eval preprocessing (:func:`~mura_cli.data.preprocess.eval_geometry`), onto
the original pixel grid or, for speed and memory, onto a coarser grid of the same proportions
(:func:`cam_grid_shape`, at most :data:`CAM_GRID` pixels a side); :func:`cam_box` thresholds it at a fraction
of its maximum and boxes the largest connected component, and :meth:`Box.scaled` takes a box on that grid to
original pixels. Full-size maps (:func:`resize_map`) are made only for overlays and heatmaps.
"""

from __future__ import annotations

import numpy as np

from mura_cli.boxes import Box
from mura_cli.config_infer import COMPONENT, COMPONENTS, THRESHOLD_FRAC
from mura_cli.data.preprocess import Geometry

CAM_GRID = 512
"""The longest side of the grid maps are boxed on: MURA's own images (512 px) are boxed at full size, a
2,000 px DICOM on a grid 4x coarser than its pixels, which is still finer than any network input used here."""


def cam_grid_shape(height: int, width: int, longest: int = CAM_GRID) -> tuple[int, int]:
    """``(rows, columns)`` of the map grid for an ``height`` x ``width`` image: its own size up to ``longest``
    pixels a side, else scaled down to that, proportions kept."""
    s = min(1.0, longest / max(height, width, 1))
    return max(1, round(height * s)), max(1, round(width * s))


def cam_to_original(
    cam: np.ndarray, geometry: Geometry, height: int, width: int, grid: tuple[int, int] | None = None
) -> np.ndarray:
    """An hxw map on the network grid -> HxW float32 on the original pixel grid (bilinear, half-pixel centres),
    or on ``grid`` (rows, columns), a grid of the original's proportions (:func:`cam_grid_shape`).

    The map is first upsampled to the network input (out x out), placed at the crop offset in the resized frame
    (the cropped-away margin gets the upsampled map's minimum ``m``), then the resized frame is scaled back to
    height x width. Both steps are linear along each axis, so they are done at once, with no full-size
    intermediate: ``m + Ay (cam - m) Ax^T``, where ``Ay`` is the second step's row weights over the cropped rows
    times the first step's (the margin contributes ``m`` because the weights of each step sum to one).
    """
    cam = np.asarray(cam, dtype=np.float32)
    out = geometry.out
    uy, ux = _weights(cam.shape[0], out), _weights(cam.shape[1], out)
    m = float((uy @ cam @ ux.T).min())
    (rh, rw), (gh, gw) = geometry.resized, grid or (height, width)
    oy, ox = int(geometry.offset_y), int(geometry.offset_x)
    ay = _weights(rh, gh)[:, oy : oy + out] @ uy
    ax = _weights(rw, gw)[:, ox : ox + out] @ ux
    return np.ascontiguousarray(m + ay @ (cam - m) @ ax.T, dtype=np.float32)


def cam_on_grid(cam: np.ndarray, geometry: Geometry, height: int, width: int) -> np.ndarray:
    """:func:`cam_to_original` onto the :func:`cam_grid_shape` grid of an ``height`` x ``width`` image: the map
    predict keeps and localize boxes."""
    return cam_to_original(cam, geometry, height, width, cam_grid_shape(height, width))


def resize_map(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """A map on a grid -> ``height`` x ``width`` float32 (bilinear, half-pixel centres): for overlays and heatmaps."""
    if cam.shape == (height, width):
        return np.asarray(cam, dtype=np.float32)
    return bilinear(cam, height, width)


def bilinear(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """An HxW map resized to ``height`` x ``width`` float32, bilinear with half-pixel centres and no antialiasing
    (what ``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)`` computes)."""
    a = np.asarray(a, dtype=np.float32)
    y0, y1, wy = _taps(a.shape[0], height)
    x0, x1, wx = _taps(a.shape[1], width)
    rows = a[y0] * (1 - wy)[:, None] + a[y1] * wy[:, None]
    return np.ascontiguousarray(rows[:, x0] * (1 - wx) + rows[:, x1] * wx, dtype=np.float32)


def _weights(n_in: int, n_out: int) -> np.ndarray:
    """The n_out x n_in matrix of :func:`bilinear` along one axis (two non-zeros per row, summing to one)."""
    i0, i1, w1 = _taps(n_in, n_out)
    w = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    np.add.at(w, (rows, i0), 1 - w1)
    np.add.at(w, (rows, i1), w1)
    return w


def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index along one axis: the two source indices and the weight of the second."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(np.float32)


def cam_box(
    cam: np.ndarray, threshold_frac: float = THRESHOLD_FRAC, component: str = COMPONENT
) -> tuple[Box | None, float]:
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


def image_box(
    cam: np.ndarray, height: int, width: int, threshold_frac: float = THRESHOLD_FRAC, component: str = COMPONENT
) -> tuple[Box | None, float]:
    """:func:`cam_box` of a map on a grid of an ``height`` x ``width`` image, in that image's pixels."""
    box, thr = cam_box(cam, threshold_frac, component)
    return (None if box is None else box.scaled(cam.shape, height, width)), thr


def cam_peak(cam: np.ndarray, height: int | None = None, width: int | None = None) -> tuple[int, int]:
    """``(x, y)`` of the map's maximum; with ``height`` and ``width``, the centre of that grid cell in the pixels
    of an image of that size."""
    y, x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    if height is None or width is None:
        return int(x), int(y)
    gy, gx = cam.shape
    return min(width - 1, int((x + 0.5) * width / gx)), min(height - 1, int((y + 0.5) * height / gy))
