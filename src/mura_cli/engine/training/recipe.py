"""The learning-rate schedule and the weight average of a training run, with state for ``--resume``.

:class:`Schedule` is the paper's reduce-on-plateau rule (with a floor) or a per-step linear warm-up and cosine
decay; :class:`WeightAverage` keeps an exponential moving average of the weights (batch-norm statistics
included), which is what gets evaluated and saved when ``--ema`` is on.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from mura_cli.config import TrainConfig


class Schedule:
    """The learning rate of ``optimizer`` over a run of ``steps_per_epoch * cfg.epochs`` steps.

    Call :meth:`step` after every optimizer step and :meth:`epoch_end` with the tune loss after every epoch.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> None:
        self.optimizer = optimizer
        self.kind = cfg.schedule
        self.base_lr, self.lr_min = cfg.lr, min(cfg.lr_min, cfg.lr)
        self.warmup_steps = cfg.warmup * steps_per_epoch
        self.total_steps = max(1, cfg.epochs * steps_per_epoch)
        self.steps = 0
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=cfg.lr_factor, patience=cfg.lr_patience, min_lr=self.lr_min
        )
        if self.kind == "cosine":
            self._set(self.lr_at(0))

    def lr_at(self, step: int) -> float:
        """The cosine schedule's learning rate before optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.lr_min + 0.5 * (self.base_lr - self.lr_min) * (1 + math.cos(math.pi * t))

    def _set(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self) -> None:
        """After an optimizer step."""
        self.steps += 1
        if self.kind == "cosine":
            self._set(self.lr_at(self.steps))

    def epoch_end(self, tune_loss: float) -> None:
        """After an epoch's tune pass (the plateau rule; a NaN loss, no tune split, changes nothing)."""
        if self.kind == "plateau" and math.isfinite(tune_loss):
            self.plateau.step(tune_loss)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "plateau" not in state:  # a run saved before schedules: the plateau scheduler's own state
            self.plateau.load_state_dict(state)
            return
        self.steps = int(state["steps"])
        self.plateau.load_state_dict(state["plateau"])
        if self.kind == "cosine":
            self._set(self.lr_at(self.steps))


class WeightAverage:
    """An exponential moving average of ``model``'s parameters and buffers (``decay`` per step, warmed up).

    The effective decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early averages are not
    dominated by the random initialization. Integer buffers (batch-norm counters) are copied.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the current weights of ``model`` (same structure) into the average."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = model.state_dict()
        for name, avg in self.model.state_dict().items():
            cur = src[name].detach()
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(cur.to(avg.dtype), alpha=1 - d)
            else:
                avg.copy_(cur)


__all__ = ["Schedule", "WeightAverage"]
