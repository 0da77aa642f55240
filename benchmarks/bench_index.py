"""Benchmark: indexing a MURA-layout tree of N image paths (default 40,000, the size of MURA-v1.1).

Generates the tree (empty PNG files with the official CSVs) in a temporary folder, then times
``build_index`` with and without the per-file content checks. Run by hand:

    python benchmarks/bench_index.py [--images 40000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mura_cli.data.index import build_index, write_index

PARTS = ("XR_ELBOW", "XR_FINGER", "XR_FOREARM", "XR_HAND", "XR_HUMERUS", "XR_SHOULDER", "XR_WRIST")


def make_tree(root: Path, n_images: int, images_per_study: int = 3) -> Path:
    mura = root / "MURA-v1.1"
    rows, studies = {"train": [], "valid": []}, {"train": [], "valid": []}
    n = 0
    patient = 0
    while n < n_images:
        patient += 1
        split = "valid" if patient % 12 == 0 else "train"
        part = PARTS[patient % len(PARTS)]
        label = patient % 2
        study = f"{split}/{part}/patient{patient:05d}/study1_{'positive' if label else 'negative'}"
        d = mura / study
        d.mkdir(parents=True)
        for i in range(1, images_per_study + 1):
            (d / f"image{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16 + b"IEND\xaeB`\x82")
            rows[split].append(f"MURA-v1.1/{study}/image{i}.png")
            n += 1
        studies[split].append(f"MURA-v1.1/{study}/,{label}")
    for split in ("train", "valid"):
        (mura / f"{split}_image_paths.csv").write_text("\n".join(rows[split]) + "\n")
        (mura / f"{split}_labeled_studies.csv").write_text("\n".join(studies[split]) + "\n")
    return mura


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=40_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        mura = make_tree(Path(tmp), args.images)
        t_make = time.perf_counter() - t0
        for check in (False, True):
            t0 = time.perf_counter()
            index = build_index(mura, check_files=check)
            t_index = time.perf_counter() - t0
            t0 = time.perf_counter()
            write_index(index, Path(tmp) / "out")
            t_write = time.perf_counter() - t0
            print(
                f"images={len(index.rows):,} studies={len({r.study for r in index.rows}):,} check_files={check}: "
                f"index {t_index:.2f} s, write {t_write:.2f} s ({len(index.rows) / t_index:,.0f} paths/s); "
                f"tree generation took {t_make:.1f} s"
            )


if __name__ == "__main__":
    main()
