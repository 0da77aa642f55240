"""The project's training recipe against a naive 60-line torchvision loop, by nested and shifted cross-validation.

Both sides see the same patient folds (``mura_cli.data.index.patient_folds``, seed 0, ``--folds-by``), so every
study is scored by a model that never saw its patient. ``--folds-by later`` (the default) makes fold K the last
block of patient numbers of each label, a proxy for a later intake (MURA numbers its patients in intake
order; its valid patients come after all train patients), and folds 1..K-1 random: the tables give the
random folds and the later block apart. ``--folds-by region`` leaves one FracAtlas region out per fold.

The naive loop is the obvious script: resnet18 from random init, Adam 1e-3, flips, a fixed number of epochs
on all training folds, plain BCE, threshold 0.5. It chooses nothing on its predictions, so its out-of-fold
figures are already honest. The project side is ``mura train ... --folds K --folds-by S --nested``: its
choices (flips, temperature, kappa threshold, operating points sens:0.9 / spec:0.9) are scored three ways:
- ``chosen on OOF``: made once on all out-of-fold predictions and scored on them (what a plain ``--folds``
  run could print; optimistic);
- ``cross-fitted``: fold k under choices made on the other folds' out-of-fold predictions;
- ``nested``: fold k under choices made on inner folds whose models never saw fold k (the estimate);
- ``nested ensemble``: the same choices on the mean of the K models that never saw fold k (outer model k and the
  pair models ``{j, k}``), the estimate for the ensemble a run ships; its paired difference to one model is shown.
95% CIs: 2,000 bootstrap resamples of studies. Calibration (ECE) is shown before and after the temperature.
With both sides, the project's (nested) study AUROC minus the naive loop's is bootstrapped paired by study, per
scope. The naive loop's predictions are kept in ``OUT/naive-rows.csv`` (``--naive-rows`` reuses them).

    python benchmarks/recipe_vs_naive.py ../shared/data/mura-humerus-64 --size 64 --out bench-recipe
    python benchmarks/recipe_vs_naive.py DATA --only naive                 # the naive loop alone
    python benchmarks/recipe_vs_naive.py DATA --train-args "--epochs 20"   # another recipe
    python benchmarks/recipe_vs_naive.py DATA --only project --run runs/cv  # score a finished --nested run
    python benchmarks/recipe_vs_naive.py DATA --run runs/cv --naive-rows OUT/naive-rows.csv  # no training at all
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image, ImageFile

from mura_cli.data.index import build_index, patient_folds
from mura_cli.engine.training.nested import (
    Choices,
    apply_choices,
    blind_ensemble,
    choose,
    cross_fitted_choices,
    nested_choices,
    nested_estimate,
)
from mura_cli.metrics import roc_auc
from mura_cli.report.document import format_interval
from mura_cli.scoring import bootstrap
from mura_cli.utils import write_csv

SCOPES = ("random", "later", "folds", "all")
ImageFile.LOAD_TRUNCATED_IMAGES = True  # two FracAtlas JPEGs are cut short; the naive loop reads what is there


def naive_fold(train: list, held: list, root: Path, size: int, epochs: int, seed: int) -> np.ndarray:
    """The naive script: returns probabilities for ``held``."""
    torch.manual_seed(seed)
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]

    def load(rows: list) -> torch.Tensor:
        ims = [np.asarray(Image.open(root / r.path).convert("L").resize((size, size)), np.float32) / 255 for r in rows]
        return (torch.from_numpy(np.stack(ims))[:, None].repeat(1, 3, 1, 1) - mean) / std

    x, y = load(train), torch.tensor([float(r.label) for r in train])
    model = torchvision.models.resnet18(num_classes=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(32):
            xb = x[idx]
            flip = torch.rand(len(xb)) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xb).squeeze(1), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return torch.cat([torch.sigmoid(model(b).squeeze(1)) for b in load(held).split(128)]).numpy()


def run_naive(
    data: str, part: str, folds: int, split: str, size: int, epochs: int, outer: list[int] | None = None
) -> list[dict]:
    """The naive loop on each fold in ``outer`` (all folds by default), trained on the others: one row per
    held-out image."""
    index = build_index(data)
    rows = [r for r in index.rows if r.split in ("train", "tune") and part in ("all", r.part)]
    fold_of = patient_folds(rows, folds, seed=0, scheme=split)
    out = []
    for k in outer or range(1, folds + 1):
        held = [r for r in rows if fold_of[r.patient] == k]
        probs = naive_fold([r for r in rows if fold_of[r.patient] != k], held, Path(index.root), size, epochs, k)
        out += [
            {"study": r.study, "part": r.part, "label": r.label, "fold": k, "probability": float(p)}
            for r, p in zip(held, probs, strict=True)
        ]
    return out


def run_project(data: str, part: str, folds: int, split: str, size: int, extra: str, out: Path) -> Path:
    name = f"recipe-{int(time.time())}"
    cmd = ["mura", "train", "--data", data, "--arch", "resnet18", "--part", part, "--weights", "none"]
    cmd += ["--size", str(size), "--folds", str(folds), "--folds-by", split, "--nested"]
    cmd += ["--out", str(out / "runs"), "--name", name, *shlex.split(extra)]
    print("$", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out / "runs" / name


def read_rows(path: Path) -> list[dict]:
    """``oof.csv`` or ``inner.csv`` of a ``mura train --folds`` run (or ``naive-rows.csv``), numbers parsed."""
    with open(path) as f:
        return [
            {
                **r,
                "label": int(r["label"]),
                "fold": int(r["fold"]),
                "probability": float(r["probability"]),
                "probability_tta": float(r.get("probability_tta") or r["probability"]),
            }
            for r in csv.DictReader(f)
        ]


def scope_of(split: str, folds: int, rows: list[dict]) -> dict[int, str]:
    if split == "later":
        return {k: "later" if k == folds else "random" for k in range(1, folds + 1)}
    if split == "region":
        return {int(r["fold"]): str(r["part"]) for r in rows}
    return dict.fromkeys(range(1, folds + 1), "folds")


def project_choices(outer: list[dict], inner: list[dict] | None, folds: list[int]) -> dict[str, dict[int, Choices]]:
    """The project's choices made three ways (chosen on OOF, cross-fitted, nested where inner rows exist)."""
    out = {"chosen on OOF": dict.fromkeys(folds, choose(outer)), "cross-fitted": cross_fitted_choices(outer)}
    if inner:
        out["nested"] = nested_choices(inner, folds)
    return out


def naive_choices(rows: list[dict], folds: list[int]) -> tuple[list[dict], dict[int, Choices]]:
    """The naive loop's rows as prediction rows (no flipped view) and its choices: none (threshold 0.5)."""
    return [{**r, "probability_tta": r["probability"]} for r in rows], dict.fromkeys(folds, Choices())


def estimate(rows: list[dict], choices: dict[int, Choices], scope: dict[int, str]) -> dict[str, Any]:
    est = nested_estimate([r for r in rows if r["fold"] in choices], choices, scope=scope)
    if not any(c.operating_points for c in choices.values()):
        est["operating_points"] = {}  # nothing chosen: no operating point to report
    return est


def study_probabilities(rows: list[dict], choices: dict[int, Choices]) -> dict[str, tuple[int, float, int]]:
    """``study -> (label, probability, fold)`` with each fold's rows under its own choices."""
    out: dict[str, tuple[int, float, int]] = {}
    for k, ch in choices.items():
        ids, lab, prob = apply_choices([r for r in rows if r["fold"] == k], ch)
        out |= {s: (int(y), float(p), k) for s, y, p in zip(ids, lab, prob, strict=True)}
    return out


def auroc_difference(y: np.ndarray, p: np.ndarray, base: np.ndarray, studies: list[str]) -> tuple[float, float, float]:
    """Study AUROC of ``p`` minus that of ``base`` on the same studies, with a paired 95% bootstrap interval."""
    lo, hi = bootstrap(lambda t, a, b: roc_auc(t, a) - roc_auc(t, b), studies, y, p, base)
    return roc_auc(y, p) - roc_auc(y, base), lo, hi


def print_differences(a: dict, b: dict, scope: dict[int, str], title: str) -> dict[str, list[float]]:
    """Paired study AUROC differences ``a - b`` for each scope and all studies both score."""
    studies = sorted(set(a) & set(b))
    groups = {name: [s for s in studies if scope[a[s][2]] == name] for name in sorted(set(scope.values()))}
    out: dict[str, list[float]] = {}
    print(f"\n== {title}: study AUROC difference, paired by study [95% CI] ==")
    for name, keys in {**groups, "all": studies}.items():
        y = np.array([a[s][0] for s in keys])
        out[name] = list(
            auroc_difference(y, np.array([a[s][1] for s in keys]), np.array([b[s][1] for s in keys]), keys)
        )
        print(f"{name:10s} {len(keys):5d} studies  {out[name][0]:+.3f} [{out[name][1]:+.3f}, {out[name][2]:+.3f}]")
    return out


def print_tables(results: dict[str, dict[str, Any]]) -> None:
    """One table per scope: AUROC, kappa, sensitivity/specificity, ECE before/after, each with its 95% CI."""
    head = f"{'':28s} {'studies':>7s}  {'AUROC':18s}  {'kappa':18s}  {'sens@sens:0.9':18s}  {'spec@spec:0.9':18s}  ECE"
    scopes = [s for s in SCOPES if any(s in e["table"]["parts"] for e in results.values())]
    scopes += sorted({p for e in results.values() for p in e["table"]["parts"]} - set(SCOPES))
    for scope in scopes:
        print(f"\n== {scope} ==\n{head}")
        for name, est in results.items():
            part = est["table"]["parts"].get(scope)
            if part is None:
                continue
            m = part["metrics"]
            ops = est["operating_points"]
            sens = ops.get("sens:0.9", {}).get(scope, {}).get("sensitivity")
            spec = ops.get("spec:0.9", {}).get(scope, {}).get("specificity")
            ece = f"{_v(est['ece_before'][scope])}->{_v(m['ece'])}"
            cells = [
                _ci(m["auroc"]),
                _ci(m["kappa"]),
                _ci(sens),
                _ci(spec),
            ]
            print(f"{name:28s} {part['studies']:7d}  " + "  ".join(f"{c:18s}" for c in cells) + f"  {ece}")


def _v(e: dict | None) -> str:
    return "-" if not e or e.get("value") is None else f"{e['value']:.3f}"


def _ci(e: dict | None) -> str:
    e = e or {}
    return format_interval(e.get("value"), e.get("low"), e.get("high"), minus="-", mark="+")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--part", default="all")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--folds-by", dest="split", default="later", choices=("random", "later", "region"))
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--naive-epochs", type=int, default=15)
    ap.add_argument("--train-args", default="", help="extra `mura train` flags (the recipe under test)")
    ap.add_argument("--only", choices=("naive", "project"))
    ap.add_argument("--naive-rows", type=Path, help="the naive loop's naive-rows.csv of an earlier run (no training)")
    ap.add_argument("--run", type=Path, help="score this finished `mura train --folds --nested` run instead")
    ap.add_argument("--out", type=Path, default=Path("bench-recipe"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    seconds = {}
    studies: dict[str, dict] = {}
    if a.only != "project":
        t = time.perf_counter()
        if a.naive_rows:
            rows = read_rows(a.naive_rows)
        else:
            rows = run_naive(a.data, a.part, a.folds, a.split, a.size, a.naive_epochs)
            write_csv(a.out / "naive-rows.csv", rows)
        scope = scope_of(a.split, a.folds, rows)
        rows, choices = naive_choices(rows, sorted(scope))
        results["naive (chooses nothing)"] = estimate(rows, choices, scope)
        studies["naive"] = study_probabilities(rows, choices)
        seconds["naive"] = round(time.perf_counter() - t)
    if a.only != "naive":
        t = time.perf_counter()
        run = a.run or run_project(a.data, a.part, a.folds, a.split, a.size, a.train_args, a.out)
        outer = read_rows(run / "oof.csv")
        inner = read_rows(run / "inner.csv") if (run / "inner.csv").is_file() else None
        scope = scope_of(a.split, a.folds, outer)
        made = project_choices(outer, inner, sorted(scope))
        results |= {f"project, {name}": estimate(outer, choices, scope) for name, choices in made.items()}
        if inner:  # the mean of the models that never saw each fold: what the shipped ensemble does
            ensemble = blind_ensemble(outer, inner)
            results["project, nested ensemble"] = estimate(ensemble, made["nested"], scope)
            studies["ensemble"] = study_probabilities(ensemble, made["nested"])
        best = "nested" if "nested" in made else "cross-fitted"
        studies["project"] = study_probabilities(outer, made[best])
        seconds["project"] = round(time.perf_counter() - t)
    print_tables(results)
    if "ensemble" in studies:
        title = "nested ensemble - one model per fold"
        results["ensemble difference"] = print_differences(studies["ensemble"], studies["project"], scope, title)
    if "naive" in studies and "project" in studies:
        title = f"project ({best}) - naive"
        results["difference"] = print_differences(studies["project"], studies["naive"], scope, title)
    print("\nseconds:", seconds)
    (a.out / f"results-{int(time.time())}.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
