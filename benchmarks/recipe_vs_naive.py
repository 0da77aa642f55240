"""The project's training recipe against a naive 60-line torchvision loop, by 5-fold out-of-fold predictions.

Both see the same patient-level folds (``mura_cli.data.index.patient_folds``, seed 0) of the same images, so
every study is scored by a model that never saw its patient. The naive loop is the obvious script: resnet18
from random init, Adam 1e-3, flips, a fixed number of epochs on all training folds, plain BCE, threshold 0.5.
The project side is the README's command line, ``mura train ... --folds 5``, scored from its ``oof.csv``.

Kappa is reported twice for the project: at the threshold ``mura train`` stored (chosen on all out-of-fold
predictions, so slightly optimistic) and cross-fitted (each fold's studies at the threshold that maximises
kappa on the other folds' predictions), which is the honest estimate. 95% CIs: 2,000 bootstrap resamples
of studies.

    python benchmarks/recipe_vs_naive.py ../shared/data/mura-humerus-64 --size 64 --out bench-recipe
    python benchmarks/recipe_vs_naive.py DATA --only naive          # the naive loop alone
    python benchmarks/recipe_vs_naive.py DATA --train-args "--epochs 20 --rotation 30"   # another recipe
    python benchmarks/recipe_vs_naive.py DATA --only project --run runs/resnet18-humerus  # score a finished run
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

from mura_cli.data.index import build_index, patient_folds
from mura_cli.metrics import aggregate_by_study, kappa_threshold
from mura_cli.scoring import score_table


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


def run_naive(data: str, part: str, folds: int, size: int, epochs: int) -> list[dict]:
    index = build_index(data)
    rows = [r for r in index.rows if r.split in ("train", "tune") and part in ("all", r.part)]
    fold_of = patient_folds(rows, folds, seed=0)
    out = []
    for k in range(1, folds + 1):
        held = [r for r in rows if fold_of[r.patient] == k]
        probs = naive_fold([r for r in rows if fold_of[r.patient] != k], held, Path(index.root), size, epochs, k)
        out += [
            {"study": r.study, "part": r.part, "label": r.label, "fold": k, "p": float(p)}
            for r, p in zip(held, probs, strict=True)
        ]
    return out


def run_project(data: str, part: str, folds: int, size: int, extra: str, out: Path) -> list[dict]:
    name = f"recipe-{int(time.time())}"
    cmd = [
        "mura",
        "train",
        "--data",
        data,
        "--arch",
        "resnet18",
        "--part",
        part,
        "--weights",
        "none",
        "--size",
        str(size),
        "--folds",
        str(folds),
        "--out",
        str(out / "runs"),
        "--name",
        name,
        *shlex.split(extra),
    ]
    print("$", shlex.join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return read_oof(out / "runs" / name)


def read_oof(run: Path) -> list[dict]:
    """The out-of-fold rows of a ``mura train --folds`` run (flipped views when the run chose flips)."""
    tta = json.loads((run / "ensemble.json").read_text())["tta"]
    with open(run / "oof.csv") as f:
        return [
            {
                "study": r["study"],
                "part": r["part"],
                "label": int(r["label"]),
                "fold": int(r["fold"]),
                "p": float(r["probability_tta" if tta else "probability"]),
            }
            for r in csv.DictReader(f)
        ]


def score(rows: list[dict], threshold: float | None) -> dict:
    """Study AUROC and kappa with CIs; kappa at ``threshold``, or cross-fitted when ``None``."""
    ids, lab, prob = aggregate_by_study([r["study"] for r in rows], [r["label"] for r in rows], [r["p"] for r in rows])
    fold = {r["study"]: r["fold"] for r in rows}
    f = np.array([fold[s] for s in ids])
    if threshold is None:  # cross-fitted: fold k at the threshold chosen on the other folds
        thr = np.empty(len(ids))
        for k in np.unique(f):
            thr[f == k] = kappa_threshold(lab[f != k], prob[f != k])
    else:
        thr = np.full(len(ids), threshold)
    table = score_table(lab, prob, ids, ["x"] * len(ids), thr)["parts"]["all"]["metrics"]
    return {"studies": len(ids), "auroc": table["auroc"], "kappa": table["kappa"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data")
    ap.add_argument("--part", default="all")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--naive-epochs", type=int, default=15)
    ap.add_argument("--train-args", default="", help="extra `mura train` flags (the recipe under test)")
    ap.add_argument("--only", choices=("naive", "project"))
    ap.add_argument("--run", type=Path, help="score this finished `mura train --folds` run instead of training one")
    ap.add_argument("--out", type=Path, default=Path("bench-recipe"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    results = {}
    if a.only != "project":
        t = time.perf_counter()
        rows = run_naive(a.data, a.part, a.folds, a.size, a.naive_epochs)
        results["naive"] = {**score(rows, 0.5), "seconds": round(time.perf_counter() - t)}
    if a.only != "naive":
        t = time.perf_counter()
        rows = read_oof(a.run) if a.run else run_project(a.data, a.part, a.folds, a.size, a.train_args, a.out)
        results["project"] = {**score(rows, None), "seconds": round(time.perf_counter() - t), "args": a.train_args}
    for name, r in results.items():
        au, ka = r["auroc"], r["kappa"]
        print(
            f"{name:8s} {r['studies']} studies  AUROC {au['value']:.3f} [{au['low']:.3f}, {au['high']:.3f}]  "
            f"kappa {ka['value']:.3f} [{ka['low']:.3f}, {ka['high']:.3f}]  {r['seconds']} s"
        )
    (a.out / f"results-{int(time.time())}.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
