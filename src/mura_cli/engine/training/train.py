"""Fine-tuning with the MURA paper's recipe, on one process or under torchrun (DDP).

:func:`fit` resolves the data (a prepared index, or a dataset root indexed on the fly), builds the model
with its Hub weights, trains with weighted BCE per body part and Adam, drops the learning rate on a tune-loss
plateau, stops early, and leaves a complete run folder (see :mod:`mura_cli.engine.training.run`). Under torchrun only
rank 0 writes (see :mod:`mura_cli.engine.training.distributed`).
"""

from __future__ import annotations

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

from mura_cli._version import __version__
from mura_cli.config import TrainConfig
from mura_cli.engine.evaluation.bf16 import check_after_training
from mura_cli.engine.evaluation.evaluate import autocast_for, predict_loader
from mura_cli.engine.results import EpochResult, TrainResult
from mura_cli.engine.training.distributed import (
    Dist,
    all_gather,
    broadcast,
    init_distributed,
    seed_epoch,
    wrap_model,
)
from mura_cli.engine.training.recipe import Schedule, WeightAverage
from mura_cli.engine.training.run import (
    Progress,
    RunInfo,
    finish_run,
    load_last_state,
    new_run_dir,
    resume_config,
    save_epoch,
    save_train_config,
)
from mura_cli.engine.training.train_data import TrainData, build_data
from mura_cli.errors import UsageError
from mura_cli.hardware import resolve_precision
from mura_cli.metrics import (
    BinaryMetrics,
    aggregate_by_study,
    binary_metrics,
    finite_or_none,
    kappa_threshold,
    roc_auc,
)
from mura_cli.models.checkpoint import CONFIG_NAME, LoadReport, ModelConfig
from mura_cli.models.hub import load_backbone_weights
from mura_cli.models.registry import MuraNet, resolve_arch
from mura_cli.utils import resolve_device, seed_everything


def model_config(
    cfg: TrainConfig, part: str, parts: list[str], metrics: dict[str, Any] | None, threshold: float | None = None
) -> ModelConfig:
    """``config.json`` in the Hub layout: what predict/localize need to rebuild and use the model.

    The threshold is ``cfg.threshold`` when set, else ``threshold``, else 0.5. A single run does not pick it on
    its small tune split (that overfits: on the demo set it cost 0.13 kappa); ``--folds`` picks it out of fold.
    The tune split's kappa-maximising threshold is recorded in ``metrics["tune_threshold"]``.
    """
    t = cfg.transform
    return ModelConfig(
        arch=cfg.arch,
        timm_name=resolve_arch(cfg.arch),
        input_size=(3, t.output_size, t.output_size),
        mean=t.mean,
        std=t.std,
        transform=t,
        dropout=cfg.dropout,
        output_stride=cfg.output_stride,
        part=part,
        parts=tuple(parts),
        threshold=cfg.threshold or threshold or 0.5,
        weights=cfg.weights,
        metrics=metrics or {},
        version=__version__,
    )


def build_model(cfg: TrainConfig, d: Dist, *, pretrained: bool) -> tuple[MuraNet, nn.Module, LoadReport | None]:
    """The network on this rank's device (DDP-wrapped under torchrun), with ``cfg.weights`` for a new run.

    Returns ``(model, the module to train, what loading the weights did)``.
    """
    model = MuraNet(cfg.arch, dropout=cfg.dropout, output_stride=cfg.output_stride)
    report = None
    if pretrained and cfg.weights.lower() != "none":
        if d.main:  # rank 0 downloads; the others then find the file in the cache
            report = load_backbone_weights(model, cfg.weights)
        broadcast(None, d)
        if not d.main:
            report = load_backbone_weights(model, cfg.weights)
    model = model.to(d.device).to(memory_format=_memory_format(cfg))
    return model, wrap_model(model, d), report


def build_optimizer(cfg: TrainConfig, model: nn.Module, steps_per_epoch: int) -> tuple[torch.optim.Optimizer, Schedule]:
    """Adam and the learning-rate schedule (the paper's: reduce on a tune-loss plateau)."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    return opt, Schedule(opt, cfg, steps_per_epoch)


def steps_per_epoch(cfg: TrainConfig, data: TrainData) -> int:
    """Optimizer steps in one epoch on this rank."""
    n = len(data.train_loader)
    return min(n, cfg.limit_batches) if cfg.limit_batches else n


def _memory_format(cfg: TrainConfig) -> torch.memory_format:
    return torch.channels_last if cfg.channels_last else torch.contiguous_format


def _setup(cfg: TrainConfig) -> Dist:
    """Join the torchrun job (if any), seed everything, and switch on deterministic algorithms when asked."""
    d = init_distributed(resolve_device(cfg.device))
    if cfg.box_loss and d.world > 1:
        raise UsageError("--box-loss runs on one process; start it without torchrun")
    seed_everything(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
        if d.device.startswith("cuda"):
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return d


def train_one_epoch(
    net: nn.Module,
    data: TrainData,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    device: str,
    on_batch: Callable[[str, int, int], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> tuple[float, int, list[int]]:
    """One pass over this rank's train loader (at most ``cfg.limit_batches`` batches).

    ``after_step`` runs after every optimizer step (the schedule, the weight average).
    Returns ``(sum of weighted losses, images, dataset indices seen)`` for this rank.
    """
    net.train()
    memory_format = _memory_format(cfg)
    total_loss, total_n, n_batches = 0.0, 0, steps_per_epoch(cfg, data)
    seen: list[int] = []
    for b, batch in enumerate(data.train_loader):
        if b >= n_batches:
            break
        valid = batch["valid"].to(device)
        x = batch["image"].to(device, non_blocking=True, memory_format=memory_format)
        y = batch["label"].to(device)
        w = data.train_w[batch["index"]].to(device) * valid
        seen.extend(int(i) for i in batch["index"])
        with autocast_for(device, cfg.precision):
            if "mask" in batch:
                if not isinstance(net, MuraNet):  # DistributedDataParallel has no forward_with_cam
                    raise UsageError("--box-loss needs a single process: run `mura train` without torchrun")
                logits, cam = net.forward_with_cam(x)
            else:
                logits, cam = net(x), None
        target = y * (1 - cfg.label_smoothing) + cfg.label_smoothing / 2 if cfg.label_smoothing else y
        loss_each = nn.functional.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
        loss = (loss_each * w).sum() / max(int(valid.sum()), 1)
        if cam is not None:
            boxed = batch["has_box"].to(device) & (y > 0.5) & valid.bool()
            loss = loss + cfg.box_loss * box_loss(cam.float(), batch["mask"].to(device), boxed)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if after_step:
            after_step()
        total_loss += float((loss_each.detach() * w).sum())
        total_n += int(valid.sum())
        if on_batch:
            on_batch("train", b + 1, n_batches)
    return total_loss, total_n, seen


def box_loss(cam: torch.Tensor, mask: torch.Tensor, boxed: torch.Tensor) -> torch.Tensor:
    """Mean ``-log`` of the share of each ``boxed`` image's softmax-CAM on cells its boxes touch (0 when none).

    ``cam`` is Bxhxw, ``mask`` Bx1xSxS (1 inside a box); a cell counts as inside when any of its pixels is.
    """
    if not bool(boxed.any()):
        return cam.sum() * 0.0
    inside = nn.functional.adaptive_max_pool2d(mask, cam.shape[-2:]).flatten(1)[boxed]
    p = torch.softmax(cam.flatten(1)[boxed], dim=1)
    return -torch.log((p * inside).sum(1).clamp_min(1e-6)).mean()


@dataclass(frozen=True)
class TuneEval:
    """The tune split after an epoch: weighted BCE over its images, study-level metrics, image-level AUROC."""

    loss: float
    study: BinaryMetrics
    image_auroc: float
    threshold: float = 0.5

    def metrics(self, epoch: int) -> dict[str, Any]:
        """The ``metrics`` stored in the best model's ``config.json``."""
        return {
            "epoch": epoch,
            "tune_threshold": self.threshold,
            "tune_loss": self.loss,
            **{f"tune_study_{k}": finite_or_none(v) for k, v in self.study.to_dict().items() if isinstance(v, float)},
            "tune_image_auroc": finite_or_none(self.image_auroc),
        }


def weighted_bce(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray, eps: float = 1e-7) -> float:
    """Mean of ``weights * BCE(labels, probs)``, probabilities clipped to [eps, 1 - eps]; NaN when empty."""
    if not len(labels):
        return math.nan
    pc = np.clip(probs, eps, 1 - eps)
    bce = -(labels * np.log(pc) + (1 - labels) * np.log(1 - pc))
    return float((bce * weights).mean())


def evaluate_tune(
    model: nn.Module,
    data: TrainData,
    cfg: TrainConfig,
    d: Dist,
    on_batch: Callable[[str, int, int], None] | None = None,
) -> TuneEval:
    """Score the tune split (each rank its shard, gathered on all ranks) with the one inference loop."""
    idx, probs, valid = predict_loader(
        model,
        data.tune_loader,
        device=d.device,
        precision=cfg.precision,
        channels_last=cfg.channels_last,
        on_batch=(lambda done, total: on_batch("tune", done, total)) if on_batch else None,
    )
    shards = all_gather((idx.tolist(), probs.tolist(), valid.tolist()), d)
    all_idx = np.array([i for s in shards for i in s[0]], dtype=int)
    all_p = np.array([v for s in shards for v in s[1]], dtype=np.float64)
    all_v = np.array([v for s in shards for v in s[2]], dtype=bool)
    all_idx, all_p = all_idx[all_v], all_p[all_v]
    labels = np.array([data.tune_rows[i].label for i in all_idx])
    _, s_lab, s_prob = aggregate_by_study([data.tune_rows[i].study for i in all_idx], labels, all_p)
    return TuneEval(
        loss=weighted_bce(labels, all_p, data.tune_w.numpy()[all_idx]),
        study=binary_metrics(s_lab, s_prob, cfg.threshold or 0.5),
        image_auroc=roc_auc(labels, all_p),
        threshold=kappa_threshold(s_lab, s_prob),
    )


def _run_info(cfg: TrainConfig, run: Path, data: TrainData, d: Dist, report: LoadReport | None, start: int) -> RunInfo:
    return RunInfo(
        run=str(run),
        arch=cfg.arch,
        part=data.part,
        device=d.device,
        world_size=d.world,
        train_images=len(data.train_rows),
        tune_images=len(data.tune_rows),
        train_studies=len({r.study for r in data.train_rows}),
        tune_studies=len({r.study for r in data.tune_rows}),
        weights="none (random init)"
        if cfg.weights.lower() == "none"
        else ((report.file or report.source) if report else "resumed"),
        cache=str(data.cache) if data.cache else None,
        loss_weights=data.loss_weights,
        start_epoch=start,
        input=cfg.transform.output_size,
        precision=cfg.precision,
    )


def _epoch_result(
    epoch: int, sums: list[tuple[float, int]], tune: TuneEval, lr: float, seconds: float, best: bool
) -> EpochResult:
    """An epoch's row from the ranks' ``(loss sum, images)`` and the tune pass."""
    return EpochResult(
        epoch=epoch,
        train_loss=sum(s for s, _ in sums) / max(1, sum(k for _, k in sums)),
        tune_loss=tune.loss,
        tune_kappa=tune.study.kappa,
        tune_auroc=tune.study.auroc,
        tune_image_auroc=tune.image_auroc,
        lr=lr,
        seconds=seconds,
        best=best,
    )


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
    """Train a model; see :mod:`mura_cli.engine.training.run` for what the run folder holds.

    Args:
        cfg: the resolved configuration (when resuming, the run's own is used instead).
        resume: a run folder to continue from its last state.
        epochs: with ``resume``, train up to this epoch instead of the run's own ``epochs``.
        changes: with ``resume``, settings that may differ from the run's own (``config.RESUME_SETTINGS``).
        on_epoch: called with each epoch's result (on rank 0).
        on_batch: called as ``on_batch(phase, done, total)`` with phase ``train`` or ``tune`` (on rank 0).
        on_start: called once with a description of the run (paths, counts, device, weights; on rank 0).

    Example:
        >>> fit(TrainConfig(data=".mura/humerus", arch="resnet18", part="humerus", epochs=5))
    """
    t_start = time.perf_counter()
    state = None
    if resume is not None:
        cfg, state = resume_config(Path(resume), {**(changes or {}), **({"epochs": epochs} if epochs else {})})
    d = _setup(cfg)
    cfg = replace(cfg, precision=resolve_precision(cfg.precision, d.device) if cfg.amp else "fp32")
    cfg, data = build_data(cfg, d, resumed=state is not None)
    model, net, report = build_model(cfg, d, pretrained=state is None)
    optimizer, scheduler = build_optimizer(cfg, model, steps_per_epoch(cfg, data))
    average = WeightAverage(model, cfg.ema) if cfg.ema else None
    scored = average.model if average else model  # what is evaluated and saved
    averaged = average.model if average else None

    def after_step() -> None:
        scheduler.step()
        if average:
            average.update(model)

    if state is not None:
        run = Path(str(resume))
        progress = load_last_state(run, state, model, optimizer, scheduler, scored if average else None)
        if average:
            average.updates = scheduler.steps  # one average update per optimizer step
    else:
        run, progress = Path(broadcast(str(new_run_dir(cfg, data.part)) if d.main else None, d)), Progress()
    if d.main:
        save_train_config(run, cfg)
    start = progress.epoch + 1
    info = _run_info(cfg, run, data, d, report, start)
    hook = on_batch if d.main else None
    if on_start and d.main:
        on_start(info.to_dict())

    seen: list[list[int]] = []
    stopped_early = False
    for epoch in range(start, cfg.epochs + 1):
        t0 = time.perf_counter()
        seed_epoch(data.train_loader, epoch, cfg.seed)
        lr = optimizer.param_groups[0]["lr"]
        loss_sum, n, epoch_seen = train_one_epoch(net, data, optimizer, cfg, d.device, hook, after_step)
        if epoch == start:
            seen = all_gather(sorted(epoch_seen), d)
        sums = all_gather((loss_sum, n), d)
        tune = evaluate_tune(scored, data, cfg, d, hook)
        scheduler.epoch_end(tune.loss)
        best = progress.improves(tune.loss) if cfg.keep == "best" else True
        result = _epoch_result(epoch, sums, tune, lr, time.perf_counter() - t0, best)
        progress = progress.record(result)
        if d.main:
            kept = model_config(cfg, data.part, data.parts, tune.metrics(epoch)) if best else None
            save_epoch(run, model, optimizer, scheduler, progress, arch=cfg.arch, best=kept, average=averaged)
            if on_epoch:
                on_epoch(result)
        if cfg.early_stop and progress.bad_epochs >= cfg.early_stop:
            stopped_early = True
            break

    seconds = time.perf_counter() - t_start
    if d.main:
        saved = run / CONFIG_NAME
        model_cfg = ModelConfig.from_json(saved) if saved.is_file() else model_config(cfg, data.part, data.parts, None)
        finish_run(run, cfg, model_cfg, info, progress, stopped_early=stopped_early, seconds=seconds, seen=seen)
        check_after_training(run, d.device)  # bf16_check.json, for --engine auto on CPUs with native bf16
    return TrainResult(
        run_dir=run,
        epochs=progress.history,
        best_epoch=progress.best_epoch,
        stopped_early=stopped_early,
        seconds=seconds,
        world_size=d.world,
    )
