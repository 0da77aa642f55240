"""The built-in demo data: the synthetic MURA-v1.1 set (layout, CSVs, boxes, DICOM, determinism), the
``boxes.csv`` support of the MURA reader, and the shipped sample DICOM."""

from __future__ import annotations

import csv
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mura_cli import read_image
from mura_cli.data.demo import BOXES_FILE, DEMO_MANIFEST, DEMO_PARTS, generate_demo_set, sample_dicom
from mura_cli.data.formats import MuraReader
from mura_cli.data.index import build_index
from mura_cli.data.phantom import Lesion, render_view
from mura_cli.errors import DataError
from mura_cli.metrics import roc_auc

from synth import make_mura_tree

SMALL = {"studies_per_part": 8, "size": 96, "workers": 1}
"""A tiny set (~50 images of 96 px): fast enough for every test."""


def _files(mura: Path) -> dict[str, bytes]:
    return {p.relative_to(mura).as_posix(): p.read_bytes() for p in sorted(mura.rglob("*")) if p.is_file()}


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return generate_demo_set(tmp_path_factory.mktemp("demo"), dicom_fraction=0.3, **SMALL)


# ------------------------------------------------------------------------------------------------ the set


def test_generation_is_deterministic(tmp_path, small_set):
    again = generate_demo_set(tmp_path, dicom_fraction=0.3, **SMALL)
    assert _files(again) == _files(small_set)
    other_seed = generate_demo_set(tmp_path / "seed1", dicom_fraction=0.3, seed=1, **SMALL)
    assert _files(other_seed) != _files(small_set)


def test_layout_and_official_csvs(small_set):
    assert small_set.name == "MURA-v1.1"
    for split in ("train", "valid"):
        images = _rows(small_set / f"{split}_image_paths.csv")
        studies = _rows(small_set / f"{split}_labeled_studies.csv")
        assert images and studies and all(len(r) == 1 for r in images) and all(len(r) == 2 for r in studies)
        for (path,) in images:  # headerless, MURA-v1.1/<split>/XR_<PART>/patientNNNNN/studyN_<label>/imageN.png
            parts = path.split("/")
            assert parts[:2] == ["MURA-v1.1", split] and parts[2] in DEMO_PARTS, path
            assert parts[3].startswith("patient") and len(parts[3]) == 12 and parts[4].startswith("study")
            assert parts[5].startswith("image") and parts[5].endswith((".png", ".dcm"))
            assert (small_set.parent / path).is_file()
        for folder, label in studies:
            assert folder.endswith("/") and folder.rstrip("/").endswith("_positive" if label == "1" else "_negative")
        views = Counter(p.rsplit("/", 1)[0] + "/" for (p,) in images)
        assert set(views) == {f for f, _ in studies} and set(views.values()) <= {1, 2, 3}
    assert _rows(small_set / BOXES_FILE)[0] == ["path", "x0", "y0", "x1", "y1"]
    assert (small_set / DEMO_MANIFEST).is_file()


def test_index_has_three_splits_and_boxes_on_abnormal_images_only(small_set):
    index = build_index(small_set.parent, tune_fraction=0.3)
    assert index.kind == "mura" and not index.problems
    assert {r.split for r in index.rows} == {"train", "tune", "valid"}
    assert {r.part for r in index.rows} == {"humerus", "forearm", "hand"}
    assert any(r.path.endswith(".dcm") for r in index.rows)  # DICOM images are indexed too
    abnormal = [r for r in index.rows if r.label == 1]
    assert abnormal and all(r.boxes for r in abnormal)
    assert not any(r.boxes for r in index.rows if r.label == 0)
    assert index.meta["boxes"] == len(_rows(small_set / BOXES_FILE)) - 1
    patients_by_split = {s: {r.patient for r in index.rows if r.split == s} for s in ("train", "tune", "valid")}
    assert not patients_by_split["train"] & patients_by_split["valid"]


def test_boxes_lie_inside_their_images(small_set):
    index = build_index(small_set, check_files=False)
    for row in (r for r in index.rows if r.boxes):
        height, width = read_image(index.resolve(row)).shape
        for x0, y0, x1, y1 in row.boxes:
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, row.path
            assert (x1 - x0) >= 0.1 * min(height, width) - 1 and (y1 - y0) >= 0.1 * min(height, width) - 1


def test_dicom_images_read_back_as_their_png_versions(tmp_path):
    as_png = generate_demo_set(tmp_path / "png", dicom_fraction=0.0, **SMALL)
    as_dicom = generate_demo_set(tmp_path / "dcm", dicom_fraction=1.0, **SMALL)
    pngs, dicoms = sorted(as_png.rglob("*.png")), sorted(as_dicom.rglob("*.dcm"))
    assert len(pngs) == len(dicoms) and not list(as_dicom.rglob("*.png"))
    photometrics, studies = Counter(), {}
    for png, dcm in zip(pngs, dicoms, strict=True):
        assert png.relative_to(as_png).with_suffix("") == dcm.relative_to(as_dicom).with_suffix("")
        reference, image = read_image(png), read_image(dcm)
        assert image.meta["format"] == "dicom"
        np.testing.assert_allclose(
            image.pixels, reference.pixels, atol=0.6 / 255
        )  # 8-bit PNG rounding; bone bright in both
        photometrics[image.meta["PhotometricInterpretation"]] += 1
        assert image.meta["BodyPartExamined"] == dcm.parts[-4][3:] and image.meta["Modality"] == "CR"
        studies.setdefault(dcm.parent, set()).add(image.meta["StudyInstanceUID"])
    assert photometrics["MONOCHROME1"] and photometrics["MONOCHROME2"]
    assert all(len(uids) == 1 for uids in studies.values())
    assert len({uid for uids in studies.values() for uid in uids}) == len(studies)


def test_dicom_files_carry_no_patient_identity(small_set):
    import pydicom

    for path in sorted(small_set.rglob("*.dcm"))[:5]:
        ds = pydicom.dcmread(path)
        assert str(ds.PatientName) == "" and ds.PatientID == "" and ds.PatientIdentityRemoved == "YES"
        assert ds.BitsStored in (12, 16) and ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2")
        assert "WindowCenter" in ds and "WindowWidth" in ds and "StudyInstanceUID" in ds
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_an_existing_set_is_reused_or_refused(tmp_path, small_set):
    first = generate_demo_set(tmp_path, **SMALL)
    stamp = (first / "train_image_paths.csv").stat().st_mtime_ns
    assert generate_demo_set(tmp_path, **SMALL) == first  # the same settings: the set already there
    assert (first / "train_image_paths.csv").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match="exists and is not this demo set"):
        generate_demo_set(tmp_path, seed=3, **SMALL)
    assert not list(tmp_path.glob(".MURA-v1.1.partial-*"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"parts": ["XR_ELBOW"]}, "not one the demo draws"),
        ({"parts": []}, "one or more distinct parts"),
        ({"studies_per_part": 2}, "at least 4"),
        ({"valid_fraction": 1.0}, "between 0 and 1"),
        ({"size": 32}, "between 64 and 2048"),
        ({"dicom_fraction": 1.5}, "between 0 and 1"),
    ],
)
def test_bad_settings_are_refused(tmp_path, kwargs, message):
    with pytest.raises(DataError, match=message):
        generate_demo_set(tmp_path, **{**SMALL, **kwargs})


def test_parts_by_short_name(tmp_path):
    mura = generate_demo_set(tmp_path, parts=["hand", "XR_FOREARM"], **SMALL)
    assert sorted(p.name for p in (mura / "train").iterdir()) == ["XR_FOREARM", "XR_HAND"]


# ------------------------------------------------------------------------------------------------ lesions


@pytest.mark.parametrize("part", ["humerus", "forearm", "hand"])
def test_hardware_box_covers_the_metal(part):
    for seed in range(4):
        image, boxes = render_view(
            np.random.default_rng(seed), part, height=256, width=200, lesion=Lesion("hardware", seed, 0.5)
        )
        assert image.dtype == np.float32 and image.shape == (256, 200) and 0.0 <= image.min() <= image.max() <= 1.0
        ((x0, y0, x1, y1),) = boxes
        inside = np.zeros(image.shape, dtype=bool)
        inside[y0:y1, x0:x1] = True
        assert image[inside].mean() > image[~inside].mean() + 0.15  # metal and bone inside, mostly air outside
        assert (image[inside] > 0.95).mean() > 5 * (image[~inside] > 0.95).mean()  # the metal is in the box


@pytest.mark.parametrize("part", ["humerus", "forearm", "hand"])
def test_fracture_box_sits_on_bone(part):
    for seed in range(4):
        image, boxes = render_view(
            np.random.default_rng(seed), part, height=256, width=200, lesion=Lesion("fracture", seed, 0.5, True)
        )
        ((x0, y0, x1, y1),) = boxes
        inside = image[y0:y1, x0:x1]
        assert np.percentile(inside, 90) > 0.45  # bone in the box
        assert inside.min() < np.percentile(inside, 90) - 0.2  # and a dark gap or soft tissue beside it


def test_normal_views_have_no_box():
    for part in ("humerus", "forearm", "hand"):
        _, boxes = render_view(np.random.default_rng(0), part, height=128, width=100, young=True)
        assert boxes == []


# ------------------------------------------------------------------------------------------------ boxes.csv


def test_boxes_csv_is_read_and_its_defects_reported(tmp_path):
    mura = make_mura_tree(tmp_path, patients_per_part=3)
    index = MuraReader().read(mura)
    positive = next(r for r in index.rows if r.label == 1)
    negative = next(r for r in index.rows if r.label == 0)
    (mura / BOXES_FILE).write_text(
        "path,x0,y0,x1,y1\n"
        f"MURA-v1.1/{positive.path},1,2,10,20\n"
        f"{positive.path},3.5,4,12,22\n"  # the MURA-v1.1/ prefix may be left out; two boxes on one image
        "MURA-v1.1/train/XR_ELBOW/patient09999/study1_positive/image1.png,1,1,5,5\n"
        f"MURA-v1.1/{positive.path},10,2,5,20\n"  # x1 < x0
        f"MURA-v1.1/{positive.path},a,b,c,d\n"
        f"MURA-v1.1/{negative.path},0,0,8,8\n"
    )
    index = MuraReader().read(mura)
    rows = {r.path: r for r in index.rows}
    assert rows[positive.path].boxes == ((1.0, 2.0, 10.0, 20.0), (3.5, 4.0, 12.0, 22.0))
    assert rows[negative.path].boxes == ((0.0, 0.0, 8.0, 8.0),)  # kept, and reported
    problems = {p.kind: p for p in index.problems}
    assert problems["box_without_image"].examples == ("train/XR_ELBOW/patient09999/study1_positive/image1.png",)
    assert problems["bad_csv_row"].count == 2
    assert problems["box_on_normal_image"].examples == (negative.path,)
    assert index.meta["boxes"] == 3


def test_without_boxes_csv_nothing_changes(tmp_path):
    index = MuraReader().read(make_mura_tree(tmp_path))
    assert not any(r.boxes for r in index.rows) and "boxes" not in index.meta and not index.problems


# ------------------------------------------------------------------------------------------------ sample DICOM


def test_sample_dicom_is_shipped_and_reads_to_1760_square():
    path = sample_dicom()
    assert path.is_file() and path.suffix == ".dcm"
    image = read_image(path)
    assert image.shape == (1760, 1760)
    assert image.meta["PhotometricInterpretation"] == "MONOCHROME1" and image.meta["Modality"] == "CR"
    notice = path.parent / "NOTICE.txt"
    assert "MIT License" in notice.read_text() and "NEMA" in notice.read_text()


# ------------------------------------------------------------------------------------------------ slow


@pytest.mark.slow
def test_default_set_size_speed_and_parallel_equals_serial(tmp_path):
    start = time.perf_counter()
    mura = generate_demo_set(tmp_path / "par")
    seconds = time.perf_counter() - start
    index = build_index(mura)
    images = Counter(r.split for r in index.rows)
    studies = Counter(r.split for r in {(r.split, r.study): r for r in index.rows}.values())
    dicom = sum(r.path.endswith(".dcm") for r in index.rows) / len(index.rows)
    print(f"\n{seconds:.1f} s, images {dict(images)}, studies {dict(studies)}, DICOM {dicom:.0%}")
    assert 500 <= len(index.rows) <= 700 and 0.1 <= dicom <= 0.2
    assert studies["train"] + studies["tune"] == 210 and studies["valid"] == 90
    assert seconds < 60
    serial = generate_demo_set(tmp_path / "one", workers=1)
    assert _files(serial) == _files(mura)


@pytest.mark.slow
def test_lesions_are_visible_but_not_a_global_shortcut(tmp_path):
    """The global maximum does not give the label away (markers and bone overlaps are as bright as metal), but a
    simple feature inside the lesion box (max of the smoothed image) separates lesions from the same box in
    normal images of the same part."""
    from scipy.ndimage import gaussian_filter

    index = build_index(generate_demo_set(tmp_path, studies_per_part=40), check_files=False)
    pixels = {r.path: read_image(index.resolve(r)).pixels for r in index.rows}
    labels = [r.label for r in index.rows]
    global_max = roc_auc(labels, [float(pixels[r.path].max()) for r in index.rows])
    rng = np.random.default_rng(0)
    normals = {p: [r for r in index.rows if r.label == 0 and r.part == p] for p in {r.part for r in index.rows}}
    y, score = [], []
    for row in (r for r in index.rows if r.boxes):
        image = pixels[row.path]
        other = pixels[normals[row.part][rng.integers(len(normals[row.part]))].path]
        for x0, y0, x1, y1 in row.boxes:
            rel = np.array([x0 / image.shape[1], y0 / image.shape[0], x1 / image.shape[1], y1 / image.shape[0]])
            for img, label in ((image, 1), (other, 0)):
                h, w = img.shape
                bx0, by0, bx1, by1 = (rel * [w, h, w, h]).astype(int)
                y.append(label)
                score.append(float(gaussian_filter(img[by0:by1, bx0:bx1], 2.0).max()))
    in_box = roc_auc(y, score)
    print(f"\nAUROC: global max {global_max:.3f}; smoothed max inside the lesion box {in_box:.3f}")
    assert global_max < 0.75
    assert in_box > 0.8


def test_the_shipped_reference_holds_for_the_default_demo_settings():
    """The defaults of ``mura demo`` (96 px, 4 epochs, 100 studies per part: about 2 min on 2 Intel cores) are
    the settings the shipped reference was measured with, so the default demo is compared with it."""
    import json

    from mura_cli.config import DemoConfig
    from mura_cli.engine.demo import REFERENCE_FILE, reference_settings

    ref = json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))
    assert reference_settings(DemoConfig(), "none") == ref["settings"]
    cfg = DemoConfig()
    assert (cfg.size, cfg.epochs, cfg.batch_size, cfg.studies_per_part, cfg.threads) == (96, 4, 32, 100, 2)
    assert set(ref["figures"]) == {"study AUROC", "study kappa", "studies flagged", "pointing"}
