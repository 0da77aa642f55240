"""Image transforms as torch tensors: from a reader's HxW float32 [0, 1] array to the network's normalized
3xSxS tensor.

:func:`build_transforms` gives the eval transform of :mod:`mura_cli.data.preprocess` (NumPy and Pillow, which
every engine shares) as a tensor, or the training pipeline: torchvision ``transforms.v2`` for geometry and
augmentation, scikit-image for the contrast tools. Order: resize -> center crop -> contrast/sharpen/blur ->
(train) random resized crop, flips, rotation, random gamma/contrast/noise -> grey to 3 channels -> normalize
with the backbone's mean/std.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import v2

from mura_cli.config import TransformConfig
from mura_cli.data.preprocess import Geometry, contrast, eval_geometry, eval_input, has_contrast

__all__ = ["Geometry", "build_transforms", "denormalize", "eval_geometry"]


class _Contrast:
    """:func:`~mura_cli.data.preprocess.contrast` on channel 0 of a CxHxW tensor; further channels (a box mask)
    pass through."""

    def __init__(self, cfg: TransformConfig) -> None:
        self.cfg = cfg

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.from_numpy(contrast(x[0].numpy(), self.cfg))[None], x[1:]])

    def __repr__(self) -> str:
        c = self.cfg
        return f"Contrast(equalize={c.equalize}, clahe={c.clahe}, sharpen={c.sharpen}, blur_sigma={c.blur_sigma})"


class _Intensity:
    """Random exposure (gamma, contrast, brightness) and Gaussian noise on channel 0 of a CxHxW tensor in [0, 1];
    further channels (a box mask) pass through. Draws from torch's generator, as torchvision's transforms do."""

    def __init__(self, cfg: TransformConfig) -> None:
        self.gamma, self.contrast, self.noise = cfg.gamma, cfg.contrast, cfg.noise

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        img = x[0]
        if self.gamma > 0:
            img = img.clamp(0.0, 1.0) ** float(torch.empty(()).uniform_(-self.gamma, self.gamma).exp())
        if self.contrast > 0:
            c, b = torch.empty(2).uniform_(-self.contrast, self.contrast).tolist()
            img = (img - img.mean()) * (1 + c) + img.mean() + b / 2
        if self.noise > 0:
            img = img + torch.randn_like(img) * self.noise
        return torch.cat([img.clamp(0.0, 1.0)[None], x[1:]])

    def __repr__(self) -> str:
        return f"Intensity(gamma={self.gamma}, contrast={self.contrast}, noise={self.noise})"


def has_intensity(cfg: TransformConfig) -> bool:
    """Whether ``cfg`` asks for random exposure or noise."""
    return bool(cfg.gamma > 0 or cfg.contrast > 0 or cfg.noise > 0)


class _EvalInput:
    """HxW float32 array in [0, 1] -> 3xSxS tensor through :func:`~mura_cli.data.preprocess.eval_input`."""

    def __init__(self, cfg: TransformConfig) -> None:
        self.cfg = cfg

    def __call__(self, pixels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(eval_input(np.asarray(pixels), self.cfg))

    def __repr__(self) -> str:
        return f"EvalInput(size={self.cfg.size}, mode={self.cfg.resize}, crop={self.cfg.center_crop})"


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


def build_transforms(cfg: TransformConfig, train: bool, with_mask: bool = False) -> v2.Compose | _WithMask | _EvalInput:
    """The preprocessing pipeline for training (with augmentation) or evaluation.

    Args:
        cfg: sizes, augmentations and normalization.
        train: add the random augmentations ``cfg`` asks for (crops, flips, rotation, exposure, noise).
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
    if not train and not with_mask:
        return _EvalInput(cfg)
    steps: list = [_ToTensor(), _Resize(cfg)]
    if has_contrast(cfg):
        steps.append(_Contrast(cfg))
    if train:
        if cfg.crop_scale < 1:
            side = cfg.output_size
            steps.append(v2.RandomResizedCrop(side, scale=(cfg.crop_scale, 1.0), ratio=(3 / 4, 4 / 3), antialias=True))
        if cfg.hflip:
            steps.append(v2.RandomHorizontalFlip(0.5))
        if cfg.vflip:
            steps.append(v2.RandomVerticalFlip(0.5))
        if cfg.rotation > 0:
            steps.append(v2.RandomRotation(cfg.rotation, interpolation=v2.InterpolationMode.BILINEAR, fill=0.0))
        if has_intensity(cfg):
            steps.append(_Intensity(cfg))
    finish = [_GreyTo3(), v2.Normalize(mean=list(cfg.mean), std=list(cfg.std))]
    if with_mask:
        return _WithMask(v2.Compose(steps), v2.Compose(finish))
    return v2.Compose(steps + finish)


def denormalize(x: torch.Tensor, cfg: TransformConfig) -> torch.Tensor:
    """Undo :func:`build_transforms`' normalization of a 3xHxW tensor; returns the grey 1xHxW in [0, 1]."""
    mean = torch.tensor(cfg.mean, dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype).view(3, 1, 1)
    return (x * std + mean)[:1].clamp(0.0, 1.0)
