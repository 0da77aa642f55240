"""One process or a torchrun job (DDP): this process's place in it and the few collectives training needs.

Shaped after timm's ``utils/distributed.py`` (``init_distributed_device``, ``is_primary``): the process group is
joined once, the device is pinned to the local rank, and without torchrun everything is a no-op.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset

if TYPE_CHECKING:
    from mura_cli.data.dataset import MuraDataset


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun).

    Attributes:
        rank: global rank.
        world: number of processes.
        local_rank: rank on this machine (which GPU).
        device: the torch device this process uses.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def main(self) -> bool:
        """Rank 0: the process that downloads, writes the run folder and reports."""
        return self.rank == 0


def world_size() -> int:
    """The number of processes of this job (``$WORLD_SIZE`` under torchrun, else 1), before any is joined."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this process reports and writes: rank 0 of a torchrun job (``$RANK``), or the only process."""
    return os.environ.get("RANK", "0") == "0"


def init_distributed(device: str) -> Dist:
    """Join the process group torchrun set up (``WORLD_SIZE`` > 1): NCCL on CUDA, gloo on CPU.

    On CUDA each process takes the GPU of its local rank (``cuda:LOCAL_RANK``), as timm does.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=device)
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, device=device)


def all_gather(obj: Any, d: Dist) -> list[Any]:
    """``obj`` from every rank, in rank order (``[obj]`` on one process)."""
    if d.world == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, d: Dist) -> Any:
    """Rank 0's ``obj`` on every rank (also a barrier: the others wait for rank 0)."""
    if d.world == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def seed_worker(worker_id: int) -> None:
    """Seed NumPy and ``random`` in a loader worker from its torch seed (which the loader derives per worker)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def shard_loaders(
    train: MuraDataset, tune: MuraDataset, d: Dist, *, batch_size: int, workers: int, seed: int
) -> tuple[DataLoader, DataLoader]:
    """This rank's loaders: ``train`` shuffled (a :class:`DistributedSampler` under torchrun, so the ranks see
    different images), ``tune`` in order, every ``world``-th image from ``rank`` (batches of ``2 * batch_size``).

    Without torchrun the train sampler is a :class:`RandomSampler` with its own generator seeded with ``seed``.
    """
    if d.world > 1:
        sampler: Any = DistributedSampler(
            train, num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed, drop_last=True
        )
    else:
        sampler = RandomSampler(train, generator=torch.Generator().manual_seed(seed))
    kw: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": d.device.startswith("cuda"),
        "worker_init_fn": seed_worker,
    }
    if workers > 0:
        kw["persistent_workers"] = True
    train_loader = DataLoader(train, batch_size=batch_size, sampler=sampler, drop_last=False, **kw)
    shard = Subset(tune, list(range(d.rank, len(tune), d.world)))
    return train_loader, DataLoader(shard, batch_size=batch_size * 2, shuffle=False, **kw)


def seed_epoch(loader: DataLoader, epoch: int, seed: int) -> None:
    """Seed torch (augmentation) and ``loader``'s train sampler for ``epoch``: an epoch is the same resumed or not."""
    torch.manual_seed(seed + epoch)
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler) and sampler.generator is not None:
        sampler.generator.manual_seed(seed + epoch)


def wrap_model(model: nn.Module, d: Dist) -> nn.Module:
    """``model`` under :class:`~torch.nn.parallel.DistributedDataParallel` in a torchrun job, else itself."""
    if d.world == 1:
        return model
    # find_unused_parameters: some timm backbones keep head modules our pool+linear head never calls
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[d.local_rank] if d.device.startswith("cuda") else None, find_unused_parameters=True
    )


__all__ = [
    "Dist",
    "all_gather",
    "broadcast",
    "init_distributed",
    "seed_epoch",
    "seed_worker",
    "shard_loaders",
    "wrap_model",
]
