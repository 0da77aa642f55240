"""``mura demo`` and the bare ``mura benchmark``: the whole job on the built-in synthetic radiographs.

:func:`run_demo` generates the demo set (:mod:`mura_cli.data.demo`), indexes it, trains a small backbone
briefly (ImageNet weights from the Hub when it is reachable, else random init, and it says which), screens the
held-out studies, localizes them with overlays and benchmarks the result with ``--boxes``.
:func:`run_bare_benchmark` reuses a demo trained once into the user's cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mura_cli.config import (
    BenchmarkConfig,
    DemoConfig,
    LocalizeConfig,
    PredictConfig,
    PrepareConfig,
    TrainConfig,
    TransformConfig,
)
from mura_cli.engine.benchmark import BenchmarkReport, run_benchmark
from mura_cli.engine.localize import LocalizeReport, run_localize
from mura_cli.engine.prepare import run_prepare
from mura_cli.engine.results import Hooks, TrainResult
from mura_cli.engine.screen import PredictReport, run_predict
from mura_cli.errors import MuraError, UsageError
from mura_cli.utils import cache_dir


@dataclass(frozen=True)
class DemoReport:
    """Where everything of a demo run is, and what it measured."""

    out: Path
    data: Path
    index: Path
    weights: str
    train: TrainResult
    predict: PredictReport
    localize: LocalizeReport
    benchmark: BenchmarkReport


@dataclass(frozen=True)
class DemoHooks:
    """How a demo reports back: ``step`` announces each stage; the rest go to the stages themselves."""

    step: Callable[[str], None] = lambda _msg: None
    infer: Hooks = field(default_factory=Hooks)
    on_epoch: Callable[[Any], None] | None = None
    on_batch: Callable[[str, int, int], None] | None = None


def demo_weights(arch: str) -> str:
    """``default`` (ImageNet weights from the Hub) when the Hub can be reached and has them, else ``none``."""
    from mura_cli.models.hub import resolve_weights_file
    from mura_cli.models.hub_errors import hub_unreachable

    if os.environ.get("HF_HUB_OFFLINE") not in (None, "", "0") or hub_unreachable(timeout=3) is not None:
        return "none"
    try:
        resolve_weights_file("default", arch)
    except MuraError:  # the Hub answered but cannot give the weights: train from random init
        return "none"
    return "default"


def run_demo(cfg: DemoConfig, hooks: DemoHooks = DemoHooks()) -> DemoReport:
    """Generate, prepare, train, predict, localize and benchmark under ``cfg.out``; see :class:`DemoReport`."""
    from mura_cli.data.demo import generate_demo_set
    from mura_cli.engine.train import fit

    out = Path(cfg.out)
    run_dir = out / "runs" / "demo"
    if run_dir.exists() and not cfg.overwrite:
        raise UsageError(f"{out}: holds an earlier demo; choose another --out or pass --overwrite")
    hooks.step(f"1/6 generating the synthetic radiographs in {out / 'data'}")
    data = generate_demo_set(out / "data", studies_per_part=cfg.studies_per_part, seed=cfg.seed)
    hooks.step("2/6 indexing them (mura prepare)")
    index = out / "index"
    run_prepare(PrepareConfig(root=str(data), out=str(index), seed=cfg.seed))
    weights = demo_weights(cfg.arch)
    hooks.step(
        f"3/6 training {cfg.arch} at {cfg.size} px for {cfg.epochs} epochs from "
        + ("ImageNet weights (Hugging Face Hub)" if weights == "default" else "random init (the Hub is not reachable)")
    )
    train = fit(
        TrainConfig(
            data=str(index),
            arch=cfg.arch,
            output_stride=cfg.output_stride,
            weights=weights,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            early_stop=0,
            seed=cfg.seed,
            device=cfg.device,
            workers=0,
            out=str(out / "runs"),
            name="demo",
            exist_ok=True,
            transform=TransformConfig(size=cfg.size, rotation=10.0),
        ),
        on_epoch=hooks.on_epoch,
        on_batch=hooks.on_batch,
    )
    model = (str(train.run_dir),)
    valid = str(data / "valid")
    hooks.step(f"4/6 screening the held-out studies (mura predict {valid})")
    pred = run_predict(
        PredictConfig(paths=(valid,), model=model, out=str(out / "results.csv"), overwrite=True, workers=0),
        hooks.infer,
    )
    hooks.step("5/6 localizing them with overlays (mura localize --overlay)")
    loc = run_localize(
        LocalizeConfig(
            paths=(valid,),
            model=model,
            out=str(out / "boxes.json"),
            overlay=True,
            overlay_dir=str(out / "overlays"),
            overwrite=True,
            workers=0,
        ),
        hooks.infer,
    )
    hooks.step("6/6 benchmarking on the valid split with --boxes (mura benchmark)")
    bench = run_benchmark(
        BenchmarkConfig(data=str(index), model=model, split="valid", boxes=True, out=str(out / "benchmark"),
                        overwrite=True, workers=0),
        hooks.infer,
        command=f"mura benchmark --data {index} --model {model[0]} --split valid --boxes --out {out / 'benchmark'}",
    )  # fmt: skip
    return DemoReport(out, data, index, weights, train, pred, loc, bench)


def run_bare_benchmark(cfg: BenchmarkConfig, hooks: Hooks = Hooks(), *, command: str = "") -> BenchmarkReport:
    """The bare ``mura benchmark``: the default arch's speed on built-in images, then accuracy and boxes of the
    demo model on the demo set's valid split (trained once into :func:`cache_dir` when not there yet)."""
    from mura_cli._version import __version__
    from mura_cli.models.checkpoint import WEIGHTS_NAME
    from mura_cli.models.registry import DEFAULT_ARCH

    demo = cache_dir() / f"demo-{__version__}"
    run = demo / "runs" / "demo"
    if not (run / WEIGHTS_NAME).is_file() or not (run / "summary.json").is_file():
        hooks.on_info(f"no demo model in {demo} yet: training one (once, a few minutes on 2 CPU cores)")
        run_demo(DemoConfig(out=str(demo), overwrite=True))
    bench = replace(
        cfg,
        data=str(demo / "index"),
        model=(str(run),),
        split="valid",
        boxes=True,
        speed=True,
        archs=cfg.archs or (DEFAULT_ARCH,),
    )
    return run_benchmark(bench, hooks, command=command or "mura benchmark")
