"""Dataset indexing: MURA (CSVs and folders), FracAtlas, generic CSV, patient split, index I/O."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mura_cli.data.index import (
    IndexRow,
    build_index,
    find_dataset,
    load_index,
    split_by_patient,
    summarize,
    write_index,
)
from mura_cli.errors import DataError

from synth import SHARED_DATA, make_fracatlas, make_mura_tree


def _problems(index):
    return {p.kind: p for p in index.problems}


def test_mura_tree_from_parent_or_mura_folder(tmp_path):
    mura = make_mura_tree(tmp_path)
    a, b = build_index(tmp_path), build_index(mura)
    assert a.kind == b.kind == "mura"
    assert [r.path for r in a.rows] == [r.path for r in b.rows]
    assert all(r.path.startswith(("train/", "valid/")) for r in a.rows)
    assert {r.part for r in a.rows} == {"elbow", "wrist"}
    assert not a.problems


def test_mura_labels_and_studies(tmp_path):
    mura = make_mura_tree(tmp_path)
    index = build_index(mura, tune_fraction=0)
    for r in index.rows:
        assert r.label == int("positive" in r.study)
        assert r.study == "/".join(r.path.split("/")[:4])
        assert r.patient == r.path.split("/")[2]


def test_mura_crosscheck_reports_every_defect(tmp_path):
    mura = make_mura_tree(tmp_path)
    rows = build_index(mura).rows
    # a listed image deleted, an unlisted image added, one study's CSV label flipped
    (mura / rows[0].path).unlink()
    extra = (mura / rows[1].path).with_name("image9.png")
    extra.write_bytes((mura / rows[1].path).read_bytes())
    csv = mura / "train_labeled_studies.csv"
    lines = csv.read_text().splitlines()
    path, label = lines[-1].rsplit(",", 1)
    lines[-1] = f"{path},{1 - int(label)}"
    csv.write_text("\n".join(lines) + "\n")
    index = build_index(mura)
    probs = _problems(index)
    assert probs["missing_file"].count == 1 and rows[0].path in probs["missing_file"].examples
    assert probs["unlisted_image"].count == 1
    assert probs["label_disagrees"].count == 1
    flipped = path.removeprefix("MURA-v1.1/").rstrip("/")
    assert {r.label for r in index.rows if r.study == flipped} == {1 - int(label)}  # the CSV label wins
    assert len(index.rows) == len(rows)  # one gone, one added


def test_mura_without_csvs_uses_folders(tmp_path):
    mura = make_mura_tree(tmp_path, with_csvs=False)
    index = build_index(mura)
    assert len(index.rows) > 0 and not index.problems
    assert {r.split for r in index.rows} <= {"train", "tune", "valid"}


def test_bad_layout_reported(tmp_path):
    mura = make_mura_tree(tmp_path, with_csvs=False)
    stray = mura / "train" / "XR_ELBOW" / "stray.png"
    stray.write_bytes(b"")
    assert _problems(build_index(mura))["bad_layout"].count == 1


def test_split_by_patient_is_disjoint_stratified_and_seeded(tmp_path):
    mura = make_mura_tree(tmp_path, patients_per_part=30)
    a = build_index(mura, tune_fraction=0.2, seed=1)
    b = build_index(mura, tune_fraction=0.2, seed=1)
    c = build_index(mura, tune_fraction=0.2, seed=2)
    assert a.rows == b.rows and a.rows != c.rows
    train_p = {r.patient for r in a.rows if r.split == "train"}
    tune_p = {r.patient for r in a.rows if r.split == "tune"}
    assert train_p and tune_p and not train_p & tune_p
    assert {r.split for r in a.rows if r.path.startswith("valid/")} == {"valid"}
    for part in ("elbow", "wrist"):
        n_tune = len({r.patient for r in a.rows if r.split == "tune" and r.part == part})
        assert 3 <= n_tune <= 9  # ~20% of 30 patients per part


def test_split_rejects_bad_fraction():
    with pytest.raises(DataError):
        split_by_patient([IndexRow("a.png", "train", "hand", "p", "s", 0)], tune_fraction=1.5)


def test_fracatlas_defects_reported_not_crashing(tmp_path):
    root = make_fracatlas(tmp_path / "fracatlas")
    index = build_index(root, tune_fraction=0)
    assert index.kind == "fracatlas"
    assert len(index.rows) == 10
    probs = _problems(index)
    assert probs["missing_file"].count == 1  # the CSV row without an image
    assert probs["label_disagrees"].count == 1 and "IMG0000002.jpg" in probs["label_disagrees"].examples[0]
    assert probs["truncated"].count == 1
    assert probs["exif_rotated"].count == 1
    by_name = {Path(r.path).name: r for r in index.rows}
    assert by_name["IMG0000002.jpg"].label == 1  # folder and box agree: fractured
    assert by_name["IMG0000001.jpg"].boxes == ((10.0, 12.0, 18.0, 18.0),)
    assert all(r.study == r.patient == Path(r.path).stem for r in index.rows)
    assert {r.part for r in index.rows} <= {"hand", "leg", "hip", "shoulder", "mixed"}


def test_generic_csv(tmp_path):
    mura = make_mura_tree(tmp_path, with_csvs=False)
    files = sorted(p.relative_to(mura).as_posix() for p in mura.rglob("*.png"))
    lines = ["path,label,part,study,patient"]
    for i, f in enumerate(files):
        lines.append(f"{f},{i % 2},XR_HAND,s{i // 2},p{i // 4}")
    lines.append("missing.png,1,hand,sx,px")
    lines.append("bad.png,maybe,hand,sx,px")
    csv = mura / "labels.csv"
    csv.write_text("\n".join(lines) + "\n")
    kind, _ = find_dataset(csv)
    assert kind == "csv"
    index = build_index(csv, tune_fraction=0)
    assert len(index.rows) == len(files)
    assert {r.part for r in index.rows} == {"hand"}
    probs = _problems(index)
    assert probs["missing_file"].count == 1 and probs["bad_csv_row"].count == 1


def test_not_a_dataset(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="not a dataset layout"):
        build_index(tmp_path)
    with pytest.raises(DataError, match="no such file"):
        build_index(tmp_path / "nope")


def test_write_and_load_roundtrip(tmp_path):
    root = make_fracatlas(tmp_path / "fa")
    index = build_index(root)
    write_index(index, tmp_path / "out")
    back = load_index(tmp_path / "out")
    assert back.rows == index.rows
    assert back.root == index.root.resolve()
    assert [p.kind for p in back.problems] == [p.kind for p in index.problems]
    with pytest.raises(DataError, match="mura prepare"):
        load_index(tmp_path / "empty")


def test_summarize_counts():
    rows = [
        IndexRow("a", "train", "hand", "p1", "s1", 1),
        IndexRow("b", "train", "hand", "p1", "s1", 1),
        IndexRow("c", "valid", "hand", "p2", "s2", 0),
    ]
    assert summarize(rows) == {
        "hand": {"train": {"abnormal": {"studies": 1, "images": 2}}, "valid": {"normal": {"studies": 1, "images": 1}}}
    }


def test_indexing_many_paths_is_fast(tmp_path):
    """A functional check that 2,000 (empty) files index without per-file decoding; the timing lives in benchmarks/."""
    mura = tmp_path / "MURA-v1.1"
    for i in range(1000):
        d = mura / "train" / "XR_HAND" / f"patient{i:05d}" / "study1_negative"
        d.mkdir(parents=True)
        for j in (1, 2):
            (d / f"image{j}.png").write_bytes(b"")
    index = build_index(mura, check_files=False)
    assert len(index.rows) == 2000


# ------------------------------------------------------------------------------------------------ real data

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data not present (real radiographs)")


@needs_shared
def test_real_mura_sample_counts():
    index = build_index(SHARED_DATA / "mura-sample" / "MURA-v1.1")
    assert len(index.rows) == 10 and len({r.study for r in index.rows}) == 10
    assert sum(r.label for r in index.rows) == 7
    assert not index.problems


@needs_shared
def test_real_humerus_counts():
    index = build_index(SHARED_DATA / "mura-humerus-64")
    assert len(index.rows) == 1132 and len({r.study for r in index.rows}) == 558
    assert sum(r.label for r in index.rows) == 534
    tune = {r.patient for r in index.rows if r.split == "tune"}
    train = {r.patient for r in index.rows if r.split == "train"}
    assert tune and not tune & train


@needs_shared
def test_real_fracatlas_counts_and_defects():
    index = build_index(SHARED_DATA / "fracatlas")
    assert len(index.rows) == 3122
    assert sum(r.label for r in index.rows) == 472
    assert sum(len(r.boxes) for r in index.rows) == 638
    probs = _problems(index)
    assert probs["truncated"].count >= 70
    assert "images/Non_fractured/IMG0004028.jpg" in probs["truncated"].examples
    assert probs["exif_rotated"].count >= 1
    assert os.path.basename(index.rows[0].path).startswith("IMG")
