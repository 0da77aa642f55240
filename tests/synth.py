"""Test helpers: where the real data lives, and the synthetic datasets the fast tests build in tmp_path (a tiny
MURA-v1.1 tree, FracAtlas, a labelled CSV)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_DATA = Path(os.environ.get("MURA_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
"""Real test data (MURA sample, FracAtlas, DICOM) in ``../shared/data`` next to the repository, or where
``$MURA_SHARED_DATA`` says (a git worktree elsewhere); absent on most users' machines, so tests that need it
skip with a reason."""


def _radiograph(rng: np.random.Generator, h: int = 48, w: int = 40, abnormal: bool = False) -> np.ndarray:
    """A grey image with a bright 'bone' bar; abnormal ones get a bright blob (a learnable signal)."""
    img = rng.normal(40, 8, size=(h, w))
    img[:, w // 3 : w // 2] += 120
    if abnormal:
        img[h // 4 : h // 4 + 8, w // 2 : w // 2 + 8] += 90
    return np.clip(img, 0, 255).astype(np.uint8)


def make_studies(root: Path, images: int, per_study: int = 3, seed: int = 0) -> Path:
    """``images`` small PNG radiographs in folders of ``per_study`` (``root/studyNNN/imageK.png``); returns root."""
    rng = np.random.default_rng(seed)
    for i in range(images):
        folder = root / f"study{i // per_study:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_radiograph(rng)).save(folder / f"image{i % per_study}.png")
    return root


def make_mura_tree(
    root: Path,
    *,
    parts: tuple[str, ...] = ("XR_ELBOW", "XR_WRIST"),
    patients_per_part: int = 6,
    valid_patients: int = 2,
    images_per_study: int = 2,
    with_csvs: bool = True,
    seed: int = 0,
    size: tuple[int, int] = (48, 40),
) -> Path:
    """Write ``root/MURA-v1.1`` with train and valid splits (official CSVs optional); returns the MURA folder."""
    rng = np.random.default_rng(seed)
    mura = root / "MURA-v1.1"
    pid = 0
    for split, n_pat in (("train", patients_per_part), ("valid", valid_patients)):
        image_rows, study_rows = [], []
        for part in parts:
            for _ in range(n_pat):
                pid += 1
                for s in (1, 2) if pid % 3 == 0 else (1,):
                    label = (pid + s) % 2
                    study = f"{split}/{part}/patient{pid:05d}/study{s}_{'positive' if label else 'negative'}"
                    for i in range(1, images_per_study + 1):
                        p = mura / study / f"image{i}.png"
                        p.parent.mkdir(parents=True, exist_ok=True)
                        Image.fromarray(_radiograph(rng, *size, abnormal=bool(label))).save(p)
                        image_rows.append(f"MURA-v1.1/{study}/image{i}.png")
                    study_rows.append(f"MURA-v1.1/{study}/,{label}")
        if with_csvs:
            (mura / f"{split}_image_paths.csv").write_text("\n".join(image_rows) + "\n")
            (mura / f"{split}_labeled_studies.csv").write_text("\n".join(study_rows) + "\n")
    return mura


def make_fracatlas(root: Path, *, n_fractured: int = 4, n_normal: int = 6, seed: int = 0) -> Path:
    """A FracAtlas-shaped folder with its real defects: a truncated JPEG, an EXIF-rotated image with a box in the
    rotated frame, an image whose CSV label disagrees with its folder, and a CSV row without an image."""
    rng = np.random.default_rng(seed)
    (root / "images" / "Fractured").mkdir(parents=True)
    (root / "images" / "Non_fractured").mkdir(parents=True)
    regions = ("hand", "leg", "hip", "shoulder")
    csv_rows = [
        "image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,fracture_count,frontal,lateral,oblique"
    ]
    coco = {"images": [], "annotations": [], "categories": [{"id": 0, "name": "fractured"}]}
    n = 0
    for label, count in ((1, n_fractured), (0, n_normal)):
        for _ in range(count):
            n += 1
            name = f"IMG{n:07d}.jpg"
            folder = "Fractured" if label else "Non_fractured"
            arr = _radiograph(rng, 60, 50, abnormal=bool(label))
            Image.fromarray(arr).save(root / "images" / folder / name, quality=95)
            flags = [0, 0, 0, 0]
            flags[n % 4] = 1
            csv_label = label
            if n == 2:  # the FracAtlas IMG0003298 defect: folder and box say fractured, CSV says 0
                csv_label = 0
            csv_rows.append(f"{name},{','.join(map(str, flags))},0,0,0,{csv_label},{label},1,0,0")
            coco["images"].append({"id": n, "width": 50, "height": 60, "file_name": name})
            if label:
                coco["annotations"].append(
                    {"id": n, "image_id": n, "category_id": 0, "bbox": [10.0, 12.0, 8.0, 6.0], "area": 48.0}
                )
    # truncated JPEG (no end marker)
    last = root / "images" / "Non_fractured" / f"IMG{n:07d}.jpg"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) * 2 // 3])
    # EXIF-rotated image (orientation 6: rotate 90 degrees clockwise to display)
    rot = root / "images" / "Non_fractured" / f"IMG{n - 1:07d}.jpg"
    im = Image.open(rot)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(rot, exif=exif.tobytes(), quality=95)
    csv_rows.append("IMG9999999.jpg,1,0,0,0,0,0,0,0,0,1,0,0")  # a row with no image on disk
    (root / "dataset.csv").write_text("\n".join(csv_rows) + "\n")
    (root / "Annotations").mkdir()
    (root / "Annotations" / "COCO_fracture_masks.json").write_text(json.dumps(coco))
    assert regions  # documented order of the flags
    return root


MURA = shutil.which("mura") or "mura"


TINY_TRAIN = ("--arch", "test_resnet", "--part", "all", "--weights", "none", "--size", "32", "--epochs", "1")
"""``mura train`` flags for a one-epoch run of the tiny test network."""


def mura_tree_and_workdir(tmp_path: Path, patients_per_part: int) -> tuple[Path, Path]:
    """A small MURA tree (one valid patient, 40x36 images) and an empty working folder beside it."""
    data = make_mura_tree(tmp_path / "data", patients_per_part=patients_per_part, valid_patients=1, size=(40, 36))
    work = tmp_path / "work"
    work.mkdir()
    return data, work


def mura(*args: object, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``mura`` as a user would; returns the finished process."""
    full_env = {k: v for k, v in os.environ.items() if k != "MURA_MODEL"}
    full_env.update({"COLUMNS": "200", **(env or {})})
    return subprocess.run(
        [MURA, *map(str, args)], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300, check=False
    )


def one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.strip() and not ln.startswith(("model:", "warning:"))]
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def save_tiny_run(folder: Path) -> Path:
    """A random-weight test_resnet run folder (32 px input): fast, and its boxes are real CAM boxes."""
    import torch

    from mura_cli.config import TransformConfig
    from mura_cli.models.checkpoint import ModelConfig, save_run_model
    from mura_cli.models.registry import MuraNet

    torch.manual_seed(0)
    cfg = ModelConfig(arch="test_resnet", part="all", parts=("elbow", "wrist"), transform=TransformConfig(size=32))
    save_run_model(MuraNet("test_resnet"), folder, cfg)
    (folder / "summary.json").write_text("{}\n")
    return folder


def make_multiframe(src: Path, out: Path) -> Path:
    """Two frames (the image and its mirror) in one uncompressed file of the source's study, as a new instance of
    a multi-frame IOD (Multi-frame Grayscale Word Secondary Capture: CR is single-frame only)."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.dcmread(src)
    px = ds.pixel_array
    ds.PixelData = np.stack([px, px[:, ::-1]]).astype(px.dtype).tobytes()
    ds.NumberOfFrames = 2
    ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(out, enforce_file_format=True)
    return out
