"""``mura prepare``: index a dataset, check it, split train/tune by patient, write the index and a resized cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mura_cli.config import PrepareConfig
from mura_cli.data.cache import CacheResult, build_cache
from mura_cli.data.index import Index, build_index, default_out_dir, write_index
from mura_cli.utils import default_workers


@dataclass(frozen=True)
class PrepareReport:
    """What ``mura prepare`` wrote: the index (with its problems), where, and the cache when asked for."""

    index: Index
    index_path: Path
    summary_path: Path
    cache: CacheResult | None = None


def run_prepare(cfg: PrepareConfig, on_progress: Callable[[int, int], None] | None = None) -> PrepareReport:
    """Index ``cfg.root``, write ``index.csv`` + ``summary.json`` and, with ``cache_size``, the resized cache."""
    index = build_index(cfg.root, tune_fraction=cfg.tune_fraction, seed=cfg.seed, check_files=cfg.check_files)
    out_dir = Path(cfg.out) if cfg.out else default_out_dir(cfg.root)
    index_path, summary_path = write_index(index, out_dir)
    cache = None
    if cfg.cache_size:
        cache = build_cache(
            index.root,
            [r.path for r in index.rows],
            out_dir,
            size=cfg.cache_size,
            mode=cfg.cache_mode,
            workers=cfg.workers or default_workers(),
            on_progress=on_progress,
        )
    return PrepareReport(index, index_path, summary_path, cache)
