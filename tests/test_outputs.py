"""What mura writes: where the index goes, MURA-format study paths, CSV contents and line endings, the overlay
label, library warnings as log lines, and count wording."""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from mura_cli.cam import Box, cam_peak
from mura_cli.config import TransformConfig, to_dict
from mura_cli.data.index import default_out_dir, find_prepared
from mura_cli.data.inputs import mura_study_of
from mura_cli.data.readers import read_image
from mura_cli.engine.results import EpochResult
from mura_cli.engine.serving.localize import Localization
from mura_cli.engine.training.run import write_metrics_csv as _write_metrics_csv
from mura_cli.engine.training.train_data import resolve_index
from mura_cli.models.checkpoint import ModelConfig, save_run_model
from mura_cli.models.registry import MuraNet
from mura_cli.report.overlay import render_overlay
from mura_cli.utils import plural

from synth import make_fracatlas, make_mura_tree


def mura(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real ``mura`` executable in a subprocess."""
    return subprocess.run(["mura", *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False)


def _run_dir(d: Path, *, silent: bool = False) -> Path:
    """A tiny saved model; ``silent`` zeroes its head so the class activation map is 0 everywhere."""
    torch.manual_seed(0)
    net = MuraNet("test_resnet")
    if silent:
        with torch.no_grad():
            net.fc.weight.zero_()
    cfg = {"arch": "test_resnet", "part": "all", "threshold": 0.5, "transform": to_dict(TransformConfig(size=32))}
    save_run_model(net, d, ModelConfig.from_json(cfg))
    return d


def _assert_lf_only(path: Path) -> None:
    data = path.read_bytes()
    assert data, f"{path} is empty"
    assert b"\r" not in data, f"{path} has \\r\\n line endings"


# ============================================================================================ 1. index location


def test_prepare_writes_index_in_working_folder_not_in_dataset(tmp_path):
    ds = make_mura_tree(tmp_path / "share" / "mura-sample")
    work = tmp_path / "work"
    work.mkdir()
    before = sorted(p.relative_to(ds) for p in ds.rglob("*"))
    res = mura("prepare", ds, cwd=work)
    assert res.returncode == 0, res.stderr
    index_dir = work / ".mura" / "mura-sample-MURA-v1.1"
    assert (index_dir / "index.csv").is_file() and (index_dir / "summary.json").is_file()
    assert sorted(p.relative_to(ds) for p in ds.rglob("*")) == before  # nothing written into the dataset
    assert not (ds / ".mura").exists()
    assert ".mura/mura-sample-MURA-v1.1/index.csv" in res.stdout
    _assert_lf_only(index_dir / "index.csv")


def test_default_out_dir_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ds = make_mura_tree(tmp_path / "mura-sample")
    assert default_out_dir(ds) == Path(".mura/mura-sample-MURA-v1.1")
    assert default_out_dir(ds.parent) == Path(".mura/mura-sample-MURA-v1.1")  # the parent of MURA-v1.1 too
    fa = make_fracatlas(tmp_path / "fracatlas")
    assert default_out_dir(fa) == Path(".mura/fracatlas")


def test_train_finds_the_index_prepare_wrote(tmp_path, monkeypatch):
    """``mura train --data ROOT`` loads the index ``mura prepare ROOT`` wrote to ./.mura/<name>."""
    from mura_cli.data.index import build_index, write_index

    ds = make_mura_tree(tmp_path / "data")
    other = make_mura_tree(tmp_path / "elsewhere" / "data", patients_per_part=3)  # same name, other dataset
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert find_prepared(ds) is None
    write_index(build_index(ds, tune_fraction=0.5, seed=3), default_out_dir(ds))
    assert find_prepared(ds) == Path(".mura/data-MURA-v1.1")
    index, where = resolve_index(str(ds))
    assert where == Path(".mura/data-MURA-v1.1") and index.meta["tune_fraction"] == 0.5
    assert find_prepared(other) is None  # an index of another dataset with the same name is not used


def test_index_left_inside_the_dataset_by_older_versions_is_still_found(tmp_path, monkeypatch):
    from mura_cli.data.index import build_index, write_index

    ds = make_mura_tree(tmp_path / "data")
    write_index(build_index(ds), ds / ".mura")
    monkeypatch.chdir(tmp_path)
    assert find_prepared(ds) == ds / ".mura"


# ============================================================================================ 2. --format mura


def test_mura_study_of_official_layout_and_renamed_folders(tmp_path):
    official = tmp_path / "MURA-v1.1" / "valid" / "XR_ELBOW" / "patient11186" / "study1_positive" / "image1.png"
    m = mura_study_of(official)
    assert m.study == "MURA-v1.1/valid/XR_ELBOW/patient11186/study1_positive/"
    assert (m.part, m.patient, m.split, m.assumed) == ("elbow", "patient11186", "valid", False)
    part, patient, study = m  # still unpacks as the old triple
    assert (part, patient, study) == ("elbow", "patient11186", m.study) and m[2] == m.study

    renamed = tmp_path / "copy" / "valid" / "XR_ELBOW" / "patient11186" / "study1_positive" / "image1.png"
    m = mura_study_of(renamed)
    assert m.study == "MURA-v1.1/valid/XR_ELBOW/patient11186/study1_positive/" and m.assumed

    train = tmp_path / "mine" / "train" / "XR_HAND" / "patient00042" / "study2_negative" / "image3.png"
    assert mura_study_of(train).study == "MURA-v1.1/train/XR_HAND/patient00042/study2_negative/"

    # no split folder: the split comes from the patient number (valid patients are 11185 and later)
    bare = tmp_path / "XR_WRIST" / "patient11400" / "study1_negative" / "image1.png"
    m = mura_study_of(bare)
    assert m.study == "MURA-v1.1/valid/XR_WRIST/patient11400/study1_negative/" and m.assumed
    assert mura_study_of(tmp_path / "XR_WRIST" / "patient00007" / "study1_negative" / "a.png").split == "train"

    # MURA-v1.1 higher up but not right above the split: the path is still derived from the layout
    deep = tmp_path / "MURA-v1.1" / "backup" / "valid" / "XR_ELBOW" / "patient11186" / "study1_positive" / "i.png"
    m = mura_study_of(deep)
    assert m.study == "MURA-v1.1/valid/XR_ELBOW/patient11186/study1_positive/" and m.assumed
    assert mura_study_of(tmp_path / "scans" / "a.png") is None


def test_mura_study_of_relative_path(tmp_path, monkeypatch):
    d = tmp_path / "valid" / "XR_ELBOW" / "patient11186" / "study1_positive"
    d.mkdir(parents=True)
    monkeypatch.chdir(d)
    m = mura_study_of("image1.png")
    assert m.study == "MURA-v1.1/valid/XR_ELBOW/patient11186/study1_positive/" and m.assumed


@pytest.mark.slow
def test_predict_format_mura_with_renamed_folder_matches_official_csv(tmp_path):
    ds = make_mura_tree(tmp_path / "orig", patients_per_part=1, valid_patients=2)
    copied = tmp_path / "work" / "from-alice" / "valid"
    shutil.copytree(ds / "valid", copied)  # valid/ copied elsewhere: no MURA-v1.1 in the path
    run = _run_dir(tmp_path / "run")
    res = mura(
        "predict", copied, "--model", run, "--format", "mura", "--out", "m.csv", "--images", "i.csv",
        "--workers", "0", "--device", "cpu", cwd=tmp_path / "work",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    written = [row[0] for row in csv.reader((tmp_path / "work" / "m.csv").read_text().splitlines())]
    official = [row[0] for row in csv.reader((ds / "valid_labeled_studies.csv").read_text().splitlines())]
    assert sorted(written) == sorted(official)  # the official scorer merges every row
    for name in ("m.csv", "i.csv"):
        _assert_lf_only(tmp_path / "work" / name)


# ============================================================================================ 3. empty peak


def test_no_box_means_no_peak():
    assert cam_peak(np.zeros((8, 8))) == (0, 0)  # argmax of a flat map: a corner, not evidence
    loc = Localization(
        path="a.png", frame=0, study="a", probability=0.1, box=None, cam_max=0.0, threshold=math.nan,
        peak=cam_peak(np.zeros((8, 8))),
    )  # fmt: skip
    row = loc.to_row()
    assert row["peak_x"] is None and row["peak_y"] is None and row["x0"] is None and row["threshold"] is None
    boxed = Localization(
        path="a.png", frame=0, study="a", probability=0.9, box=Box(1, 2, 5, 6), cam_max=1.0, threshold=0.2,
        peak=(3, 4),
    )  # fmt: skip
    assert (boxed.to_row()["peak_x"], boxed.to_row()["peak_y"]) == (3, 4)


@pytest.mark.slow
def test_localize_csv_peak_empty_without_box(tmp_path):
    from PIL import Image

    flat = np.full((40, 30), 90, np.uint8)
    flat[:, 15:] = 160  # not blank (a constant image is refused at stage sanity, issue 11)
    Image.fromarray(flat).save(tmp_path / "flat.png")
    run = _run_dir(tmp_path / "run", silent=True)  # its map is 0 everywhere: no box
    res = mura(
        "localize", "flat.png", "--model", run, "--out", "boxes.csv", "--workers", "0", "--device", "cpu",
        cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader((tmp_path / "boxes.csv").read_text().splitlines()))
    assert len(rows) == 1
    assert rows[0]["x0"] == "" and rows[0]["peak_x"] == "" and rows[0]["peak_y"] == ""
    _assert_lf_only(tmp_path / "boxes.csv")


# ============================================================================================ 4. overlay label


def _label_box(img) -> tuple[int, int]:
    """Height and width of the black label box in the top-left corner of an overlay on a grey image."""
    a = np.asarray(img)
    black = (a == 0).all(axis=2)
    height = int(np.argmin(black[:, 0])) if not black[:, 0].all() else a.shape[0]
    width = int(np.argmin(black[0])) if not black[0].all() else a.shape[1]
    return height, width


@pytest.mark.parametrize(("h", "w"), [(2140, 1760), (1000, 800), (512, 400)])
def test_overlay_label_scales_with_the_image(h, w):
    img = render_overlay(np.full((h, w), 0.5, np.float32), np.zeros((h, w), np.float32), None, 0.873)
    box_h, box_w = _label_box(img)
    assert 0.025 * h <= box_h <= 0.08 * h
    assert box_w <= w
    inside = np.asarray(img)[:box_h, :box_w]
    assert (inside > 200).all(axis=2).sum() > 0.05 * box_h * box_w  # white text on it


def test_overlay_label_fits_small_and_narrow_images():
    for h, w in ((64, 64), (400, 90)):
        img = render_overlay(np.full((h, w), 0.5, np.float32), np.zeros((h, w), np.float32), None, 0.5)
        assert img.size == (w, h)
        box_h, box_w = _label_box(img)
        assert box_w < w and 8 <= box_h < h / 2


def test_overlay_label_on_a_real_2140px_dicom(shared_data, tmp_path):
    img = read_image(shared_data / "dicom" / "CR_hip_RG2_jpegls_lossless.dcm")
    h, w = img.shape
    cam = np.zeros((h, w), np.float32)
    cam[800:1000, 900:1100] = 1.0
    over = render_overlay(img.pixels, cam, Box(900, 800, 1100, 1000), 0.873)
    over.save(tmp_path / "overlay.png")
    box_h, _ = _label_box(over)
    assert box_h >= 0.025 * h  # ~ 27 px or more when the 2140 px plate is fit to a 1000 px screen


# ============================================================================================ 5. library warnings


def _dicom_with_invalid_uid(path: Path, uid: str) -> Path:
    from pydicom import config
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.Modality = "CR"
    ds.Rows, ds.Columns = 24, 20
    ds.PhotometricInterpretation, ds.SamplesPerPixel = "MONOCHROME2", 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(24 * 20, dtype="<u2").reshape(24, 20) * 8).tobytes()
    ds["SOPInstanceUID"] = DataElement(0x00080018, "UI", uid, validation_mode=config.IGNORE)
    old = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(path, enforce_file_format=True)
    finally:
        config.settings.writing_validation_mode = old
    return path


def test_dicom_warnings_become_one_log_line(tmp_path, caplog):
    path = _dicom_with_invalid_uid(tmp_path / "odd.dcm", "1.2.not-a-uid-test-outputs")
    caplog.set_level(logging.WARNING, logger="mura_cli.data.readers")
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        img = read_image(path)
        read_image(path)  # the same message again: not repeated
    assert img.shape == (24, 20)
    assert [w for w in escaped if issubclass(w.category, UserWarning)] == []
    records = [r for r in caplog.records if r.name == "mura_cli.data.readers"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    line = records[0].getMessage()
    assert str(path) in line and "1.2.not-a-uid-test-outputs" in line and "\n" not in line
    assert "Please see" not in line


@pytest.mark.slow
def test_predict_shows_dicom_warnings_as_tidy_lines(tmp_path):
    a = _dicom_with_invalid_uid(tmp_path / "a.dcm", "1.2.bad-uid")
    _dicom_with_invalid_uid(tmp_path / "b.dcm", "1.2.bad-uid")  # same message: shown once
    run = _run_dir(tmp_path / "run")
    res = mura("predict", a.parent, "--model", run, "--workers", "0", "--device", "cpu", "--per-image", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "UserWarning" not in res.stderr and "warn_and_log" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if "1.2.bad-uid" in ln]
    assert len(lines) == 1 and ".dcm: Invalid value for VR UI" in lines[0]


@pytest.mark.slow
def test_shared_dicoms_read_without_library_warnings(shared_data, caplog):
    """What the real files do today: none of them makes pydicom warn (the test above covers files that do)."""
    caplog.set_level(logging.DEBUG, logger="mura_cli.data.readers")
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        for path in sorted((shared_data / "dicom").glob("*.dcm")):
            read_image(path)
    assert not [w for w in escaped if issubclass(w.category, UserWarning)]
    assert not [r for r in caplog.records if r.name == "mura_cli.data.readers"]


# ============================================================================================ 6-7. metrics.csv


def _epoch(epoch: int, lr: float) -> EpochResult:
    return EpochResult(
        epoch=epoch, train_loss=0.6931471805599453, tune_loss=0.5, tune_kappa=0.123456789, tune_auroc=0.9,
        tune_image_auroc=math.nan, lr=lr, seconds=12.3456789, best=epoch == 1,
    )  # fmt: skip


def test_metrics_csv_keeps_small_learning_rates(tmp_path):
    row = _epoch(1, 1e-7).to_row()
    assert row["lr"] == 1e-7 and row["tune_kappa"] == 0.123457 and row["seconds"] == 12.3457
    assert math.isnan(row["tune_image_auroc"]) and row["best"] is True
    assert _epoch(2, 3.3333333e-9).to_row()["lr"] == 3.33333e-9
    _write_metrics_csv(tmp_path, [_epoch(1, 1e-7), _epoch(2, 2.5e-10)])
    rows = list(csv.DictReader((tmp_path / "metrics.csv").read_text().splitlines()))
    assert [float(r["lr"]) for r in rows] == [1e-7, 2.5e-10]
    assert json.loads(json.dumps(_epoch(1, 1e-7).to_row(), allow_nan=True))["lr"] == 1e-7
    _assert_lf_only(tmp_path / "metrics.csv")


# ============================================================================================ 8. wording


def test_plural():
    assert plural(1, "image") == "1 image"
    assert plural(0, "image") == "0 images"
    assert plural(2, "image") == "2 images"
    assert plural(1, "study", "studies") == "1 study"
    assert plural(1234, "study", "studies") == "1,234 studies"


def test_written_csvs_have_unix_line_endings(tmp_path):
    from mura_cli.data.index import build_index, write_index
    from mura_cli.utils import write_csv as _write_csv

    index_csv, _ = write_index(build_index(make_mura_tree(tmp_path / "d")), tmp_path / "ix")
    _assert_lf_only(index_csv)
    _write_metrics_csv(tmp_path, [_epoch(1, 1e-3)])
    _assert_lf_only(tmp_path / "metrics.csv")
    _write_csv(tmp_path / "r.csv", [{"study": "a,b", "probability": 0.5}, {"study": "c", "probability": 0.25}])
    _assert_lf_only(tmp_path / "r.csv")
    assert list(csv.reader((tmp_path / "r.csv").open(newline=""))) == [
        ["study", "probability"],
        ["a,b", "0.5"],
        ["c", "0.25"],
    ]
