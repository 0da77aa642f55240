"""Fine-tuning with the MURA paper's recipe, on one process or under torchrun (DDP).

:func:`fit` resolves the data (a prepared index, or a dataset root indexed on the fly), builds the model
with its Hub weights, trains with weighted BCE per body part and Adam, drops the learning rate on a tune-loss
plateau, stops early, and leaves a complete run folder:

``train_config.json`` (resolved config), ``model.safetensors`` + ``config.json`` (best, Hub layout),
``README.md`` (model card), ``last.safetensors`` + ``last_optimizer.safetensors`` + ``last_state.json``
(resumable), ``metrics.csv``, ``curves.png`` and ``summary.json``. Under torchrun only rank 0 writes.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from mura_cli import __version__
from mura_cli.config import RESUME_SETTINGS, TrainConfig, from_dict, to_dict
from mura_cli.data.dataset import MuraDataset
from mura_cli.data.index import Index, IndexRow, build_index, find_prepared, load_index, part_from_name
from mura_cli.data.transforms import build_transforms
from mura_cli.engine.evaluate import autocast_for, predict_loader
from mura_cli.engine.results import EpochResult, TrainResult
from mura_cli.errors import DataError, UsageError
from mura_cli.metrics import aggregate_by_study, binary_metrics, finite_or_none, roc_auc
from mura_cli.models.hub import load_backbone_weights, save_pretrained
from mura_cli.models.registry import MuraNet, pretrained_cfg, resolve_arch
from mura_cli.utils import default_workers, plural, resolve_device, seed_everything

log = logging.getLogger(__name__)
TRAIN_CONFIG = "train_config.json"
LAST_WEIGHTS, LAST_OPTIM, LAST_STATE = "last.safetensors", "last_optimizer.safetensors", "last_state.json"
METRICS = "metrics.csv"


# ============================================================================================ distributed


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Join the process group torchrun set up (``WORLD_SIZE`` > 1): NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", 0)))


def _all_gather(obj: Any, d: Dist) -> list[Any]:
    if d.world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def _broadcast(obj: Any, d: Dist) -> Any:
    if d.world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ============================================================================================ data


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


def find_cache(index_dir: Path | None, cfg: TrainConfig) -> Path | None:
    """The ``mura prepare --cache`` folder to read from: the smallest one at least the input size that keeps
    the geometry of ``--resize`` (a square cache only serves ``stretch``)."""
    if cfg.cache == "none" or (index_dir is None and cfg.cache == "auto"):
        return None
    if cfg.cache != "auto":
        p = Path(cfg.cache)
        if not p.is_dir():
            raise UsageError(f"--cache {cfg.cache}: no such folder")
        return p
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


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random

    random.seed(seed)


# ============================================================================================ run folder


def new_run_dir(cfg: TrainConfig, part: str) -> Path:
    """``<out>/<name>``: a new folder; a default name is numbered when taken, an explicit one is an error."""
    base = Path(cfg.out)
    if cfg.name:
        run = base / cfg.name
        if run.exists() and any(run.iterdir()) and not cfg.exist_ok:
            raise UsageError(
                f"{run}: a run of that name exists; pick another --name, --resume it, or --exist-ok to overwrite it"
            )
        return run
    stem = f"{cfg.arch.replace('/', '_')}-{part}"
    run, n = base / stem, 2
    while run.exists():
        run, n = base / f"{stem}{n}", n + 1
    return run


def _save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> dict[str, Any]:
    """Optimizer tensors to safetensors; returns the JSON-able rest (param groups, which keys are tensors)."""
    from safetensors.torch import save_file

    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{k}"] = v
    save_file(tensors, str(path))
    return {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(optimizer: torch.optim.Optimizer, path: Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    state: dict[int, dict[str, Any]] = {}
    for key, v in load_file(str(path)).items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for key, v in meta.get("scalars", {}).items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def model_config(cfg: TrainConfig, part: str, parts: list[str], metrics: dict[str, Any] | None) -> dict[str, Any]:
    """``config.json`` in the Hub layout: what predict/localize need to rebuild and use the model."""
    t = cfg.transform
    return {
        "arch": cfg.arch,
        "timm_name": resolve_arch(cfg.arch),
        "num_classes": 1,
        "label_names": ["normal", "abnormal"],
        "input_size": [3, t.output_size, t.output_size],
        "mean": list(t.mean),
        "std": list(t.std),
        "transform": to_dict(t),
        "dropout": cfg.dropout,
        "part": part,
        "parts": parts,
        "threshold": cfg.threshold,
        "weights": cfg.weights,
        "metrics": metrics or {},
        "library": "mura-cli",
        "version": __version__,
    }


def _write_metrics_csv(run: Path, epochs: list[EpochResult]) -> None:
    with open(run / METRICS, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(epochs[0].to_row()), lineterminator="\n")
        w.writeheader()
        for e in epochs:
            w.writerow(e.to_row())


# ============================================================================================ fit


def fit(
    cfg: TrainConfig,
    *,
    resume: str | Path | None = None,
    epochs: int | None = None,
    changes: dict[str, Any] | None = None,
    on_epoch: Callable[[EpochResult], None] | None = None,
    on_batch: Callable[[str, int, int], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a model; see the module docstring for what the run folder holds.

    Args:
        cfg: the resolved configuration (when resuming, the run's own is used instead).
        resume: a run folder to continue from its last state.
        epochs: with ``resume``, train up to this epoch instead of the run's own ``epochs``.
        changes: with ``resume``, settings that may differ from the run's own (``config.RESUME_SETTINGS``).
        on_epoch: called with each epoch's result (rank 0 and others alike).
        on_batch: called as ``on_batch(phase, done, total)`` with phase ``train`` or ``tune``.
        on_start: called once with a description of the run (paths, counts, device, weights).

    Example:
        >>> fit(TrainConfig(data=".mura/humerus", arch="resnet18", part="humerus", epochs=5))
    """
    t_start = time.perf_counter()
    run: Path | None = None
    state: dict[str, Any] = {}
    if resume is not None:
        run = Path(resume)
        try:
            saved = json.loads((run / TRAIN_CONFIG).read_text())
            state = json.loads((run / LAST_STATE).read_text())
        except (OSError, json.JSONDecodeError):
            raise UsageError(f"{run}: not a resumable run (needs {TRAIN_CONFIG} and {LAST_STATE})") from None
        changes = {**(changes or {}), **({"epochs": epochs} if epochs else {})}
        refused = sorted(set(changes) - set(RESUME_SETTINGS))
        if refused:
            raise UsageError(f"{run}: {', '.join(refused)} cannot change on resume; only {', '.join(RESUME_SETTINGS)}")
        cfg = replace(from_dict(TrainConfig, saved), **changes)

    device = resolve_device(cfg.device)
    d = init_distributed(device)
    if d.world > 1 and device.startswith("cuda"):
        device = f"cuda:{d.local_rank}"
        torch.cuda.set_device(device)
    seed_everything(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        if device.startswith("cuda"):
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    index, index_dir = resolve_index(cfg.data)
    part = select_part(index, cfg.part)
    train_rows = index.select(split="train", part=part)
    tune_rows = index.select(split="tune", part=part)
    if not train_rows or not tune_rows:
        raise DataError(
            f"{cfg.data}: part {part} has {plural(len(train_rows), 'train image')} and "
            f"{plural(len(tune_rows), 'tune image')}; "
            "both are needed (re-run `mura prepare` with --tune-fraction > 0)"
        )
    if len({r.label for r in train_rows}) < 2:
        raise DataError(f"{cfg.data}: part {part} has only one label in its train split; cannot learn")

    pcfg = pretrained_cfg(cfg.arch)
    if resume is None:
        tcfg = replace(cfg.transform, mean=tuple(pcfg["mean"]), std=tuple(pcfg["std"]))
        cfg = replace(cfg, transform=tcfg)
    cache = find_cache(index_dir, cfg)
    train_ds = MuraDataset(train_rows, index.root, build_transforms(cfg.transform, train=True), cache)
    tune_ds = MuraDataset(tune_rows, index.root, build_transforms(cfg.transform, train=False), cache)
    weights = part_weights(train_rows, cfg.weighted_loss)
    train_w, tune_w = _sample_weights(train_rows, weights), _sample_weights(tune_rows, weights)

    workers = cfg.workers if cfg.workers >= 0 else min(8, default_workers())
    if cfg.deterministic and not device.startswith("cuda"):
        workers = 0
    gen = torch.Generator().manual_seed(cfg.seed)
    if d.world > 1:
        sampler: Any = DistributedSampler(
            train_ds, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed, drop_last=True
        )
    else:
        sampler = RandomSampler(train_ds, generator=gen)
    pin = device.startswith("cuda")
    loader_kw: dict[str, Any] = {"num_workers": workers, "pin_memory": pin, "worker_init_fn": _seed_worker}
    if workers > 0:
        loader_kw["persistent_workers"] = True
    train_loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler, drop_last=False, **loader_kw)
    shard = list(range(d.rank, len(tune_ds), d.world))
    tune_loader = DataLoader(
        torch.utils.data.Subset(tune_ds, shard), batch_size=cfg.batch_size * 2, shuffle=False, **loader_kw
    )

    model = MuraNet(cfg.arch, dropout=cfg.dropout)
    load_report = None
    if resume is None and cfg.weights.lower() != "none":
        if d.main:  # rank 0 downloads; the others then find the file in the cache
            load_report = load_backbone_weights(model, cfg.weights)
        _broadcast(None, d)
        if not d.main:
            load_report = load_backbone_weights(model, cfg.weights)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    net: nn.Module = model
    if d.world > 1:
        # find_unused_parameters: some timm backbones keep head modules our pool+linear head never calls
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[d.local_rank] if device.startswith("cuda") else None, find_unused_parameters=True
        )
    optimizer = torch.optim.Adam(
        model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience
    )

    history: list[EpochResult] = []
    start_epoch, best_loss, bad_epochs, best_epoch = 1, math.inf, 0, 0
    if resume is not None:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(run / LAST_WEIGHTS)))
        _load_optimizer(optimizer, run / LAST_OPTIM, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"]) + 1
        best_loss, bad_epochs, best_epoch = (
            float(state["best_loss"]),
            int(state["bad_epochs"]),
            int(state["best_epoch"]),
        )
        history = [EpochResult(**e) for e in state["history"]]
    else:
        run = new_run_dir(cfg, part) if d.main else None
        run = Path(_broadcast(str(run) if run else None, d))
    assert run is not None
    if d.main:
        run.mkdir(parents=True, exist_ok=True)
        (run / TRAIN_CONFIG).write_text(json.dumps(to_dict(cfg), indent=2) + "\n")

    info = {
        "run": str(run),
        "arch": cfg.arch,
        "part": part,
        "device": device,
        "world_size": d.world,
        "train_images": len(train_ds),
        "tune_images": len(tune_ds),
        "train_studies": len({r.study for r in train_rows}),
        "tune_studies": len({r.study for r in tune_rows}),
        "weights": "none (random init)"
        if cfg.weights.lower() == "none"
        else (load_report.file if load_report else "resumed"),
        "cache": str(cache) if cache else None,
        "loss_weights": weights,
        "start_epoch": start_epoch,
        "input": cfg.transform.output_size,
    }
    if on_start and d.main:
        on_start(info)

    seen: list[list[int]] = []
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed + epoch)
        gen.manual_seed(cfg.seed + epoch)
        if d.world > 1:
            sampler.set_epoch(epoch)
        net.train()
        total_loss, total_n, n_batches = 0.0, 0, len(train_loader)
        if cfg.limit_batches:
            n_batches = min(n_batches, cfg.limit_batches)
        epoch_seen: list[int] = []
        for b, batch in enumerate(train_loader):
            if b >= n_batches:
                break
            valid = batch["valid"].to(device)
            x = batch["image"].to(device, non_blocking=True, memory_format=memory_format)
            y = batch["label"].to(device)
            w = train_w[batch["index"]].to(device) * valid
            epoch_seen.extend(int(i) for i in batch["index"])
            with autocast_for(device, cfg.amp):
                logits = net(x)
            loss_each = nn.functional.binary_cross_entropy_with_logits(logits.float(), y, reduction="none")
            loss = (loss_each * w).sum() / max(int(valid.sum()), 1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float((loss_each.detach() * w).sum())
            total_n += int(valid.sum())
            if on_batch and d.main:
                on_batch("train", b + 1, n_batches)
        if epoch == start_epoch:
            seen = _all_gather(sorted(epoch_seen), d)
        sums = _all_gather((total_loss, total_n), d)
        train_loss = sum(s for s, _ in sums) / max(1, sum(n for _, n in sums))

        idx, probs, valid_mask = predict_loader(
            model,
            tune_loader,
            device=device,
            amp=cfg.amp,
            channels_last=cfg.channels_last,
            on_batch=(lambda done, total: on_batch("tune", done, total)) if on_batch and d.main else None,
        )
        parts = _all_gather((idx.tolist(), probs.tolist(), valid_mask.tolist()), d)
        all_idx = np.array([i for p in parts for i in p[0]], dtype=int)
        all_p = np.array([v for p in parts for v in p[1]], dtype=np.float64)
        all_v = np.array([v for p in parts for v in p[2]], dtype=bool)
        all_idx, all_p = all_idx[all_v], all_p[all_v]
        labels = np.array([tune_rows[i].label for i in all_idx])
        eps = 1e-7
        pc = np.clip(all_p, eps, 1 - eps)
        bce = -(labels * np.log(pc) + (1 - labels) * np.log(1 - pc))
        tune_loss = float((bce * tune_w.numpy()[all_idx]).mean()) if len(all_idx) else math.nan
        _, s_lab, s_prob = aggregate_by_study([tune_rows[i].study for i in all_idx], labels, all_p)
        sm = binary_metrics(s_lab, s_prob, cfg.threshold)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step(tune_loss)

        improved = tune_loss < best_loss
        if improved:
            best_loss, best_epoch, bad_epochs = tune_loss, epoch, 0
        else:
            bad_epochs += 1
        result = EpochResult(
            epoch=epoch,
            train_loss=train_loss,
            tune_loss=tune_loss,
            tune_kappa=sm.kappa,
            tune_auroc=sm.auroc,
            tune_image_auroc=roc_auc(labels, all_p),
            lr=lr,
            seconds=time.perf_counter() - t0,
            best=improved,
        )
        history.append(result)
        if d.main:
            metrics = {
                "epoch": epoch,
                "tune_loss": tune_loss,
                **{f"tune_study_{k}": finite_or_none(v) for k, v in sm.to_dict().items() if isinstance(v, float)},
                "tune_image_auroc": finite_or_none(result.tune_image_auroc),
            }
            if improved:
                save_pretrained(model, run, model_config(cfg, part, sorted({r.part for r in train_rows}), metrics))
            save_pretrained(model, run, {"arch": cfg.arch}, filename=LAST_WEIGHTS)
            opt_meta = _save_optimizer(optimizer, run / LAST_OPTIM)
            last = {
                "epoch": epoch,
                "best_loss": best_loss,
                "best_epoch": best_epoch,
                "bad_epochs": bad_epochs,
                "scheduler": scheduler.state_dict(),
                "optimizer": opt_meta,
                "history": [e.to_row() for e in history],
            }
            (run / LAST_STATE).write_text(json.dumps(last, indent=1, default=float) + "\n")
            _write_metrics_csv(run, history)
            from mura_cli.report.plots import save_training_curves

            save_training_curves(history, run / "curves.png")
        if on_epoch and d.main:
            on_epoch(result)
        if cfg.early_stop and bad_epochs >= cfg.early_stop:
            stopped_early = True
            break

    seconds = time.perf_counter() - t_start
    if d.main:
        from mura_cli.report.card import write_model_card

        overlap = len(set(seen[0]).intersection(*map(set, seen[1:]))) if len(seen) > 1 else 0
        summary = {
            **info,
            "best_epoch": best_epoch,
            "stopped_early": stopped_early,
            "seconds": round(seconds, 2),
            "samples_per_rank": [len(s) for s in seen],
            "rank_overlap": overlap,
            "best": next((e.to_row() for e in history if e.epoch == best_epoch), None),
            "version": __version__,
        }
        (run / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        write_model_card(run, cfg, part, history, best_epoch, info)
    return TrainResult(
        run_dir=run,
        epochs=tuple(history),
        best_epoch=best_epoch,
        stopped_early=stopped_early,
        seconds=seconds,
        world_size=d.world,
    )
