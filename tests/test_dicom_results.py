"""DICOM results of ``mura predict`` / ``mura localize`` on the shared real CR DICOMs (MONOCHROME1 and 2, and a
two-frame file transcoded here): dciodvfy finds no errors, pydicom and highdicom read them back, the SR holds the
finding, the probabilities and the boxes, and every reference resolves to an input instance."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from synth import SHARED_DATA, make_multiframe, mura, one_error_line, save_tiny_run

hd = pytest.importorskip("highdicom", reason="DICOM results need highdicom (pip install 'mura-cli[pacs]')")
DICOM = SHARED_DATA / "dicom"
SOURCES = ("CR_extremity_tibia_RG3_uncompressed_explicitLE.dcm", "CR_hip_RG2_jpegls_lossless.dcm")


@pytest.fixture(scope="module")
def localized(tmp_path_factory):
    """``mura localize`` with ``--dicom-out`` over two real CR files and a two-frame one; the folder it ran in."""
    if not DICOM.is_dir():
        pytest.skip(f"real DICOMs not found at {DICOM}")
    root = tmp_path_factory.mktemp("dicom-results")
    run = save_tiny_run(root / "run")
    inputs = [DICOM / name for name in SOURCES]
    inputs.append(make_multiframe(DICOM / "CR_cspine_16x16_tiny_pydicom_bundled.dcm", root / "two_frames.dcm"))
    res = mura("localize", *inputs, "--model", run, "--dicom-out", "dicom", "--workers", "0", cwd=root)
    assert res.returncode == 0, res.stderr
    assert "3 SR, 4 PR, 4 SC" in res.stdout
    return root, inputs


def _objects(root: Path) -> dict[str, list[pydicom.Dataset]]:
    out: dict[str, list[pydicom.Dataset]] = {"sr": [], "pr": [], "sc": []}
    for f in sorted((root / "dicom").rglob("*.dcm")):
        ds = pydicom.dcmread(f)
        assert f.parent.name == ds.StudyInstanceUID
        out[f.name.split("-")[0]].append(ds)
    return out


@pytest.mark.slow
def test_every_object_passes_dciodvfy(localized):
    if not shutil.which("dciodvfy"):
        pytest.skip("dciodvfy not installed (Debian package dicom3tools; .ci/run installs it)")
    root, _ = localized
    files = sorted((root / "dicom").rglob("*.dcm"))
    assert len(files) == 11
    for f in files:
        res = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True, check=False)
        errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, f"{f.name}: {errors}"


@pytest.mark.slow
def test_reports_hold_finding_probabilities_and_regions(localized):
    root, inputs = localized
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in inputs}
    boxes = {(b["image"], b["frame"]): b for b in json.loads((root / "boxes.json").read_text())["boxes"]}
    objects = _objects(root)
    assert {ds.StudyInstanceUID for ds in objects["sr"]} == {
        pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID for p in inputs
    }
    regions = 0
    for ds in objects["sr"]:
        assert ds.SeriesDescription == "mura-cli AI result" and ds.Modality == "SR"
        sr = hd.sr.ComprehensiveSR.from_dataset(ds)
        (study,) = sr.content.get_image_measurement_groups()
        (prob,) = study.get_measurements()
        (finding,) = study.get_qualitative_evaluations()
        assert finding.value.meaning == ("Abnormal" if prob.value >= 0.5 else "Normal")
        for group in sr.content.get_planar_roi_measurement_groups():
            ref = group.roi.ContentSequence[0].ReferencedSOPSequence[0]
            path = sources[ref.ReferencedSOPInstanceUID]  # the reference resolves to an input instance
            frame = int(ref.get("ReferencedFrameNumber", 1)) - 1
            box = boxes[(str(path), frame)]
            x0, y0, x1, y1 = (box[k] for k in ("x0", "y0", "x1", "y1"))
            np.testing.assert_allclose(group.roi.value, [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
            (p,) = group.get_measurements()
            assert p.value == pytest.approx(box["probability"], abs=1e-6)
            assert ("ReferencedFrameNumber" in ref) == (path.name == "two_frames.dcm")
            regions += 1
    assert regions == 4


@pytest.mark.slow
def test_presentation_states_reference_the_sources_and_keep_their_polarity(localized):
    root, inputs = localized
    headers = {(h := pydicom.dcmread(p, stop_before_pixels=True)).SOPInstanceUID: h for p in inputs}
    objects = _objects(root)
    for pr in objects["pr"]:
        ref = pr.ReferencedSeriesSequence[0].ReferencedImageSequence[0]
        src = headers[ref.ReferencedSOPInstanceUID]
        assert pr.StudyInstanceUID == src.StudyInstanceUID and pr.PatientID == src.PatientID
        want = "INVERSE" if src.PhotometricInterpretation == "MONOCHROME1" else "IDENTITY"
        assert pr.PresentationLUTShape == want
        ann = pr.GraphicAnnotationSequence[0]
        assert len(ann.GraphicObjectSequence[0].GraphicData) == 10  # a closed box: 5 points
        assert ann.TextObjectSequence[0].UnformattedTextValue.startswith("p(abnormal) = ")
    for sc in objects["sc"]:
        src = headers[sc.SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert (sc.Rows, sc.Columns) == (src.Rows, src.Columns) and sc.StudyInstanceUID == src.StudyInstanceUID


@pytest.mark.slow
def test_predict_writes_reports_only_and_refuses_what_does_not_apply(tmp_path):
    if not DICOM.is_dir():
        pytest.skip(f"real DICOMs not found at {DICOM}")
    run = save_tiny_run(tmp_path / "run")
    res = mura("predict", DICOM / SOURCES[1], "--model", run, "--dicom-out", "out", "--workers", "0", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert [f.name.split("-")[0] for f in (tmp_path / "out").rglob("*.dcm")] == ["sr"]
    args = ("predict", DICOM / SOURCES[1], "--model", run, "--dicom-out", "o2", "--dicom-objects", "pr")
    res = mura(*args, cwd=tmp_path)
    assert res.returncode == 2 and "use mura localize" in one_error_line(res)
    res = mura("localize", DICOM / SOURCES[1], "--dicom-out", "o3", "--hash-ids", "--salt", "s", cwd=tmp_path)
    assert res.returncode == 2 and "real study and instance UIDs" in one_error_line(res)
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
