"""Real localization on FracAtlas, and the box threshold chosen by cross-validation rather than by looking.

For every fractured image of the tune split (held out from training) that has fracture boxes, the model's CAM
box counts as a hit when its IoU with any fracture box is >= 0.3; the CAM peak counts when it lies inside one
(chance: the boxes' share of the image area). The maps are computed once; then every box rule (threshold
fraction of the map's maximum x largest or peak component) is scored on the same images:

- ``default``: the seed's rule, 20% of the maximum, largest component;
- ``cross-fitted``: the images are dealt into ``--folds`` patient-disjoint folds; each fold is boxed with the
  rule that hits most often on the other folds, so no image helps choose its own rule (the honest figure);
- ``in-sample best``: the rule that hits most often on all images (optimistic, shown for comparison).

``--held-out K --folds-by region`` scores instead the fractured images of outer fold K of that split (the
patients ``mura train --folds 5 --folds-by region --fold K`` never trained on: a whole body region), so the maps
are judged on a region the model never saw. 95% CIs: 2,000 bootstrap resamples of images.

    python benchmarks/fracatlas_localization.py --index .mura/fracatlas --model runs/fracatlas-resnet18 [--tta]
    python benchmarks/fracatlas_localization.py --index .mura/fracatlas --model RUN/fold-1 --held-out 1 \\
        --folds-by region
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from mura_cli.cam import COMPONENTS, cam_peak, image_box
from mura_cli.config import InferConfig, TrainConfig
from mura_cli.data.index import load_index, patient_folds
from mura_cli.engine.serving.load import load_models
from mura_cli.engine.serving.predict import predict
from mura_cli.engine.training.train_data import fold_rows
from mura_cli.scoring import box_iou, covered_fraction, peak_in_boxes

FRACS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def ci(values: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% bootstrap interval."""
    rng = np.random.default_rng(seed)
    boots = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(2000)]
    return float(values.mean()), float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def show(name: str, values: np.ndarray) -> str:
    m, lo, hi = ci(values)
    return f"{name} {m:.3f} [{lo:.3f}, {hi:.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True, help="`mura prepare` output folder for FracAtlas")
    ap.add_argument("--model", required=True, action="append", help="run folder(s) trained on that index")
    ap.add_argument("--split", default="tune")
    ap.add_argument("--tta", action="store_true", help="average each map with its flip")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--held-out", type=int, help="score outer fold K of --folds-by over train+tune (not --split)")
    ap.add_argument("--folds-by", default="random", choices=("random", "later", "region"))
    args = ap.parse_args()
    index = load_index(args.index)
    if args.held_out:  # the fold as `mura train --folds K --folds-by S --fold k` holds it out
        split = TrainConfig(folds=args.folds, fold=args.held_out, folds_by=args.folds_by)
        rows = [r for r in fold_rows(index, "all", split)[2] if r.label == 1 and r.boxes]
        args.split = f"fold {args.held_out} of {args.folds_by}"
    else:
        rows = [r for r in index.select(split=args.split) if r.label == 1 and r.boxes]
    by_path = {str(index.resolve(r)): r for r in rows}
    fold_of = patient_folds(rows, args.folds, seed=0)
    models = load_models(args.model, "cpu", "auto", tta=args.tta)  # as mura benchmark loads them
    rules = list(itertools.product(FRACS, COMPONENTS))
    hits, ious, peaks, chance, folds = [], [], [], [], []
    t0 = time.perf_counter()
    files = [index.resolve(r) for r in rows]
    for pred in predict(files, models, InferConfig(batch_size=16, workers=2), per_image=True, with_cam=True):
        row = by_path[pred.path]
        gts = [tuple(b) for b in row.boxes]  # as mura benchmark scores them: unrounded
        boxes = [image_box(pred.cam, pred.height, pred.width, f, c)[0] for f, c in rules]
        best = [max((box_iou(b, g) for g in gts), default=0.0) if b else 0.0 for b in boxes]
        ious.append(best)
        hits.append([v >= 0.3 for v in best])
        peaks.append(peak_in_boxes(cam_peak(pred.cam, pred.height, pred.width), gts))
        chance.append(covered_fraction(gts, pred.width, pred.height))
        folds.append(fold_of[row.patient])
    h, iou, f = np.array(hits, float), np.array(ious), np.array(folds)
    crossed, crossed_iou, chosen = np.zeros(len(f)), np.zeros(len(f)), []
    for k in np.unique(f):
        j = int(np.argmax(h[f != k].mean(axis=0)))
        crossed[f == k], crossed_iou[f == k] = h[f == k, j], iou[f == k, j]
        chosen.append(rules[j])
    default = rules.index((0.2, "largest"))
    best = int(np.argmax(h.mean(axis=0)))
    print(f"{len(f)} held-out fractured images ({args.split} split), {time.perf_counter() - t0:.0f} s")
    print(show("pointing (peak inside a box)", np.array(peaks, float)) + f"; chance {np.mean(chance):.3f}")
    print(show("hit rate, default (0.2, largest)", h[:, default]) + "  " + show("mean IoU", iou[:, default]))
    print(show("hit rate, cross-fitted", crossed) + "  " + show("mean IoU", crossed_iou) + f"; rules {chosen}")
    print(show(f"hit rate, in-sample best {rules[best]} (optimistic)", h[:, best]))


if __name__ == "__main__":
    main()
