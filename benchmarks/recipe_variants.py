"""Recipe variants against the recipe, fold by fold, on random folds and on the later block: what generalizes?

Each variant is the random-init recipe (``--weights none``) with some settings changed, given as JSON in the keys
of a run's ``config.json`` / ``mura train --config``; a variant with other ``weights`` (a ``mura pretrain``
folder) keeps the recipe, so only the initialization differs. Only the ``--outer`` folds of a ``--folds K --folds-by S``
split are trained (one model each, on all the other folds), so a comparison costs two models per variant instead
of a nested run's fifteen. Each fold's studies are scored by the models that never saw their patients, with no
choice at all (no flips, threshold 0.5); the paired difference to the first variant is bootstrapped by study
(``mura_cli.scoring.bootstrap``: 2,000 resamples, 95% CI). ``--naive`` adds the naive loop of
``recipe_vs_naive.py`` on the same folds.

Choose on some folds and confirm on others: a variant picked because it won on folds 1 and 5 is scored without
that choice's optimism on folds 2 and 3 (``--outer 2,3``), never on the folds that picked it.

    python benchmarks/recipe_variants.py ../shared/data/mura-humerus-64 --part humerus --size 64 --outer 5,1 \\
        --variant recipe='{}' --variant aug='{"transform": {"crop_scale": 0.7, "gamma": 0.3}}' --naive
    python benchmarks/recipe_variants.py ../shared/data/fracatlas --folds-by region --outer 1,3 --size 160 --naive \
        --naive-epochs 5 --variant readme='{"epochs": 16, "box_loss": 0.1, "output_stride": 16}'  # hand, leg out
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from mura_cli.config import RANDOM_INIT_RECIPE, TrainConfig, resolve_config
from mura_cli.engine.training.folds import predict_rows
from mura_cli.engine.training.train import fit
from mura_cli.engine.training.train_data import find_cache, fold_rows, resolve_index, select_part
from mura_cli.metrics import aggregate_by_study, cohen_kappa, roc_auc
from mura_cli.report.document import format_interval
from mura_cli.scoring import bootstrap
from mura_cli.utils import write_csv

sys.path.insert(0, str(Path(__file__).parent))
from recipe_vs_naive import auroc_difference, run_naive


def train_variant(name: str, settings: dict, args: argparse.Namespace) -> None:
    """Train ``--outer`` folds of variant ``name``; write ``pred-k.csv`` (held-out images) for each."""
    base = {"data": args.data, "arch": "resnet18", "part": args.part, "weights": "none", "workers": args.workers}
    base |= {"folds": args.folds, "folds_by": args.folds_by, "seed": 0, "transform": {"size": args.size}}
    merged = {**base, **settings, "transform": {**base["transform"], **settings.get("transform", {})}}
    cfg = resolve_config(TrainConfig, RANDOM_INIT_RECIPE, merged)  # the recipe also under other --weights
    out = args.out / name
    index, index_dir = resolve_index(cfg.data)
    part, cache = select_part(index, cfg.part), find_cache(index_dir, cfg)
    for k in args.outer:
        if (out / f"pred-{k}.csv").is_file():
            continue
        t0 = time.perf_counter()
        fit(replace(cfg, fold=k, inner=0, out=str(out), name=f"fold-{k}", exist_ok=True))
        held = fold_rows(index, part, replace(cfg, fold=k, inner=0))[2]
        write_csv(out / f"pred-{k}.csv", predict_rows(out / f"fold-{k}", held, index.root, cache, cfg, fold=k))
        print(json.dumps({"variant": name, "fold": k, "seconds": round(time.perf_counter() - t0, 1)}), flush=True)


def train_naive(args: argparse.Namespace) -> None:
    """The naive loop of ``recipe_vs_naive.py`` on the ``--outer`` folds not done yet; ``pred-k.csv`` for each."""
    out = args.out / "naive"
    todo = [k for k in args.outer if not (out / f"pred-{k}.csv").is_file()]
    rows = []
    if todo:
        rows = run_naive(args.data, args.part, args.folds, args.folds_by, args.size, args.naive_epochs, todo)
    for k in todo:
        write_csv(out / f"pred-{k}.csv", [r for r in rows if r["fold"] == k])


def study_scores(path: Path) -> dict[str, tuple[int, float]]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    probs = np.array([float(r["probability"]) for r in rows])
    studies, labels, p = aggregate_by_study([r["study"] for r in rows], [int(r["label"]) for r in rows], probs)
    return dict(zip(studies, zip(labels, p, strict=True), strict=True))


def fold_table(k: int, names: list[str], args: argparse.Namespace) -> None:
    """One fold: every variant's study AUROC and kappa at 0.5, and its paired difference to the first."""
    first = study_scores(args.out / names[0] / f"pred-{k}.csv")
    keys = sorted(first)
    y, pb = np.array([first[s][0] for s in keys]), np.array([first[s][1] for s in keys])
    later = args.folds_by == "later"
    scope = "later block" if later and k == args.folds else "random fold" if later else f"{args.folds_by} fold"
    print(f"\nfold {k} ({scope}, {len(keys)} studies)")
    print("| variant | study AUROC [95% CI] | kappa at 0.5 | AUROC - first [95% CI] |\n| --- | --- | --- | --- |")
    for name in names:
        path = args.out / name / f"pred-{k}.csv"
        if not path.is_file():
            continue
        scores = study_scores(path)
        p = np.array([scores[s][1] for s in keys])
        auc = roc_auc(y, p)
        d, lo, hi = auroc_difference(y, p, pb, keys)  # paired, same draws
        diff = "-" if name == names[0] else f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        own = format_interval(auc, *bootstrap(roc_auc, keys, y, p))
        print(f"| {name} | {own} | {cohen_kappa(y, p >= 0.5):.3f} | {diff} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--part", default="all")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--folds-by", default="later", choices=("random", "later", "region"))
    ap.add_argument("--outer", default="5,1", help="the folds to train and score, e.g. 5,1")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=JSON", help="first: the yardstick")
    ap.add_argument("--naive", action="store_true", help="add the naive loop on the same folds")
    ap.add_argument("--naive-epochs", type=int, default=15, help="the naive loop's epochs (15; 5 on FracAtlas)")
    ap.add_argument("--out", type=Path, default=Path("bench-variants"))
    args = ap.parse_args()
    args.outer = [int(k) for k in args.outer.split(",")]
    variants = dict(v.split("=", 1) for v in args.variant or ["recipe={}"])
    for name, text in variants.items():
        train_variant(name, json.loads(text), args)
    if args.naive:
        train_naive(args)
    for k in args.outer:
        fold_table(k, [*variants, *(["naive"] if args.naive else [])], args)


if __name__ == "__main__":
    main()
