"""Measure real localization: how often the CAM box hits a ground-truth FracAtlas fracture box.

For every fractured image of the tune split (held out from training) that has fracture boxes, the model's CAM
box counts as a hit when its IoU with any fracture box is >= 0.3; the CAM peak counts when it lies inside one.

    python benchmarks/fracatlas_localization.py --index .mura/fracatlas --model runs/fracatlas-resnet18
"""

from __future__ import annotations

import argparse
import time

from mura_cli.cam import Box
from mura_cli.config import InferConfig
from mura_cli.data.index import load_index
from mura_cli.engine.load import load_models
from mura_cli.engine.localize import localize
from mura_cli.engine.predict import predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True, help="`mura prepare` output folder for FracAtlas")
    ap.add_argument("--model", required=True, action="append", help="run folder(s) trained on that index")
    ap.add_argument("--split", default="tune")
    ap.add_argument("--threshold-frac", type=float, default=0.2)
    args = ap.parse_args()
    index = load_index(args.index)
    rows = [r for r in index.select(split=args.split) if r.boxes]
    models = load_models(args.model)
    t0 = time.perf_counter()
    truth = {str(index.resolve(r)): [Box(*(round(v) for v in b)) for b in r.boxes] for r in rows}
    n = box_hits = peak_hits = no_box = 0
    chance = 0.0
    for pred in predict(
        [index.resolve(r) for r in rows], models, InferConfig(batch_size=16), per_image=True, with_cam=True
    ):
        loc = localize(pred, args.threshold_frac)
        gts = truth[pred.path]
        n += 1
        if loc.box is None:
            no_box += 1
        elif max(loc.box.iou(g) for g in gts) >= 0.3:
            box_hits += 1
        if any(g.contains(*loc.peak) for g in gts):
            peak_hits += 1
        chance += min(1.0, sum(g.area for g in gts) / (pred.width * pred.height))
    dt = time.perf_counter() - t0
    print(
        f"{n} held-out fractured images with {sum(len(v) for v in truth.values())} boxes ({args.split} split): "
        f"CAM box IoU>=0.3 with a fracture box {box_hits}/{n} ({box_hits / max(n, 1):.1%}); "
        f"CAM peak inside a fracture box {peak_hits}/{n} ({peak_hits / max(n, 1):.1%}); no box {no_box}; "
        f"{dt:.1f} s"
    )
    print(f"chance level for the peak test (fracture boxes' mean share of the image area): {chance / max(n, 1):.1%}")


if __name__ == "__main__":
    main()
