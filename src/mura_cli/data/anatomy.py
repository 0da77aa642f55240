"""Procedural anatomy for the demo phantoms: bones, limbs and metal as projected X-ray densities.

Every bone is a hollow tube (a bright cortex around a darker medulla, bulbous joint ends with flattened round
caps); its density at a pixel is the path length of the ray through cortex and medulla. Soft tissue is a thick
round limb, metal a soft-edged bar. :func:`create_anatomy` lays out the bones of a body part in template units;
:func:`pose_points` puts them into an image. Pure functions: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter

PHANTOM_PARTS = ("humerus", "forearm", "hand")
Limb = tuple[tuple[float, float], tuple[float, float], float, float]
"""A tapered round limb segment ``(p0, p1, r0, r1)``."""


@dataclass(frozen=True)
class Bone:
    """A long bone from ``p0`` to ``p1`` (x, y in pixels), half-width ``r``, joint bulges ``b0``/``b1``."""

    p0: tuple[float, float]
    p1: tuple[float, float]
    r: float
    b0: float = 0.5
    b1: float = 0.5
    cortex: float = 0.33


# ============================================================================================ templates


def create_anatomy(part: str, rng: np.random.Generator) -> tuple[list[Bone], list[Limb], list[tuple[int, ...]]]:
    """Bones, limb segments and the lesion sites, in units of the image height, centred, before the view's pose.

    A lesion site is a group of neighbouring bones that can break (or be fixed) together: the humerus; radius
    and ulna; two neighbouring metacarpals or proximal phalanges; the thumb's metacarpal.
    """
    if part == "humerus":
        bones = [
            Bone((0.0, -0.40), (0.0, 0.36), 0.055, b0=1.0, b1=0.75),
            Bone((0.07, -0.64), (0.11, -0.49), 0.045, b0=0.3, b1=0.7),
            Bone((-0.035, 0.47), (-0.05, 0.75), 0.026, b0=0.7, b1=0.2),
            Bone((0.04, 0.46), (0.055, 0.75), 0.03, b0=0.9, b1=0.2),
        ]
        tissue = [((0.0, -0.6), (0.0, 0.7), 0.2, 0.16), ((0.05, -0.55), (0.04, -0.3), 0.24, 0.2)]
        return bones, tissue, [(0,)]
    if part == "forearm":
        spread = 1.0 if rng.random() < 0.6 else rng.uniform(0.15, 0.5)  # PA view, or lateral: bones overlap
        bones = [
            Bone((-0.05 * spread, -0.40), (-0.035 * spread, 0.40), 0.034, b0=0.4, b1=1.0),
            Bone((0.045 * spread, -0.44), (0.05 * spread, 0.39), 0.03, b0=1.0, b1=0.5),
            Bone((0.0, -0.78), (0.0, -0.50), 0.045, b0=0.2, b1=0.9),
        ]
        bones += [
            Bone((x, y), (x + 0.01, y + 0.02), 0.02, 0.3, 0.3) for x, y in ((-0.05, 0.47), (0.0, 0.48), (0.05, 0.46))
        ]
        tissue = [((0.0, -0.75), (0.0, 0.65), 0.16, 0.11)]
        return bones, tissue, [(0, 1)]
    return _hand(rng)


def _hand(rng: np.random.Generator) -> tuple[list[Bone], list[Limb], list[tuple[int, ...]]]:
    bones = [Bone((-0.06, 0.66), (-0.05, 0.42), 0.036, 0.2, 0.8), Bone((0.06, 0.66), (0.055, 0.44), 0.026, 0.2, 0.5)]
    carpals: tuple[tuple[float, float], ...] = (
        (-0.07, 0.37),
        (-0.025, 0.38),
        (0.02, 0.38),
        (0.06, 0.37),
        (-0.08, 0.32),
        (-0.03, 0.33),
    )
    carpals += ((0.015, 0.33), (0.055, 0.32))
    bones += [Bone((x, y), (x + 0.012, y + 0.01), 0.022, 0.2, 0.2) for x, y in carpals]
    tissue: list[Limb] = [((0.0, 0.04), (0.0, 0.3), 0.17, 0.17), ((0.0, 0.3), (0.0, 0.72), 0.13, 0.12)]
    metacarpals, phalanges = [], []
    for i in range(4):  # index to little finger: metacarpal, then three phalanges
        base = np.array([-0.06 + 0.04 * i, 0.28])
        head = np.array([-0.12 + 0.08 * i, 0.03]) + rng.normal(0, 0.005, 2)
        direction = (head - base) / np.linalg.norm(head - base)
        metacarpals.append(len(bones))
        bones.append(Bone(tuple(base), tuple(head), 0.019, 0.6, 0.7))
        start, lengths = head + 0.02 * direction, (0.15, 0.09, 0.065) if i < 3 else (0.12, 0.07, 0.055)
        tip = start
        for k, (length, radius) in enumerate(zip(lengths, (0.016, 0.014, 0.012), strict=True)):
            end = start + length * direction
            if k == 0:
                phalanges.append(len(bones))
            bones.append(Bone(tuple(start), tuple(end), radius, 0.6, 0.5 if k < 2 else 0.2))
            tip, start = end, end + 0.018 * direction
        tissue.append((tuple(head), tuple(tip), 0.04, 0.032))
    thumb = np.array([-0.5, -0.55]) / np.hypot(0.5, 0.55)
    start = np.array([-0.09, 0.3])
    sites: list[tuple[int, ...]] = [(a, b) for group in (metacarpals, phalanges) for a, b in pairwise(group)]
    sites.append((len(bones),))  # the thumb's metacarpal
    for length, radius in ((0.13, 0.019), (0.1, 0.016), (0.07, 0.014)):
        end = start + length * thumb
        bones.append(Bone(tuple(start), tuple(end), radius, 0.6, 0.5))
        start = end + 0.02 * thumb
    tissue.append(((-0.08, 0.28), tuple(start), 0.07, 0.035))
    zoom, dy = 1.2, 0.0  # the hand fills the frame, as on a real PA hand film

    def put(pt) -> tuple[float, float]:
        return (pt[0] * zoom, pt[1] * zoom + dy)

    bones = [replace(b, p0=put(b.p0), p1=put(b.p1), r=b.r * zoom * 1.15) for b in bones]
    tissue = [(put(a), put(b), r0 * zoom, r1 * zoom) for a, b, r0, r1 in tissue]
    return bones, tissue, sites


def pose_points(
    pts: npt.ArrayLike, height: int, width: int, angle: float, scale: float, shift: npt.ArrayLike, flip: bool
) -> np.ndarray:
    """Template units -> pixels: flip, rotate, scale by the height, translate to the image centre."""
    pts = np.asarray(pts, dtype=np.float64) * (-1.0 if flip else 1.0, 1.0)
    c, s = np.cos(angle), np.sin(angle)
    rotated = pts @ np.array([[c, s], [-s, c]])
    return rotated * scale * height + np.array([width / 2, height / 2]) + np.asarray(shift) * height


# ============================================================================================ primitives


def pixel_window(shape: tuple[int, int], pts: list[np.ndarray], margin: float) -> tuple[slice, slice] | None:
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = max(int(min(xs) - margin), 0), min(int(max(xs) + margin) + 1, shape[1])
    y0, y1 = max(int(min(ys) - margin), 0), min(int(max(ys) + margin) + 1, shape[0])
    return None if x0 >= x1 or y0 >= y1 else (slice(y0, y1), slice(x0, x1))


def window_grid(win: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel x and y coordinates of a window, as float arrays."""
    ys, xs = np.mgrid[win[0], win[1]]
    return xs.astype(np.float32), ys.astype(np.float32)


def segment_coords(
    xx: np.ndarray, yy: np.ndarray, p0: np.ndarray, p1: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Position along the segment (0 at ``p0``, 1 at ``p1``), signed distance across it, and its length."""
    d = p1 - p0
    length = float(np.hypot(*d)) or 1.0
    ux, uy = float(d[0]) / length, float(d[1]) / length  # Python floats keep float32 grids in float32
    rx, ry = xx - float(p0[0]), yy - float(p0[1])
    return (rx * ux + ry * uy) / length, rx * -uy + ry * ux, length


def bone_density(xx: np.ndarray, yy: np.ndarray, bone: Bone, texture: np.ndarray) -> np.ndarray:
    """Projected density of a hollow bone: cortex path length x 1.5 + medulla path length x 0.3-0.5, over ``r``."""
    p0, p1 = np.asarray(bone.p0), np.asarray(bone.p1)
    t, s, length = segment_coords(xx, yy, p0, p1)
    e = min(0.35, 2.2 * bone.r / length)
    tc = np.clip(t, 0.0, 1.0)
    ends = np.exp(-((tc / e) ** 2)) * bone.b0 + np.exp(-(((1.0 - tc) / e) ** 2)) * bone.b1
    radius = bone.r * (1.0 + ends)
    beyond = np.where(t < 0, -t, np.where(t > 1, t - 1, 0.0)) * length * 1.8  # flattened caps: joint spaces
    dist2 = s**2 + beyond**2
    joint = np.clip(ends / max(bone.b0, bone.b1, 1e-6), 0.0, 1.0)
    inner_r = radius * (1.0 - bone.cortex * (1.0 - 0.75 * joint))
    outer = np.sqrt(np.clip(radius**2 - dist2, 0.0, None))
    inner = np.sqrt(np.clip(inner_r**2 - dist2, 0.0, None))
    medulla = (0.3 + 0.2 * joint) * (1.0 + 0.25 * texture)
    return (1.5 * (outer - inner) + medulla * inner) / bone.r


def limb_thickness(xx: np.ndarray, yy: np.ndarray, p0, p1, r0: float, r1: float) -> np.ndarray:
    """Thickness profile (0..1) of a tapered round limb segment with rounded ends."""
    t, s, length = segment_coords(xx, yy, np.asarray(p0), np.asarray(p1))
    tc = np.clip(t, 0.0, 1.0)
    beyond = (t - tc) * length
    radius = r0 + (r1 - r0) * tc
    return np.sqrt(np.clip(1.0 - (s**2 + beyond**2) / radius**2, 0.0, None))


def metal_bar(xx: np.ndarray, yy: np.ndarray, centre: np.ndarray, u: np.ndarray, half_len: float, half_w: float):
    """A soft-edged oriented rectangle (0..1): metal plates, screws, wires."""
    ux, uy = float(u[0]), float(u[1])
    rx, ry = xx - float(centre[0]), yy - float(centre[1])
    a, s = rx * ux + ry * uy, rx * -uy + ry * ux
    along = np.exp(np.minimum((np.abs(a) - half_len) / 0.6, 40.0))
    across = np.exp(np.minimum((np.abs(s) - half_w) / 0.5, 40.0))
    return 1.0 / ((1.0 + along) * (1.0 + across))


def bandpass_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean unit-variance noise between the scales ``sigma`` and ``3 * sigma`` (trabecular texture)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    band = gaussian_filter(noise, sigma, truncate=3.0) - gaussian_filter(noise, 3 * sigma, truncate=3.0)
    return band / (band.std() + 1e-9)
