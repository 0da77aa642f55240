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
from mura_cli.engine.evaluation.benchmark import BenchmarkReport, run_benchmark
from mura_cli.engine.hooks import Hooks
from mura_cli.engine.prepare import run_prepare
from mura_cli.engine.results import TrainResult
from mura_cli.engine.serving.localize import LocalizeReport, run_localize
from mura_cli.engine.serving.screen import PredictReport, run_predict
from mura_cli.errors import MuraError, UsageError
from mura_cli.utils import cache_dir, resolve_device


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


DEMO_STAGES = ("generate", "prepare", "train", "predict", "localize", "benchmark")
"""The demo's stages in order; :attr:`DemoHooks.step` is called with the index of each as it starts."""


@dataclass(frozen=True)
class DemoHooks:
    """How a demo reports back: ``step(k, message)`` announces stage ``k`` of :data:`DEMO_STAGES` (0-based);
    the rest go to the stages themselves (``on_epoch`` and ``on_batch`` to training, ``infer`` to the others)."""

    step: Callable[[int, str], None] = lambda _k, _msg: None
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

    out = Path(cfg.out)
    run_dir = out / "runs" / "demo"
    if run_dir.exists() and not cfg.overwrite:
        raise UsageError(f"{out}: holds an earlier demo; choose another --out or pass --overwrite")
    hooks.step(0, f"1/6 generating the synthetic radiographs in {out / 'data'}")
    data = generate_demo_set(out / "data", studies_per_part=cfg.studies_per_part, seed=cfg.seed, size=cfg.image_size)
    hooks.step(1, "2/6 indexing them (mura prepare)")
    index = out / "index"
    run_prepare(PrepareConfig(root=str(data), out=str(index), seed=cfg.seed))
    weights = demo_weights(cfg.arch) if cfg.weights == "default" else "none"
    source = {"default": "ImageNet weights (Hugging Face Hub)", "none": "random init"}[weights]
    if cfg.weights == "default" and weights == "none":
        source += " (the Hub is not reachable)"
    hooks.step(2, f"3/6 training {cfg.arch} at {cfg.size} px for {cfg.epochs} epochs from {source}")
    train = _fit_with_threads(
        cfg.threads,
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
            deterministic=True,
            precision="fp32",  # the reference's: bf16 exists on some CPUs only
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
    engine = _fp32_engine(cfg.device)
    hooks.step(3, f"4/6 screening the held-out studies (mura predict {valid})")
    pred = run_predict(
        PredictConfig(
            paths=(valid,), model=model, out=str(out / "results.csv"), overwrite=True, workers=0, engine=engine
        ),
        hooks.infer,
    )
    hooks.step(4, "5/6 localizing them with overlays (mura localize --overlay)")
    loc = run_localize(
        LocalizeConfig(
            paths=(valid,),
            model=model,
            out=str(out / "boxes.json"),
            overlay=True,
            overlay_dir=str(out / "overlays"),
            overwrite=True,
            workers=0,
            engine=engine,
        ),
        hooks.infer,
    )
    hooks.step(5, "6/6 benchmarking on the valid split with --boxes (mura benchmark)")
    bench = run_benchmark(
        BenchmarkConfig(data=str(index), model=model, split="valid", boxes=True, out=str(out / "benchmark"),
                        overwrite=True, workers=0, engine=engine),
        hooks.infer,
        command=f"mura benchmark --data {index} --model {model[0]} --split valid --boxes --out {out / 'benchmark'}",
    )  # fmt: skip
    return DemoReport(out, data, index, weights, train, pred, loc, bench)


def _fp32_engine(device: str) -> str:
    """The demo's inference engine: fp32 everywhere (ONNX Runtime on CPU when installed, else torch), never the
    bf16 that ``auto`` picks on CPUs with native bf16, so that its figures compare across CPUs."""
    from mura_cli.engine.serving.runtimes import fp32_engine

    return fp32_engine(resolve_device(device))


def _fit_with_threads(threads: int, *args: Any, **kwargs: Any) -> TrainResult:
    """:func:`~mura_cli.engine.training.train.fit` on ``threads`` torch threads (the reduction order of the float sums
    depends on the thread count, so the figures would too), the caller's count restored after."""
    import torch

    from mura_cli.engine.training.train import fit

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fit(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


def run_bare_benchmark(
    cfg: BenchmarkConfig, hooks: Hooks = Hooks(), *, command: str = "", demo_hooks: DemoHooks | None = None
) -> BenchmarkReport:
    """The bare ``mura benchmark``: the default arch's speed on built-in images, then accuracy and boxes of the
    demo model on the demo set's valid split (trained once into :func:`cache_dir` when not there yet, reporting
    through ``demo_hooks``). ``hooks.on_info`` says where the cache is, its size and how to remove it."""
    from mura_cli._version import __version__
    from mura_cli.models.registry import DEFAULT_ARCH
    from mura_cli.models.run_folder import RunFolder

    demo = cache_dir() / f"demo-{__version__}"
    run = demo / "runs" / "demo"
    if not RunFolder(run).finished:
        hooks.on_info(f"no demo model in {demo} yet: training one (once; about 2 min on 2 CPU cores, 270 MB there)")
        run_demo(DemoConfig(out=str(demo), overwrite=True), demo_hooks or DemoHooks(infer=hooks))
    hooks.on_info(f"demo model: {run} (cache {demo}: {folder_size(demo) / 1e6:.0f} MB; remove it with rm -rf {demo})")
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


def folder_size(folder: Path) -> int:
    """Bytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


REFERENCE_FILE = Path(__file__).resolve().parents[1] / "data" / "demo_reference.json"
"""The demo's expected figures with their tolerances, and the settings they hold for (shipped with the package)."""


@dataclass(frozen=True)
class Figure:
    """One figure of a demo beside its reference: ``ok`` when ``|value - expected| <= tolerance``."""

    name: str
    value: float
    expected: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return abs(self.value - self.expected) <= self.tolerance + 1e-9


@dataclass(frozen=True)
class ReferenceCheck:
    """A demo's figures against :data:`REFERENCE_FILE`; ``applies`` is False (and ``why`` says why) when the
    demo ran with settings the reference was not measured for."""

    applies: bool
    rows: tuple[Figure, ...] = ()
    why: str = ""
    reference: Path = field(default=Path("demo_reference.json"))

    @property
    def matches(self) -> bool:
        return self.applies and all(r.ok for r in self.rows)


def demo_figures(report: DemoReport) -> dict[str, float]:
    """The figures a demo is checked on: valid-split study AUROC and kappa, studies flagged, CAM pointing."""
    study = report.benchmark.report["levels"]["study"]["parts"]["all"]["metrics"]
    boxes = (report.benchmark.report.get("boxes") or {}).get("parts", {}).get("all", {})
    return {
        "study AUROC": float(study["auroc"]["value"]),
        "study kappa": float(study["kappa"]["value"]),
        "studies flagged": float(sum(s.prediction for s in report.predict.studies)),
        "pointing": float((boxes.get("pointing") or {}).get("value") or 0.0),
    }


def reference_settings(cfg: DemoConfig, weights: str) -> dict[str, Any]:
    """What the figures depend on: the demo's settings that change them, and the weights it trained from."""
    from mura_cli.data.demo import DEMO_VERSION

    keep = ("arch", "output_stride", "size", "epochs", "batch_size", "lr", "studies_per_part", "image_size", "seed")
    return {**{k: getattr(cfg, k) for k in keep}, "weights": weights, "demo_data": DEMO_VERSION}


def check_reference(cfg: DemoConfig, report: DemoReport, reference: Path = REFERENCE_FILE) -> ReferenceCheck:
    """Compare ``report``'s figures with the shipped reference (see :class:`ReferenceCheck`)."""
    import json

    ref = json.loads(reference.read_text(encoding="utf-8"))
    settings = reference_settings(cfg, report.weights)
    changed = sorted(k for k, v in ref["settings"].items() if settings.get(k) != v)
    if changed:
        return ReferenceCheck(False, why=f"the reference holds for the default settings; changed: {', '.join(changed)}")
    device = resolve_device(cfg.device)
    if device != "cpu":
        return ReferenceCheck(False, why=f"the reference was measured on CPUs; this ran on {device}")
    figures = demo_figures(report)
    rows = tuple(
        Figure(name, figures[name], float(e["value"]), float(e["tolerance"])) for name, e in ref["figures"].items()
    )
    return ReferenceCheck(True, rows, why=ref["tolerance_note"], reference=reference)
