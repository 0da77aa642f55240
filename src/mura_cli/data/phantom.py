"""Procedural radiographs for the demo set: a body part in a random pose, a lesion, and the lesion's boxes.

Densities of :mod:`mura_cli.data.anatomy` add up (bone overlaps look brighter, metal is nearly opaque) and are
shown the way a digital radiograph is: a window on the log-transmission with a soft shoulder, after detector
blur, with a heel-effect gradient and quantum noise.

Lesions are of two kinds, as in MURA's abnormal studies: ``hardware`` (a plate with screws, an intramedullary
nail, lag screws or K-wires) and ``fracture`` (a dark irregular line across a bone, the distal fragment shifted
and angulated, soft-tissue swelling around it). Normal views carry look-alikes on purpose: lead side markers as
bright as metal, growth plates (smooth dark lines near the joints) in young patients, overlapping bones.

Pure functions of a ``numpy.random.Generator``: the same generator state renders the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from mura_cli.data.anatomy import (
    Bone,
    bandpass_noise,
    bone_density,
    create_anatomy,
    limb_thickness,
    metal_bar,
    pixel_window,
    pose_points,
    segment_coords,
    window_grid,
)

LESION_KINDS = ("hardware", "fracture")
Box = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` in pixels, ``x1``/``y1`` exclusive."""

_LETTERS = {  # 5x7 bitmaps of the lead side markers
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
}


@dataclass(frozen=True)
class Lesion:
    """What an abnormal study shows in every one of its views.

    Attributes:
        kind: ``hardware`` or ``fracture``.
        site: which lesion site of the part (taken modulo the number of sites).
        t: where along the bones, 0 at the proximal end, 1 at the distal end.
        every_bone: a fracture breaks every bone of the site (both forearm bones, two metacarpals), not one.
    """

    kind: str
    site: int
    t: float
    every_bone: bool = False


@dataclass(frozen=True)
class _Fracture:
    at: np.ndarray  # the fracture point on the bone axis
    normal: np.ndarray  # unit normal of the fracture line, pointing to the distal fragment
    shift: np.ndarray  # displacement of the distal fragment, pixels
    angle: float  # angulation of the distal fragment, radians
    gap: float  # half-width of the dark line, pixels
    jag: tuple[tuple[float, float, float], ...]  # (amplitude, frequency, phase) of the line's irregularity
    axis: np.ndarray  # unit vector along the bone
    callus: float  # density of the healing callus around the break (0: a fresh fracture)
    overlap: float  # width of the bright band where the fragments overlap, pixels (0: none)


def _turn(v: np.ndarray, a: float) -> np.ndarray:
    return np.array([v[0] * np.cos(a) - v[1] * np.sin(a), v[0] * np.sin(a) + v[1] * np.cos(a)])


def _frame(bone: Bone) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``p0``, the unit axis ``u``, the unit normal ``n`` and the length of a bone."""
    p0, p1 = np.asarray(bone.p0), np.asarray(bone.p1)
    length = float(np.hypot(*(p1 - p0)))
    u = (p1 - p0) / length
    return p0, u, np.array([-u[1], u[0]]), length


# ============================================================================================ fractures


def _new_fracture(rng: np.random.Generator, bone: Bone, t: float, px: float) -> _Fracture:
    p0, u, n, length = _frame(bone)
    shift = n * rng.uniform(0.6, 1.2) * bone.r * rng.choice([-1, 1]) + u * rng.uniform(-0.4, 0.3) * bone.r
    jag = tuple((rng.uniform(0.8, 2.5) * px, rng.uniform(0.1, 0.4) / px, rng.uniform(0, 2 * np.pi)) for _ in range(3))
    return _Fracture(
        at=p0 + t * length * u,
        normal=_turn(u, rng.uniform(-0.6, 0.6)),  # transverse to oblique
        shift=shift,
        angle=float(rng.uniform(0.1, 0.3) * rng.choice([-1, 1])),
        gap=float(rng.uniform(2.5, 4.0) * px),
        jag=jag,
        axis=u,
        callus=float(rng.uniform(0.35, 0.6)) if rng.random() < 0.6 else 0.0,
        overlap=float(rng.uniform(0.25, 0.6) * bone.r + px) if rng.random() < 0.4 else 0.0,
    )


def _fractured_density(xx: np.ndarray, yy: np.ndarray, bone: Bone, texture: np.ndarray, fr: _Fracture):
    """The bone broken at ``fr``: the distal fragment shifted and angulated, a dark irregular gap between, a
    bright band where the fragments overlap, a fluffy callus around a healing break; and the mask of it all."""
    proximal = bone_density(xx, yy, bone, texture)
    c, s = np.cos(-fr.angle), np.sin(-fr.angle)
    dx, dy = xx - fr.at[0] - fr.shift[0], yy - fr.at[1] - fr.shift[1]
    distal = bone_density(fr.at[0] + c * dx - s * dy, fr.at[1] + s * dx + c * dy, bone, texture)
    rx, ry = xx - fr.at[0], yy - fr.at[1]
    along = rx * -fr.normal[1] + ry * fr.normal[0]
    side = rx * fr.normal[0] + ry * fr.normal[1] + sum(a * np.sin(f * along + ph) for a, f, ph in fr.jag)
    broken = np.where(side > 0, distal, proximal) * (1.0 - 0.95 * np.exp(-((side / fr.gap) ** 2)))
    if fr.overlap:
        broken += 0.7 * proximal * ((side > fr.gap) & (side < fr.gap + fr.overlap))
    mask = (np.abs(side) < 2.0 * fr.gap) & (np.maximum(proximal, distal) > 0.3)
    if fr.callus:
        a = (rx * fr.axis[0] + ry * fr.axis[1]) / (1.8 * bone.r)
        across = (rx * -fr.axis[1] + ry * fr.axis[0]) / (1.8 * bone.r)
        spindle = np.exp(-(a**2)) * np.sqrt(np.clip(1.0 - across**2, 0.0, None))
        fluff = gaussian_filter(texture, 2.0)  # woven bone: blotchy, not grainy
        broken += fr.callus * spindle * np.clip(1.0 + 2.0 * fluff, 0.2, None)
        mask |= spindle > 0.3
    return broken, mask


# ============================================================================================ hardware


def _hardware(rng: np.random.Generator, bones: list[Bone], t: float, part: str, px: float) -> list[tuple]:
    """Metal over the site's ``bones`` near ``t``, as bars ``(centre, direction, half length, half width)``: a
    plate with screws, an intramedullary nail with locking screws, lag screws, K-wires, or (hand) wires
    transfixing two metacarpals."""
    bone = bones[int(rng.integers(len(bones)))]
    p0, u, n, length = _frame(bone)
    r, centre = bone.r, p0 + t * length * u
    kinds: tuple[str, ...]
    weights: tuple[float, ...]
    if part == "hand":
        kinds, weights = ("plate", "wires", "transfix"), (0.45, 0.25, 0.3 if len(bones) > 1 else 0.0)
    else:
        kinds, weights = ("plate", "nail", "screws", "wires"), (0.5, 0.25 if part == "humerus" else 0.1, 0.1, 0.15)
    kind = rng.choice(kinds, p=np.asarray(weights) / sum(weights))
    bars: list[tuple] = []
    if kind == "plate":
        half = length * (rng.uniform(0.25, 0.35) if part == "hand" else rng.uniform(0.15, 0.22))
        centre = centre + n * rng.uniform(-0.5, 0.5) * r
        bars.append((centre, u, half, max(rng.uniform(0.4, 0.55) * r, 2.0 * px)))
        count = max(2, int(2 * half / max(rng.uniform(1.0, 1.4) * r, 7 * px)))
        for a in np.linspace(-0.8 * half, 0.8 * half, count):
            bars.append((centre + a * u, _turn(n, rng.uniform(-0.15, 0.15)), 1.2 * r, max(0.18 * r, 1.4 * px)))
    elif kind == "nail":
        centre, half = p0 + rng.uniform(0.4, 0.6) * length * u, length * rng.uniform(0.3, 0.42)
        bars.append((centre, u, half, max(0.35 * r, 2.0 * px)))
        for a in (-0.85 * half, 0.85 * half):
            bars.append((centre + a * u, _turn(n, rng.uniform(-0.15, 0.15)), 1.2 * r, max(0.18 * r, 1.4 * px)))
    elif kind == "screws":
        for _ in range(rng.integers(2, 4)):
            where = centre + u * rng.uniform(-1.5, 1.5) * r
            bars.append(
                (where, _turn(n, rng.uniform(0.35, 0.9) * rng.choice([-1, 1])), 1.4 * r, max(0.2 * r, 1.5 * px))
            )
    elif kind == "wires":
        for _ in range(rng.integers(2, 4)):
            where = centre + u * rng.uniform(-1.0, 1.0) * r
            spin = rng.uniform(0.2, 0.5) * rng.choice([-1, 1])
            bars.append((where, _turn(u, spin), length * rng.uniform(0.25, 0.4), rng.uniform(1.0, 1.5) * px))
    else:  # transverse wires through two neighbouring metacarpals
        other = bones[0] if bone is bones[-1] else bones[-1]
        q0, _, _, q_length = _frame(other)
        mid = (centre + q0 + t * q_length * _frame(other)[1]) / 2
        span = float(np.hypot(*(centre - mid))) + 2.0 * r
        for _ in range(rng.integers(2, 4)):
            where = mid + u * rng.uniform(-1.5, 1.5) * r
            bars.append((where, _turn(n, rng.uniform(-0.35, 0.35)), span, rng.uniform(1.0, 1.5) * px))
    return bars


def _metal(rng: np.random.Generator, bars: list[tuple], shape: tuple[int, int]) -> np.ndarray:
    """The density of metal ``bars``: nearly opaque, sometimes less (thin or titanium implants)."""
    metal = np.zeros(shape, dtype=np.float32)
    for where, direction, half_len, half_w in bars:
        win = pixel_window(shape, [where - half_len * direction, where + half_len * direction], half_w + 4)
        if win is not None:
            bar = metal_bar(*window_grid(win), where, direction, half_len, half_w)
            np.maximum(metal[win], bar, out=metal[win])
    return metal * (rng.uniform(2.2, 4.5) if rng.random() < 0.8 else rng.uniform(1.4, 2.2))


def _bbox(mask: np.ndarray, pad: float, shape: tuple[int, int], min_side: float) -> Box | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x0, x1, y0, y1 = xs.min() - pad, xs.max() + 1 + pad, ys.min() - pad, ys.max() + 1 + pad
    grow_x, grow_y = max(0.0, min_side - (x1 - x0)) / 2, max(0.0, min_side - (y1 - y0)) / 2
    x0, x1, y0, y1 = x0 - grow_x, x1 + grow_x, y0 - grow_y, y1 + grow_y
    box = (
        max(int(np.floor(x0)), 0),
        max(int(np.floor(y0)), 0),
        min(int(np.ceil(x1)), shape[1]),
        min(int(np.ceil(y1)), shape[0]),
    )
    return box if box[2] > box[0] and box[3] > box[1] else None


def _marker(rng: np.random.Generator, shape: tuple[int, int], px: float) -> np.ndarray:
    """A lead side marker (``R`` or ``L`` on a plastic holder) near a corner: as bright as metal."""
    cell = max(1, round(rng.uniform(1.8, 3.0) * px))
    bitmap = np.array([[c == "1" for c in row] for row in _LETTERS[rng.choice(list(_LETTERS))]], dtype=np.float32)
    letter = np.kron(bitmap, np.ones((cell, cell), dtype=np.float32))
    pad = 2 * cell
    holder = np.full((letter.shape[0] + 2 * pad, letter.shape[1] + 2 * pad), 0.3, dtype=np.float32)
    holder[pad:-pad, pad:-pad] += letter * rng.uniform(2.5, 5.0)
    h, w = holder.shape
    out = np.zeros(shape, dtype=np.float32)
    if h + 8 >= shape[0] or w + 8 >= shape[1]:
        return out
    top, left = rng.random() < 0.5, rng.random() < 0.5
    y = int(rng.uniform(4, 0.15 * shape[0]) if top else rng.uniform(0.85 * shape[0] - h, shape[0] - h - 4))
    x = int(rng.uniform(4, 0.15 * shape[1]) if left else rng.uniform(0.85 * shape[1] - w, shape[1] - w - 4))
    out[y : y + h, x : x + w] = holder
    return out


# ============================================================================================ a view


def render_view(
    rng: np.random.Generator,
    part: str,
    *,
    height: int,
    width: int,
    lesion: Lesion | None = None,
    young: bool = False,
) -> tuple[np.ndarray, list[Box]]:
    """Render one view of ``part`` (one of :data:`~mura_cli.data.anatomy.PHANTOM_PARTS`) in a random pose.

    Args:
        rng: the source of every random choice.
        part: the body part.
        height: image height, pixels.
        width: image width, pixels.
        lesion: what the view shows, or ``None`` for a normal view.
        young: draw growth plates (open physes), a normal look-alike of a fracture line.

    Returns:
        The image, HxW float32 in [0, 1] (bone bright), and the lesion's box ``(x0, y0, x1, y1)`` in pixels,
        ``x1``/``y1`` exclusive, in a list (empty for a normal view).
    """
    shape, px = (height, width), height / 320.0
    template, limbs, sites = create_anatomy(part, rng)
    site = sites[lesion.site % len(sites)] if lesion is not None else ()
    pose = _pose(rng, shape, [template[i] for i in site], lesion.t if lesion else 0.5)
    scale = pose["scale"] * height

    def place(pt: tuple[float, float]) -> np.ndarray:
        return pose_points(pt, height, width, **pose)

    thickness, cortex, bulge = rng.uniform(0.85, 1.2), rng.uniform(0.75, 1.25), rng.uniform(0.8, 1.2)  # build
    bones = [
        replace(b, p0=tuple(place(b.p0)), p1=tuple(place(b.p1)), r=b.r * scale * thickness, cortex=b.cortex * cortex)
        for b in template
    ]
    bones = [replace(b, b0=b.b0 * bulge, b1=b.b1 * bulge) for b in bones]
    thick = np.zeros(shape, dtype=np.float32)
    for p0, p1, r0, r1 in limbs:
        a, b = place(p0), place(p1)
        win = pixel_window(shape, [a, b], max(r0, r1) * scale + 2)
        if win is not None:
            np.maximum(thick[win], limb_thickness(*window_grid(win), a, b, r0 * scale, r1 * scale), out=thick[win])
    density = thick * (rng.uniform(0.22, 0.35) if part == "hand" else rng.uniform(0.3, 0.5))
    fractures: dict[int, _Fracture] = {}
    if lesion is not None and lesion.kind == "fracture":
        broken = site if lesion.every_bone else site[:1]
        fractures = {i: _new_fracture(rng, bones[i], lesion.t + rng.uniform(-0.04, 0.04), px) for i in broken}
    mask = _add_bones(rng, density, bones, fractures, young, px)
    boxes = []
    if fractures:
        sigma = 3.0 * max(bones[i].r for i in fractures)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        for fr in fractures.values():  # soft-tissue swelling around the break
            density += rng.uniform(0.12, 0.25) * np.exp(-((xx - fr.at[0]) ** 2 + (yy - fr.at[1]) ** 2) / (2 * sigma**2))
        pad = max(float(np.hypot(*fr.shift)) for fr in fractures.values()) + 2 * px
        boxes.append(_bbox(mask, pad, shape, 0.12 * min(shape)))
    if lesion is not None and lesion.kind == "hardware":
        metal = _metal(rng, _hardware(rng, [bones[i] for i in site], lesion.t, part, px), shape)
        boxes.append(_bbox(metal > 0.35 * metal.max(), 1.0, shape, 0.12 * min(shape)))
        density += metal
    if rng.random() < 0.85:
        density += _marker(rng, shape, px)
    return _expose(rng, density, px), [b for b in boxes if b is not None]


def _pose(rng: np.random.Generator, shape: tuple[int, int], site: list[Bone], t: float) -> dict:
    """A random pose (angle, scale, shift, flip) that keeps the lesion site well inside the image."""
    height, width = shape
    for _ in range(50):
        pose: dict[str, Any] = {
            "angle": rng.uniform(-0.3, 0.3),
            "scale": rng.uniform(0.9, 1.05),
            "flip": bool(rng.random() < 0.5),
        }
        pose["shift"] = rng.uniform(-0.04, 0.04, 2)
        spots = [np.asarray(b.p0) + t * (np.asarray(b.p1) - np.asarray(b.p0)) for b in site]
        xy = [pose_points(p, height, width, **pose) for p in spots]
        if all(0.15 * width < x < 0.85 * width and 0.15 * height < y < 0.85 * height for x, y in xy):
            return pose
    return {"angle": 0.0, "scale": 1.0, "flip": False, "shift": np.zeros(2)}


def _add_bones(
    rng: np.random.Generator,
    density: np.ndarray,
    bones: list[Bone],
    fractures: dict[int, _Fracture],
    young: bool,
    px: float,
) -> np.ndarray:
    """Add every bone's density into ``density`` (those in ``fractures`` broken); the mask of the breaks."""
    shape = density.shape
    texture = bandpass_noise(rng, shape, 0.8 * px)
    gain = rng.uniform(0.85, 1.15)
    mask = np.zeros(shape, dtype=bool)
    for i, bone in enumerate(bones):
        reach = bone.r * (1 + max(bone.b0, bone.b1)) + 3 * px
        win = pixel_window(shape, [np.asarray(bone.p0), np.asarray(bone.p1)], reach)
        if win is None:
            continue
        xx, yy = window_grid(win)
        if i in fractures:
            d, line = _fractured_density(xx, yy, bone, texture[win], fractures[i])
            mask[win] |= line
        else:
            d = bone_density(xx, yy, bone, texture[win])
        if young:
            d = d * _growth_plates(xx, yy, bone, px)
        density[win] += gain * d
    return mask


def _growth_plates(xx: np.ndarray, yy: np.ndarray, bone: Bone, px: float) -> np.ndarray:
    """Smooth dark lines across a long bone near both joint ends (open physes of a child)."""
    t, s, length = segment_coords(xx, yy, np.asarray(bone.p0), np.asarray(bone.p1))
    if length < 4 * bone.r:
        return np.ones_like(xx)
    e = min(0.35, 2.2 * bone.r / length)
    out = np.ones_like(xx)
    for at, bulge in ((0.9 * e, bone.b0), (1 - 0.9 * e, bone.b1)):
        if bulge >= 0.4:
            bend = 0.15 * bone.r * (s / bone.r) ** 2 / length
            out *= 1.0 - 0.6 * np.exp(-((((t - at) - bend) * length / (1.3 * px)) ** 2))
    return out


def _expose(rng: np.random.Generator, density: np.ndarray, px: float) -> np.ndarray:
    """Density -> display: detector blur, a window with a soft shoulder, heel effect, quantum noise, contrast."""
    density = gaussian_filter(density.astype(np.float32), rng.uniform(0.6, 1.1) * px, truncate=3.0)
    x = density / np.float32(
        rng.uniform(1.9, 2.3)
    )  # log-transmission is linear in density: a window, then a soft shoulder
    shown = np.where(x < 0.8, x, 0.8 + 0.2 * (1.0 - np.exp(-(x - 0.8) / 0.2)))
    height = density.shape[0]
    heel = 1.0 + rng.uniform(-0.12, 0.12) * (np.arange(height)[:, None] / height - 0.5)
    background = rng.uniform(0.0, 0.12)
    shown = background + (1.0 - background) * shown * heel
    shown = shown + rng.standard_normal(shown.shape, dtype=np.float32) * rng.uniform(0.008, 0.02) * (0.5 + shown)
    lo, hi = rng.uniform(-0.02, 0.04), rng.uniform(0.95, 1.05)
    shown = np.clip((shown - lo) / (hi - lo), 0.0, 1.0) ** rng.uniform(0.9, 1.15)
    return shown.astype(np.float32)
