"""Dataset formats behind one contract, the MURA path parser, the problem collector and the image-file checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from mura_cli.data.checks import check_image_file, check_image_files, exif_orientation
from mura_cli.data.formats import DATASET_READERS, CsvReader, FracAtlasReader, MuraReader, find_reader
from mura_cli.data.records import MAX_EXAMPLES, Problems, parse_mura_path

from synth import make_fracatlas, make_mura_tree

# ------------------------------------------------------------------------------------------------ readers


def test_registry_order_and_contract():
    assert [r.name for r in DATASET_READERS] == ["csv", "fracatlas", "mura"]
    for reader in DATASET_READERS:
        assert callable(reader.can_read) and callable(reader.locate) and callable(reader.read)


def test_each_layout_finds_its_reader(tmp_path):
    mura = make_mura_tree(tmp_path / "m")
    fracatlas = make_fracatlas(tmp_path / "fa")
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n")
    assert isinstance(find_reader(mura), MuraReader)
    assert isinstance(find_reader(tmp_path / "m"), MuraReader)  # the folder above MURA-v1.1
    assert MuraReader().locate(tmp_path / "m") == mura
    assert isinstance(find_reader(fracatlas), FracAtlasReader)
    assert isinstance(find_reader(labels), CsvReader)
    assert find_reader(tmp_path / "fa" / "dataset.csv") is not None  # any CSV reads as a labelled CSV
    assert find_reader(tmp_path / "fa" / "images") is None
    assert all(not r.can_read(tmp_path / "nope") for r in DATASET_READERS)


def test_readers_read_without_the_front_door(tmp_path):
    mura = make_mura_tree(tmp_path / "m")
    index = MuraReader().read(tmp_path / "m", check_files=False)
    assert index.kind == "mura" and index.root == mura and len(index) > 0
    assert {r.split for r in index.rows} == {"train", "valid"}  # the tune split is the front door's job
    fa = FracAtlasReader().read(make_fracatlas(tmp_path / "fa"), check_files=False)
    assert {p.kind for p in fa.problems} == {"missing_file", "label_disagrees"}  # no file checks asked


# ------------------------------------------------------------------------------------------------ MURA paths


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "/d/train/XR_ELBOW/patient00001/study1_positive/i.png",
            ("/d/train", "XR_ELBOW", "patient00001", "study1_positive", 1, "elbow"),
        ),
        ("XR_HAND/patient00002/study2_negative", ("", "XR_HAND", "patient00002", "study2_negative", 0, "hand")),
        ("a/XR_HAND/patient00002/study2_other/x/y.png", ("a", "XR_HAND", "patient00002", "study2_other", None, "hand")),
        ("a/XR_Hand/patient00002/study2_negative/x.png", None),
        ("a/XR_HAND/patientA/study2_negative/x.png", None),
        ("a/XR_HAND/patient1/study2/x.png", None),
    ],
)
def test_parse_mura_path_by_name(path, expected):
    found = parse_mura_path(path)
    if expected is None:
        assert found is None
    else:
        assert (found.above, found.part_dir, found.patient, found.study_dir, found.label, found.part) == expected


def test_parse_mura_path_relative_takes_folders_by_position():
    found = parse_mura_path("train/elbow/p1/study1/image1.png", relative=True)
    assert (found.above, found.part, found.patient, found.study_dir, found.label) == (
        "train",
        "elbow",
        "p1",
        "study1",
        None,
    )
    assert parse_mura_path("train/XR_ELBOW/patient1/study1_negative", relative=True).label == 0
    assert parse_mura_path("train/XR_ELBOW/stray.png", relative=True) is None


# ------------------------------------------------------------------------------------------------ problems


def test_problems_collector():
    found = Problems()
    found.add("missing_file", "gone", [f"f{i}" for i in range(8)])
    found.add("bad_layout", "odd", [])
    found.note("missing_csv", "no CSV")
    problems = found.to_tuple()
    assert [(p.kind, p.count) for p in problems] == [("missing_file", 8), ("missing_csv", 1)]
    assert problems[0].examples == tuple(f"f{i}" for i in range(MAX_EXAMPLES))
    assert problems[1].examples == ()


# ------------------------------------------------------------------------------------------------ file checks


def _jpeg(path, orientation=None, **kwargs):
    arr = (np.arange(30 * 40) % 251).reshape(30, 40).astype(np.uint8)
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif
    Image.fromarray(arr).save(path, format="JPEG", **kwargs)
    return path


@pytest.mark.parametrize(
    ("orientation", "expected"), [(None, None), (1, None), (3, "exif_rotated"), (6, "exif_rotated")]
)
def test_exif_orientation_checked_by_pillow(tmp_path, orientation, expected):
    path = _jpeg(tmp_path / "x.jpg", orientation)
    assert exif_orientation(path) == orientation
    assert check_image_file(path) == expected


def test_exif_with_a_large_icc_profile(tmp_path):
    path = _jpeg(tmp_path / "icc.jpg", 8, icc_profile=b"\0" * 70_000)  # 70 KB of header after the EXIF segment
    assert exif_orientation(path) == 8
    assert check_image_file(path) == "exif_rotated"


def test_file_defects(tmp_path):
    full = _jpeg(tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(full[: len(full) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "ok.png").read_bytes()[:-12])
    (tmp_path / "folder.png").mkdir()
    bad_exif = b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*garbage\xff\xd9"
    (tmp_path / "bad_exif.jpg").write_bytes(bad_exif)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's warnings about a corrupt EXIF stay inside the check
        kinds = {p.name: check_image_file(p) for p in sorted(tmp_path.iterdir())}
    assert kinds == {
        "bad_exif.jpg": None,
        "cut.jpg": "truncated",
        "cut.png": "truncated",
        "empty.png": "empty_file",
        "folder.png": "unreadable",
        "full.jpg": None,
        "ok.png": None,
    }
    problems = check_image_files(tmp_path, sorted(kinds))
    assert [(p.kind, p.count) for p in problems] == [("empty_file", 1), ("unreadable", 1), ("truncated", 2)]
