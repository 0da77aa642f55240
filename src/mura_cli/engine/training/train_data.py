"""The data of a training run: which index and rows it reads (:func:`resolve_index`, :func:`select_rows`,
:func:`fold_rows`, :func:`find_cache`; export and benchmark read a run's data through them too), this rank's
loaders, and the paper's loss weights per body part."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mura_cli.config import TrainConfig
from mura_cli.data.dataset import MuraDataset
from mura_cli.data.index import (
    Index,
    IndexRow,
    build_index,
    find_prepared,
    load_index,
    part_from_name,
    patient_folds,
    split_by_patient,
)
from mura_cli.data.transforms import build_transforms
from mura_cli.engine.training.distributed import Dist, shard_loaders
from mura_cli.errors import DataError, UsageError
from mura_cli.models.registry import pretrained_cfg
from mura_cli.utils import default_workers, plural


def resolve_index(data: str) -> tuple[Index, Path | None]:
    """A prepared index for ``data`` (an index folder or a dataset root), or one built now; with its folder."""
    if not data:
        raise UsageError("no data given; pass --data with a `mura prepare` output folder or a dataset root")
    prepared = find_prepared(data)
    if prepared is not None:
        return load_index(prepared), prepared
    return build_index(data), None


def select_part(index: Index, part: str) -> str:
    """Normalize ``--part`` (``XR_ELBOW`` -> ``elbow``) and check the index has it."""
    p = part_from_name(part) or "all"
    if p != "all" and p not in index.parts:
        raise UsageError(f"--part {part}: not in this dataset; it has {', '.join(index.parts)} (or all)")
    return p


def select_rows(index: Index, cfg: TrainConfig) -> tuple[str, list[IndexRow], list[IndexRow]]:
    """The body part ``cfg.part`` names and its train and tune rows.

    Raises:
        UsageError: the index has no such part.
        DataError: a split is empty, or the train split has only one label.
    """
    part = select_part(index, cfg.part)
    if cfg.fold:
        train_rows, tune_rows, _ = fold_rows(index, part, cfg)
    else:
        train_rows, tune_rows = index.select(split="train", part=part), index.select(split="tune", part=part)
    if not train_rows or not tune_rows:
        raise DataError(
            f"{cfg.data}: part {part} has {plural(len(train_rows), 'train image')} and "
            f"{plural(len(tune_rows), 'tune image')}; "
            "both are needed (re-run `mura prepare` with --tune-fraction > 0)"
        )
    if len({r.label for r in train_rows}) < 2:
        raise DataError(f"{cfg.data}: part {part} has only one label in its train split; cannot learn")
    return part, train_rows, tune_rows


def fold_rows(index: Index, part: str, cfg: TrainConfig) -> tuple[list[IndexRow], list[IndexRow], list[IndexRow]]:
    """Fold ``cfg.fold`` of ``cfg.folds`` over the train and tune rows of ``part``: ``(train, tune, held out)``.

    Patients are dealt to folds by :func:`~mura_cli.data.index.patient_folds` (``cfg.folds_by``). The held-out
    fold, and the ``cfg.inner`` fold of a nested run, are never trained on. When the recipe decides something on
    a tune split (:attr:`TrainConfig.needs_tune`), the tune split is 10% of the training folds' patients;
    otherwise the held-out fold is the tune split, watched only.
    """
    rows = [replace(r, split="train") for r in index.rows if r.split in ("train", "tune") and part in ("all", r.part)]
    folds = patient_folds(rows, cfg.folds, cfg.seed, cfg.folds_by)
    held = [r for r in rows if folds[r.patient] == cfg.fold]
    rest = [r for r in rows if folds[r.patient] not in (cfg.fold, cfg.inner)]
    if not cfg.needs_tune:
        return rest, held, held
    split = split_by_patient(rest, tune_fraction=0.1, seed=cfg.seed)
    return [r for r in split if r.split == "train"], [r for r in split if r.split == "tune"], held


def find_cache(index_dir: Path | None, cfg: TrainConfig) -> Path | None:
    """The ``mura prepare --cache`` folder to read from: the smallest one at least the input size that keeps
    the geometry of ``--resize`` (a square cache only serves ``stretch``)."""
    if cfg.cache == "none":
        return None
    if cfg.cache != "auto":
        p = Path(cfg.cache)
        if not p.is_dir():
            raise UsageError(f"--cache {cfg.cache}: no such folder")
        return p
    if index_dir is None:
        return None
    best: tuple[int, Path] | None = None
    for d in (index_dir / "cache").glob("*-*") if (index_dir / "cache").is_dir() else []:
        mode, _, size = d.name.partition("-")
        if not size.isdigit() or int(size) < cfg.transform.size:
            continue
        if mode == "square" and cfg.transform.resize != "stretch":
            continue
        if best is None or int(size) < best[0]:
            best = (int(size), d)
    return best[1] if best else None


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


__all__ = [
    "TrainData",
    "build_data",
    "find_cache",
    "fold_rows",
    "part_weights",
    "resolve_index",
    "select_part",
    "select_rows",
]
