"""Image transforms: from a reader's HxW float32 [0, 1] array to the network's normalized 3xSxS tensor.

:func:`build_transforms` assembles torchvision ``transforms.v2`` for geometry and augmentation and
scikit-image for the contrast tools it does better (histogram equalization, CLAHE, unsharp mask).
Order: resize -> center crop -> contrast/sharpen/blur -> (train) flips, rotation -> grey to 3 channels ->
normalize with the backbone's mean/std. The eval geometry is a pure function (:func:`eval_geometry`) so that
a class activation map can be mapped back to the original pixel grid exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import v2

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


class _Contrast:
    """Histogram equalization, CLAHE, unsharp mask and Gaussian blur on a 1xHxW tensor in [0, 1] (skimage)."""

    def __init__(self, equalize: bool, clahe: float, sharpen: float, blur_sigma: float) -> None:
        self.equalize, self.clahe, self.sharpen, self.blur_sigma = equalize, clahe, sharpen, blur_sigma

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The grey channel 0 is processed; further channels (a box mask) pass through."""
        from skimage import exposure, filters

        a = x[0].numpy().astype(np.float64)
        if self.equalize:
            a = exposure.equalize_hist(a)
        if self.clahe > 0:
            a = exposure.equalize_adapthist(np.clip(a, 0, 1), clip_limit=self.clahe)
        if self.sharpen > 0:
            a = filters.unsharp_mask(a, radius=2.0, amount=self.sharpen, preserve_range=True)
        if self.blur_sigma > 0:
            a = filters.gaussian(a, sigma=self.blur_sigma, preserve_range=True)
        return torch.cat([torch.from_numpy(np.clip(a, 0.0, 1.0).astype(np.float32))[None], x[1:]])

    def __repr__(self) -> str:
        return (
            f"Contrast(equalize={self.equalize}, clahe={self.clahe}, sharpen={self.sharpen}, "
            f"blur_sigma={self.blur_sigma})"
        )


class _ToTensor:
    """HxW float32 array in [0, 1] -> 1xHxW float tensor."""

    def __call__(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(np.ascontiguousarray(pixels), dtype=torch.float32)
        return t[None] if t.ndim == 2 else t

    def __repr__(self) -> str:
        return "ToTensor()"


class _GreyTo3:
    """1xHxW -> 3xHxW by replicating the grey channel (ImageNet backbones expect RGB)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(3, -1, -1).contiguous() if x.shape[0] == 1 else x

    def __repr__(self) -> str:
        return "GreyTo3()"


class _Resize:
    """Resize for one image size: stretch to a square, or shorter side to ``size`` then center crop."""

    def __init__(self, cfg: TransformConfig) -> None:
        self.cfg = cfg

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        g = eval_geometry(int(x.shape[-2]), int(x.shape[-1]), self.cfg)
        x = v2.functional.resize(x, list(g.resized), antialias=True)
        if g.resized != (g.out, g.out):
            x = v2.functional.crop(x, int(g.offset_y), int(g.offset_x), g.out, g.out)
        return x.clamp_(0.0, 1.0)

    def __repr__(self) -> str:
        return f"Resize(size={self.cfg.size}, mode={self.cfg.resize}, crop={self.cfg.center_crop})"


class _WithMask:
    """A 2xHxW (grey, box mask) array through the same random geometry -> (3xSxS image, 1xSxS mask)."""

    def __init__(self, geometry: v2.Compose, finish: v2.Compose) -> None:
        self.geometry, self.finish = geometry, finish

    def __call__(self, stacked: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.geometry(stacked)
        return self.finish(x[:1]), (x[1:] > 0.5).float()


def build_transforms(cfg: TransformConfig, train: bool, with_mask: bool = False) -> v2.Compose | _WithMask:
    """The preprocessing pipeline for training (with augmentation) or evaluation.

    Args:
        cfg: sizes, augmentations and normalization.
        train: add random flips and rotation.
        with_mask: the input is a 2xHxW array, the image and a box mask; the mask gets the image's resize, flips
            and rotation, and comes back beside the image.

    Returns:
        A callable: HxW float32 array in [0, 1] -> 3xSxS float tensor, normalized (with ``with_mask``:
        2xHxW -> ``(image, 1xSxS mask)``).

    Example:
        >>> tf = build_transforms(TransformConfig(), train=False)
        >>> tf(read_image("scan.dcm").pixels).shape
        torch.Size([3, 320, 320])
    """
    steps: list = [_ToTensor(), _Resize(cfg)]
    if cfg.equalize or cfg.clahe > 0 or cfg.sharpen > 0 or cfg.blur_sigma > 0:
        steps.append(_Contrast(cfg.equalize, cfg.clahe, cfg.sharpen, cfg.blur_sigma))
    if train:
        if cfg.hflip:
            steps.append(v2.RandomHorizontalFlip(0.5))
        if cfg.vflip:
            steps.append(v2.RandomVerticalFlip(0.5))
        if cfg.rotation > 0:
            steps.append(v2.RandomRotation(cfg.rotation, interpolation=v2.InterpolationMode.BILINEAR, fill=0.0))
    finish = [_GreyTo3(), v2.Normalize(mean=list(cfg.mean), std=list(cfg.std))]
    if with_mask:
        return _WithMask(v2.Compose(steps), v2.Compose(finish))
    return v2.Compose(steps + finish)


def denormalize(x: torch.Tensor, cfg: TransformConfig) -> torch.Tensor:
    """Undo :func:`build_transforms`' normalization of a 3xHxW tensor; returns the grey 1xHxW in [0, 1]."""
    mean = torch.tensor(cfg.mean, dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype).view(3, 1, 1)
    return (x * std + mean)[:1].clamp(0.0, 1.0)
