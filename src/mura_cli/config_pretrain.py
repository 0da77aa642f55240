"""``mura pretrain``'s config: self-supervised pretraining of a backbone on unlabeled radiographs.

The views are what makes two radiographs of one patient differ (crop and position, side, a few degrees of
rotation, exposure and noise), never colour. The defaults are SimCLR's usual ones for small batches, not tuned
here; the README's `mura pretrain` section has the one measurement made with them.
"""

from __future__ import annotations

from dataclasses import dataclass

from mura_cli.errors import UsageError
from mura_cli.hardware import PRECISIONS


@dataclass(frozen=True)
class PretrainConfig:
    """``mura pretrain``: which images, which backbone, and SimCLR's settings.

    Attributes:
        data: files, folders (searched recursively) or globs of PNG/JPEG/DICOM radiographs; labels are ignored.
        arch: plain or timm architecture name (the one ``mura train --weights`` will fine-tune).
        size: input side in pixels (``mura train --size`` of the runs that start from these weights).
        epochs: passes over the images.
        batch_size: images per step (two views each: the contrastive loss sees ``2 * batch_size``).
        lr: AdamW learning rate (warm-up over the first epoch, then cosine decay to 1% of it).
        weight_decay: AdamW weight decay.
        temperature: of the contrastive (NT-Xent) loss.
        projection: output width of the projection head (dropped after pretraining).
        crop_scale: smallest share of the image area a view's random resized crop keeps.
        rotation: largest rotation of a view, in degrees.
        gamma: log-gamma range of a view's exposure change (as ``mura train --gamma``).
        contrast: contrast and brightness range of a view (as ``mura train --contrast``).
        noise: Gaussian noise sigma of a view.
        seed: seed of the initialization and the views.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        precision: ``auto`` (bf16 where the device multiplies it natively), ``bf16`` or ``fp32``.
        workers: threads decoding the images (once, before the first epoch).
        limit_batches: stop each epoch after this many steps (smoke tests; 0 = all).
        out: folder that holds the run folder.
        name: run folder name (default ``pretrain-ARCH``).
        exist_ok: replace an existing run folder of that name.
    """

    data: tuple[str, ...] = ()
    arch: str = "densenet169"
    size: int = 320
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    projection: int = 128
    crop_scale: float = 0.3
    rotation: float = 10.0
    gamma: float = 0.3
    contrast: float = 0.3
    noise: float = 0.02
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    workers: int = 2
    limit_batches: int = 0
    out: str = "runs"
    name: str | None = None
    exist_ok: bool = False

    def __post_init__(self) -> None:
        if self.size < 16:
            raise UsageError(f"--size {self.size}: must be at least 16 pixels")
        if self.epochs < 1 or self.batch_size < 2:
            raise UsageError("--epochs must be at least 1 and --batch-size at least 2 (views contrast in a batch)")
        if self.lr <= 0 or self.temperature <= 0 or self.weight_decay < 0:
            raise UsageError("--lr and --temperature must be > 0, --weight-decay >= 0")
        if not 0.05 <= self.crop_scale <= 1:
            raise UsageError(f"--crop-scale {self.crop_scale}: expected 0.05-1")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision}: expected one of {', '.join(PRECISIONS)}")
        if self.workers < 1 or self.limit_batches < 0:
            raise UsageError("--workers must be at least 1 and --limit-batches at least 0")

    @property
    def run_name(self) -> str:
        """The run folder's name."""
        return self.name or f"pretrain-{self.arch.replace('/', '-')}"


__all__ = ["PretrainConfig"]
