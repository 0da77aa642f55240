"""``mura pretrain``: self-supervised pretraining of a backbone on unlabeled radiographs (SimCLR).

Every image ``mura`` can read (PNG/JPEG/TIFF/BMP and DICOM, in files, folders or globs) is decoded once, resized
as ``mura train --size`` resizes it, and kept in memory as 8-bit grey. Each step draws two random views of every
image in a batch (:func:`view_transform`: the training augmentation, stronger) and teaches the backbone, through
a small projection head, to tell each view's twin from the other ``2B - 2`` views (:func:`nt_xent`, Chen et al.
2020). Labels are never read. The backbone alone is saved, under timm's names, in a folder that
``mura train --weights FOLDER`` (and, after ``mura push``, ``--weights hf-hub:org/name``) loads like ImageNet
weights.

Why SimCLR: it works for any backbone (MAE-style masking needs a vision transformer), it keeps one copy of the
weights (MoCo, BYOL and DINO add a momentum encoder and its forward pass on every step), and
with a low temperature it trains from batches of about a hundred.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mura_cli import __version__
from mura_cli.config import TrainConfig, TransformConfig, to_dict
from mura_cli.config_pretrain import PretrainConfig
from mura_cli.data.inputs import scan_inputs
from mura_cli.data.preprocess import resize_crop
from mura_cli.data.readers import read_image
from mura_cli.data.transforms import build_transforms
from mura_cli.engine.evaluation.evaluate import autocast_for
from mura_cli.engine.training.recipe import Schedule
from mura_cli.errors import DataError, MuraError, UsageError
from mura_cli.hardware import cpu_info, resolve_precision
from mura_cli.models.checkpoint import save_weights
from mura_cli.models.registry import MuraNet, pretrained_cfg
from mura_cli.models.run_folder import (
    BACKBONE_KIND,
    CARD,
    CONFIG_NAME,
    METRICS,
    PRETRAIN_CONFIG,
    SUMMARY,
    WEIGHTS_NAME,
)
from mura_cli.utils import resolve_device, seed_everything, short_error, write_csv, write_json, write_text

METHOD = "simclr"


@dataclass(frozen=True)
class PretrainEpoch:
    """One epoch: mean contrastive loss, learning rate at its end, and seconds."""

    epoch: int
    loss: float
    lr: float
    seconds: float


@dataclass(frozen=True)
class PretrainResult:
    """What ``mura pretrain`` did: the folder it wrote, the images it learned from, and the epochs."""

    folder: Path
    images: int
    failed: tuple[tuple[str, str], ...]
    skipped: int
    epochs: tuple[PretrainEpoch, ...]
    seconds: float
    decode_seconds: float
    device: str
    precision: str


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: row ``i`` of ``z1`` should be most similar (cosine) to row ``i`` of ``z2`` among the
    ``2B - 1`` other rows of both, and the other way round; the mean cross-entropy over all ``2B`` rows."""
    z = nn.functional.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return nn.functional.cross_entropy(sim, target)


def view_transform(cfg: PretrainConfig) -> Callable[[np.ndarray], torch.Tensor]:
    """SxS float32 grey in [0, 1] -> one random view, the backbone's normalized 3xSxS input."""
    p = pretrained_cfg(cfg.arch)
    tcfg = TransformConfig(
        size=cfg.size,
        crop_scale=cfg.crop_scale,
        hflip=True,
        rotation=cfg.rotation,
        gamma=cfg.gamma,
        contrast=cfg.contrast,
        noise=cfg.noise,
        mean=tuple(p["mean"]),
        std=tuple(p["std"]),
    )
    return build_transforms(tcfg, train=True)  # type: ignore[return-value]


def load_radiographs(
    paths: Sequence[str], size: int, workers: int, on_image: Callable[[int, int], None] | None = None
) -> tuple[np.ndarray, tuple[tuple[str, str], ...], int]:
    """Decode every image under ``paths`` once, resized to ``size`` x ``size`` as training resizes it.

    Returns ``(N x size x size uint8, (file, reason) of each image that could not be read, non-images skipped)``.

    Raises:
        DataError: a path does not exist, or fewer than two images could be read.
    """
    scan = scan_inputs(paths)
    failed = [(str(i.path), i.reason) for i in scan.failed]
    tcfg = TransformConfig(size=size)

    def decode(f: Path) -> np.ndarray | str:
        try:
            grey = resize_crop(read_image(f).pixels, tcfg)
        except MuraError as exc:
            return str(exc).removeprefix(f"{f}: ")
        except (OSError, ValueError, MemoryError) as exc:
            return short_error(exc)
        return np.round(grey * 255).astype(np.uint8)

    kept: list[np.ndarray] = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, (f, out) in enumerate(zip(scan.images, pool.map(decode, scan.images), strict=True)):
            if isinstance(out, str):
                failed.append((str(f), out))
            else:
                kept.append(out)
            if on_image:
                on_image(i + 1, len(scan.images))
    if len(kept) < 2:
        where = ", ".join(map(str, paths))
        raise DataError(f"{where}: {len(kept)} readable radiograph(s); pretraining needs at least two")
    return np.stack(kept), tuple(failed), len(scan.skipped)


class _Contrastive(nn.Module):
    """The backbone, global average pooling and SimCLR's projection head (dropped after pretraining)."""

    def __init__(self, arch: str, projection: int) -> None:
        super().__init__()
        self.net = MuraNet(arch)
        width = self.net.num_features
        self.head = nn.Sequential(
            nn.Linear(width, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Linear(512, projection)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net.forward_features(x).float().mean(dim=(2, 3)))


def pretrain(
    cfg: PretrainConfig,
    *,
    on_image: Callable[[int, int], None] | None = None,
    on_start: Callable[[dict], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[PretrainEpoch], None] | None = None,
) -> PretrainResult:
    """Pretrain ``cfg.arch`` on the radiographs under ``cfg.data``; write ``cfg.out/cfg.run_name``.

    Raises:
        UsageError: no data given, or the run folder exists (without ``exist_ok``).
        DataError: fewer than two readable images.
    """
    if not cfg.data:
        raise UsageError("mura pretrain: no radiographs given; pass folders or files: mura pretrain --data FOLDER")
    folder = Path(cfg.out) / cfg.run_name
    if folder.exists() and not cfg.exist_ok:
        raise UsageError(f"{folder}: exists; pass --name for another run folder, or --exist-ok to replace it")
    t0 = time.perf_counter()
    images, failed, skipped = load_radiographs(cfg.data, cfg.size, cfg.workers, on_image)
    decode_s = time.perf_counter() - t0
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    model = _Contrastive(cfg.arch, cfg.projection).to(device).to(memory_format=torch.channels_last)
    batch = min(cfg.batch_size, len(images))
    steps = len(images) // batch
    steps = min(steps, cfg.limit_batches) if cfg.limit_batches else steps
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = Schedule(opt, TrainConfig(epochs=cfg.epochs, lr=cfg.lr, lr_min=cfg.lr / 100, schedule="cosine"), steps)
    view = view_transform(cfg)
    if on_start:
        on_start({"run": str(folder), "arch": cfg.arch, "images": len(images), "failed": len(failed),
                  "size": cfg.size, "batch": batch, "steps": steps, "device": device, "precision": precision,
                  "decode_seconds": decode_s})  # fmt: skip
    history: list[PretrainEpoch] = []
    for epoch in range(1, cfg.epochs + 1):
        te, total = time.perf_counter(), 0.0
        model.train()
        order = torch.randperm(len(images))
        for s in range(steps):
            grey = images[order[s * batch : (s + 1) * batch].numpy()].astype(np.float32) / 255
            x = torch.stack([view(g) for g in grey] + [view(g) for g in grey]).to(device)
            with autocast_for(device, precision):
                z = model(x.contiguous(memory_format=torch.channels_last))
            loss = nt_xent(z[: len(grey)], z[len(grey) :], cfg.temperature)
            if not torch.isfinite(loss):
                raise MuraError(f"pretraining diverged at epoch {epoch} (loss {float(loss)}); lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
            if on_step:
                on_step(s + 1, steps)
        e = PretrainEpoch(epoch, total / max(steps, 1), opt.param_groups[0]["lr"], time.perf_counter() - te)
        history.append(e)
        if on_epoch:
            on_epoch(e)
    result = PretrainResult(
        folder, len(images), failed, skipped, tuple(history), time.perf_counter() - t0, decode_s, device, precision
    )
    _write_folder(folder, model.net, cfg, result)
    return result


def _write_folder(folder: Path, net: MuraNet, cfg: PretrainConfig, result: PretrainResult) -> None:
    """The backbone (timm's names), its config, the loss per epoch, a card, and last the summary."""
    if folder.exists():
        shutil.rmtree(folder)  # --exist-ok: the old run is replaced whole, never mixed with this one
    folder.mkdir(parents=True)
    write_json(folder / PRETRAIN_CONFIG, to_dict(cfg))
    save_weights(net.backbone, folder / WEIGHTS_NAME, arch=cfg.arch)
    p = pretrained_cfg(cfg.arch)
    config = {
        "arch": cfg.arch,
        "timm_name": net.timm_name,
        "kind": BACKBONE_KIND,
        "method": METHOD,
        "input_size": [3, cfg.size, cfg.size],
        "mean": list(p["mean"]),
        "std": list(p["std"]),
        "library": "mura-cli",
        "version": __version__,
    }
    write_json(folder / CONFIG_NAME, config)
    write_csv(folder / METRICS, [{"epoch": e.epoch, "loss": round(e.loss, 5), "lr": e.lr,
                                  "seconds": round(e.seconds, 1)} for e in result.epochs])  # fmt: skip
    write_text(folder / CARD, _card(cfg, result, net.timm_name))
    summary = {
        "kind": BACKBONE_KIND,
        "method": METHOD,
        "images": result.images,
        "failed": len(result.failed),
        "epochs": len(result.epochs),
        "final_loss": round(result.epochs[-1].loss, 5),
        "seconds": round(result.seconds, 1),
        "device": result.device,
        "cpu": cpu_info().model if result.device == "cpu" else None,
        "precision": result.precision,
    }
    write_json(folder / SUMMARY, summary)


def _card(cfg: PretrainConfig, result: PretrainResult, timm_name: str) -> str:
    first, last = result.epochs[0].loss, result.epochs[-1].loss
    sources = "\n".join(f"- `{d}`" for d in cfg.data)
    return f"""---
library_name: timm
tags: [mura-cli, radiology, self-supervised, {METHOD}]
---
# {cfg.run_name}: a {cfg.arch} backbone pretrained on radiographs ({METHOD.upper()}, no labels)

Self-supervised pretraining with `mura pretrain` (mura-cli {__version__}) on {result.images} radiographs, at
{cfg.size} px, {len(result.epochs)} epochs of batch {cfg.batch_size} (two views each; NT-Xent, temperature
{cfg.temperature}), {result.seconds / 60:.1f} min on {result.device} ({result.precision}). Contrastive loss
{first:.3f} in the first epoch, {last:.3f} in the last. No label was read.

Images from:
{sources}

This is a backbone (timm `{timm_name}` names), not an abnormality model: fine-tune it with
`mura train --weights FOLDER --arch {cfg.arch} --size {cfg.size}` (or `--weights hf-hub:ORG/NAME` once pushed).
Whether it beats random initialization or ImageNet weights on your data is for nested cross-validation to say
(`mura train --folds 5 --nested`).
"""


__all__ = ["METHOD", "PretrainEpoch", "PretrainResult", "load_radiographs", "nt_xent", "pretrain", "view_transform"]
