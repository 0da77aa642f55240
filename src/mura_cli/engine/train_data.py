"""The data of a training run: its rows, this rank's loaders, and the paper's loss weights per body part."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mura_cli.config import TrainConfig
from mura_cli.data.dataset import MuraDataset
from mura_cli.data.index import IndexRow
from mura_cli.data.transforms import build_transforms
from mura_cli.engine.distributed import Dist, shard_loaders
from mura_cli.engine.run import find_cache, resolve_index, select_rows
from mura_cli.models.registry import pretrained_cfg
from mura_cli.utils import default_workers


def part_weights(rows: list[IndexRow], weighted: bool) -> dict[str, tuple[float, float]]:
    """The paper's weighted BCE: for each part, ``(w_normal, w_abnormal) = (A/(A+N), N/(A+N))``."""
    out: dict[str, tuple[float, float]] = {}
    for part in sorted({r.part for r in rows}):
        a = sum(1 for r in rows if r.part == part and r.label == 1)
        n = sum(1 for r in rows if r.part == part and r.label == 0)
        out[part] = (a / (a + n), n / (a + n)) if weighted and a and n else (0.5, 0.5)
    return out


def _sample_weights(rows: list[IndexRow], weights: dict[str, tuple[float, float]]) -> torch.Tensor:
    return torch.tensor([weights.get(r.part, (0.5, 0.5))[r.label] for r in rows], dtype=torch.float32)


@dataclass(frozen=True)
class TrainData:
    """The rows, this rank's loaders and the loss weights of one training run."""

    part: str
    train_rows: list[IndexRow]
    tune_rows: list[IndexRow]
    train_loader: DataLoader
    tune_loader: DataLoader
    loss_weights: dict[str, tuple[float, float]]
    train_w: torch.Tensor
    tune_w: torch.Tensor
    cache: Path | None

    @property
    def parts(self) -> list[str]:
        """The body parts in the train split."""
        return sorted({r.part for r in self.train_rows})


def build_data(cfg: TrainConfig, d: Dist, *, resumed: bool) -> tuple[TrainConfig, TrainData]:
    """Select the rows, take the backbone's mean/std (new runs only), and build this rank's loaders."""
    index, index_dir = resolve_index(cfg.data)
    part, train_rows, tune_rows = select_rows(index, cfg)
    if not resumed:
        pcfg = pretrained_cfg(cfg.arch)
        cfg = replace(cfg, transform=replace(cfg.transform, mean=tuple(pcfg["mean"]), std=tuple(pcfg["std"])))
    cache = find_cache(index_dir, cfg)
    masks = cfg.box_loss > 0
    train_tf = build_transforms(cfg.transform, train=True, with_mask=masks)
    train_ds = MuraDataset(train_rows, index.root, train_tf, cache, masks=masks)
    tune_ds = MuraDataset(tune_rows, index.root, build_transforms(cfg.transform, train=False), cache)
    workers = cfg.workers if cfg.workers >= 0 else min(8, default_workers())
    if cfg.deterministic and not d.device.startswith("cuda"):
        workers = 0
    train_loader, tune_loader = shard_loaders(
        train_ds, tune_ds, d, batch_size=cfg.batch_size, workers=workers, seed=cfg.seed
    )
    w = part_weights(train_rows, cfg.weighted_loss)
    train_w, tune_w = _sample_weights(train_rows, w), _sample_weights(tune_rows, w)
    return cfg, TrainData(part, train_rows, tune_rows, train_loader, tune_loader, w, train_w, tune_w, cache)


__all__ = ["TrainData", "build_data", "part_weights"]
