"""The run folder's resumable state, resume rules, and the per-rank loaders (no process group needed)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.data import TensorDataset

from mura_cli.config import TrainConfig
from mura_cli.engine.results import EpochResult
from mura_cli.engine.training.distributed import Dist, init_distributed, seed_epoch, shard_loaders
from mura_cli.engine.training.run import (
    Progress,
    load_last_state,
    resume_config,
    save_last_state,
    save_train_config,
)
from mura_cli.errors import UsageError
from mura_cli.models.registry import MuraNet
from mura_cli.models.run_folder import LAST_STATE, TRAIN_CONFIG


def _epoch(epoch: int, tune_loss: float, best: bool) -> EpochResult:
    return EpochResult(epoch, 0.5, tune_loss, 0.1, 0.6, 0.7, 1e-4, 1.0, best)


def test_progress_tracks_best_and_patience():
    p = Progress()
    assert p.improves(1.0) and not p.improves(math.nan)
    p = p.record(_epoch(1, 0.9, True)).record(_epoch(2, 0.95, False)).record(_epoch(3, 0.99, False))
    assert (p.epoch, p.best_loss, p.best_epoch, p.bad_epochs) == (3, 0.9, 1, 2)
    assert p.improves(0.8) and not p.improves(0.9)
    assert p.record(_epoch(4, 0.8, True)).bad_epochs == 0


def test_last_state_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MuraNet("test_resnet")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.1, patience=1)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    sched.step(0.7)
    progress = Progress().record(_epoch(1, 0.7, True))
    save_last_state(tmp_path, model, opt, sched, progress, "test_resnet")

    model2 = MuraNet("test_resnet")
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-3)
    sched2 = torch.optim.lr_scheduler.ReduceLROnPlateau(opt2, factor=0.1, patience=1)
    state = json.loads((tmp_path / LAST_STATE).read_text())
    back = load_last_state(tmp_path, state, model2, opt2, sched2)
    assert back == Progress(1, 0.7, 1, 0, (EpochResult(**_epoch(1, 0.7, True).to_row()),))
    for k, v in model.state_dict().items():
        assert torch.equal(v, model2.state_dict()[k])
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys() and all(torch.equal(s1[i]["exp_avg"], s2[i]["exp_avg"]) for i in s1)
    assert sched2.state_dict() == sched.state_dict()


def test_resume_rules(tmp_path):
    with pytest.raises(UsageError, match="not a resumable run"):
        resume_config(tmp_path, {})
    save_train_config(tmp_path, TrainConfig(arch="test_resnet", epochs=3))
    (tmp_path / LAST_STATE).write_text("{}")
    assert (tmp_path / TRAIN_CONFIG).is_file()
    cfg, state = resume_config(tmp_path, {"epochs": 5})
    assert (cfg.arch, cfg.epochs, state) == ("test_resnet", 5, {})
    with pytest.raises(UsageError, match="lr cannot change on resume"):
        resume_config(tmp_path, {"lr": 1.0})


def test_one_process_is_rank_0_of_1(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed("cpu") == Dist(device="cpu") and Dist().main


def test_ranks_get_disjoint_shards_and_epochs_reseed():
    ds = TensorDataset(torch.arange(10))
    train0, tune0 = shard_loaders(ds, ds, Dist(0, 2), batch_size=2, workers=0, seed=1)
    train1, tune1 = shard_loaders(ds, ds, Dist(1, 2), batch_size=2, workers=0, seed=1)
    seen = [[int(i) for (b,) in loader for i in b] for loader in (train0, train1, tune0, tune1)]
    assert not set(seen[0]) & set(seen[1]) and len(seen[0]) == len(seen[1]) == 5
    assert seen[2] == [0, 2, 4, 6, 8] and seen[3] == [1, 3, 5, 7, 9]

    single, _ = shard_loaders(ds, ds, Dist(), batch_size=10, workers=0, seed=1)
    orders = []
    for epoch in (1, 2, 1):
        seed_epoch(single, epoch, seed=1)
        orders.append([int(i) for (b,) in single for i in b])
    assert orders[0] == orders[2] != orders[1]
