"""Inference inputs: discovering images in files, folders and globs; MURA study paths; study and part of a frame."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from mura_cli.data.inputs import discover_inputs, mura_study_of, resolve_study_and_part
from mura_cli.errors import DataError


def _png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(path)
    return path


def test_discover_inputs_folders_globs_and_dicom_by_content(tmp_path):
    a = _png(tmp_path / "in" / "a.png")
    b = _png(tmp_path / "in" / "sub" / "b.PNG")
    _png(tmp_path / "in" / ".hidden" / "c.png")  # below a folder passed: skipped
    _png(tmp_path / "in" / ".d.png")
    notes = tmp_path / "in" / "notes.txt"
    notes.write_text("not an image")
    dicom = get_testdata_file("MR_small.dcm", download=False)
    if dicom:
        shutil.copy(dicom, tmp_path / "in" / "IM0001")  # DICOM without a suffix: found by content
    images, skipped = discover_inputs([tmp_path / "in", str(tmp_path / "in" / "*.png"), a])
    expected = [a, b] + ([tmp_path / "in" / "IM0001"] if dicom else [])
    assert sorted(images) == sorted(expected)
    assert len(images) == len(set(images)), "a file named twice is listed once"
    assert skipped == [notes]


def test_discover_inputs_hidden_path_typed_by_the_user_is_kept(tmp_path):
    hidden = _png(tmp_path / ".cache" / "x.png")
    assert discover_inputs([tmp_path / ".cache"]) == ([hidden], [])
    assert discover_inputs([hidden]) == ([hidden], [])


def test_discover_inputs_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        discover_inputs([tmp_path / "nope"])
    with pytest.raises(DataError, match="matches no file"):
        discover_inputs([str(tmp_path / "*.png")])


ELBOW = "XR_ELBOW/patient11186/study1_positive"


@pytest.mark.parametrize(
    ("path", "study", "split", "assumed"),
    [
        (f"MURA-v1.1/valid/{ELBOW}/image1.png", f"valid/{ELBOW}", "valid", False),
        (f"copy/valid/{ELBOW}/image1.png", f"valid/{ELBOW}", "valid", True),
        (f"MURA-v1.1/backup/valid/{ELBOW}/image1.png", f"valid/{ELBOW}", "valid", True),
        (
            "MURA-v1.1/Train/XR_HAND/patient00042/study2_negative/i.png",
            "train/XR_HAND/patient00042/study2_negative",
            "train",
            True,
        ),
        ("XR_WRIST/patient11400/study1_negative/i.png", "valid/XR_WRIST/patient11400/study1_negative", "valid", True),
        ("XR_WRIST/patient00007/study1_negative/i.png", "train/XR_WRIST/patient00007/study1_negative", "train", True),
        (
            "x/XR_SHOULDER/patient00005/study3_other/deeper/i.png",
            "train/XR_SHOULDER/patient00005/study3_other",
            "train",
            True,
        ),
    ],
)
def test_mura_study_of(tmp_path, path, study, split, assumed):
    m = mura_study_of(tmp_path / path)
    assert m.study == f"MURA-v1.1/{study}/"
    assert (m.split, m.assumed) == (split, assumed)
    assert m.part == study.split("/")[1][3:].lower()
    part, patient, study_path = m  # unpacks as (part, patient, study)
    assert (part, patient, study_path) == (m.part, m.patient, m.study) == (m[0], m[1], m[2])


@pytest.mark.parametrize(
    "path", ["scans/a.png", "XR_elbow/patient1/study1_positive/a.png", "XR_ELBOW/patient1/study1/a.png", "a.dcm"]
)
def test_not_a_mura_path(tmp_path, path):
    assert mura_study_of(tmp_path / path) is None


MURA_FILE = f"/d/MURA-v1.1/valid/{ELBOW}/image1.png"
MURA_STUDY = f"MURA-v1.1/valid/{ELBOW}/"


@pytest.mark.parametrize(
    ("path", "meta", "part", "per_image", "expected"),
    [
        (MURA_FILE, {}, None, False, ("elbow", MURA_STUDY)),
        (MURA_FILE, {"BodyPartExamined": "HAND"}, "XR_WRIST", False, ("wrist", MURA_STUDY)),
        (MURA_FILE, {"frame": 2}, None, True, ("elbow", f"{MURA_FILE}#frame2")),
        ("/d/a.dcm", {"StudyInstanceUID": "1.2.3", "BodyPartExamined": "XR_HAND"}, None, False, ("hand", "1.2.3")),
        ("/d/scans/a.png", {}, "elbow", False, ("elbow", "/d/scans")),
        ("/d/scans/a.png", {}, None, False, ("", "/d/scans")),  # unknown: the model's parts say nothing of it
        ("/d/scans/a.png", {}, None, True, ("", "/d/scans/a.png")),
    ],
)
def test_resolve_study_and_part(path, meta, part, per_image, expected):
    assert resolve_study_and_part(path, meta, part, per_image) == expected
