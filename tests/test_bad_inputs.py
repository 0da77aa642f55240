"""Bad and odd inputs (issue 11): every one is named with its stage, the good ones are scored, and the run
exits 6 ("finished, some inputs failed") with an errors CSV beside the output; a clean folder exits 0."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mura_cli.data.image import BlankImageError, check_not_blank
from mura_cli.data.image import Image as MuraImage
from mura_cli.data.inputs import scan_inputs
from mura_cli.data.readers import raster_format, read_image
from mura_cli.engine.hooks import errors_path
from test_cli_usage import make_run

from synth import SHARED_DATA, _radiograph, mura

DICOM_BASE = SHARED_DATA / "dicom" / "CR_cspine_16x16_tiny_pydicom_bundled.dcm"
needs_dicom = pytest.mark.skipif(not DICOM_BASE.exists(), reason="../shared/data/dicom is absent")


def _png(path: Path, arr: np.ndarray | None = None, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    Image.fromarray(_radiograph(rng) if arr is None else arr).save(path, format=fmt)
    return path


def _dicom(path: Path, *, window: tuple[int, int] | None = None, constant: bool = False) -> Path:
    import pydicom

    ds = pydicom.dcmread(DICOM_BASE)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if constant:
        arr = np.full_like(ds.pixel_array, 2000)
        ds.PixelData = arr.tobytes()
    ds.save_as(path)
    return path


def _corpus(root: Path) -> tuple[list[Path], dict[Path, str], list[Path]]:
    """Write the corpus; returns ``(good files, {bad file: stage}, skipped paths)``."""
    root.mkdir(parents=True)
    good = [
        _png(root / "good.png"),
        _png(root / "spaces and ünïcode" / "rádiograph 1.png"),
        _png(root / "suffixless_png"),
        _png(root / "png_named.txt"),
        _png(root / "suffixless_jpeg", fmt="JPEG"),
        _png(root / "jpeg_named.dat", fmt="JPEG"),
        _png(root / "jpeg_named.png", fmt="JPEG"),
        _png(root / "image.tif", fmt="TIFF"),
        _png(root / "image_bmp", fmt="BMP"),
    ]
    bad: dict[Path, str] = {}
    for name in ("empty.png", "empty.jpg", "empty.dcm"):
        (root / name).write_bytes(b"")
        bad[root / name] = "discover"
    for name in ("garbage.png", "garbage.jpg", "garbage.dcm"):
        (root / name).write_bytes(b"this is not an image at all " * 10)
        bad[root / name] = "decode"
    head = (root / "good.png").read_bytes()
    (root / "truncated_header.png").write_bytes(head[:20])
    bad[root / "truncated_header.png"] = "decode"
    jpeg = (root / "suffixless_jpeg").read_bytes()
    (root / "truncated_header.jpg").write_bytes(jpeg[:10])
    bad[root / "truncated_header.jpg"] = "decode"
    bad[_png(root / "constant.png", np.full((40, 40), 128, np.uint8))] = "sanity"
    os.symlink("loop.png", root / "loop.png")
    bad[root / "loop.png"] = "discover"
    (root / "folder.png").mkdir()
    (root / "empty folder").mkdir()
    (root / "notes.txt").write_text("not an image\n")
    skipped = [root / "folder.png", root / "notes.txt"]
    if DICOM_BASE.exists():
        good.append(shutil.copy(DICOM_BASE, root / "good.dcm"))
        good.append(_dicom(root / "window_misses.dcm", window=(60000, 10)))
        bad[_dicom(root / "constant.dcm", constant=True)] = "sanity"
        data = DICOM_BASE.read_bytes()
        (root / "truncated.dcm").write_bytes(data[: len(data) // 2])
        bad[root / "truncated.dcm"] = "decode"
        _dicom_variants(root / "dicom", good, bad)
    _raster_variants(root / "rasters", good, bad)
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root reads anything: the case needs a normal user
        locked = _png(root / "locked.png")
        locked.chmod(0)
        bad[locked] = "discover"
    return [Path(g) for g in good], bad, skipped


def _dicom_variants(root: Path, good: list, bad: dict) -> None:
    """DICOM that real archives send: read what can be read right, name the rest (all from a real CR base)."""
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import RLELossless

    root.mkdir()

    def base() -> pydicom.Dataset:
        ds = pydicom.dcmread(DICOM_BASE)
        for k in ("WindowCenter", "WindowWidth"):
            if k in ds:
                delattr(ds, k)
        return ds

    def save(ds: pydicom.Dataset, name: str, outcome: list | dict, **kw: object) -> None:
        ds.save_as(root / name, **kw)
        if isinstance(outcome, list):
            outcome.append(root / name)
        else:
            outcome[root / name] = "decode"

    a = base().pixel_array
    ds = base()
    ds.preamble = None
    save(ds, "no_preamble.dcm", good, enforce_file_format=False)
    ds = base()
    ds.compress(RLELossless)
    save(ds, "rle.dcm", good)
    ds = base()
    ds.PixelRepresentation, ds.PixelData = 1, (a.astype(np.int16) - 2000).tobytes()
    save(ds, "signed16.dcm", good)
    ds = base()
    ds.FloatPixelData, ds.BitsAllocated, ds.BitsStored, ds.HighBit = a.astype(np.float32).tobytes(), 32, 32, 31
    del ds.PixelData
    save(ds, "float32.dcm", good)
    ds = base()
    ds.NumberOfFrames, ds.PixelData = 2, np.stack([a, a[::-1]]).tobytes()
    save(ds, "multiframe.dcm", good)
    ds, lut = base(), Dataset()
    lut.LUTDescriptor, lut.LUTData = [4096, 0, 16], [int(v) for v in np.linspace(0, 65535, 4096)]
    lut["LUTData"].VR = "US"
    ds.VOILUTSequence = Sequence([lut])
    save(ds, "voi_lut_sequence.dcm", good)
    ds = base()
    del ds.PixelData
    save(ds, "no_pixel_data.dcm", bad)
    ds = base()
    ds.Rows = 1000
    save(ds, "lying_rows.dcm", bad)
    ds = base()
    ds.BitsAllocated = 32
    save(ds, "lying_bits_allocated.dcm", bad)
    ds = base()
    ds.PhotometricInterpretation = "YBR_FULL"
    save(ds, "ybr_16bit.dcm", bad)
    ds = base()
    ds.PhotometricInterpretation = "PALETTE COLOR"
    save(ds, "palette_without_lut.dcm", bad)
    ds = base()
    ds.compress(RLELossless)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    save(ds, "rle_broken_stream.dcm", bad)


def _raster_variants(root: Path, good: list, bad: dict) -> None:
    """RGBA, palette, CMYK, 16-bit, EXIF-rotated and TIFF rasters read; broken TIFFs and a bomb named."""
    import struct
    import zlib

    grey = _radiograph(np.random.default_rng(7))
    root.mkdir()
    for name, im in (
        ("rgba.png", Image.fromarray(grey).convert("RGBA")),
        ("palette.png", Image.fromarray(grey).convert("P")),
        ("cmyk.jpg", Image.fromarray(grey).convert("CMYK")),
        ("sixteen_bit.png", Image.fromarray(grey.astype(np.uint16) * 200)),
        ("plain.tif", Image.fromarray(grey)),
    ):
        im.save(root / name)
        good.append(root / name)
    im = Image.fromarray(grey)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(root / "exif_rotated.jpg", exif=exif.tobytes())
    good.append(root / "exif_rotated.jpg")
    (root / "truncated.tif").write_bytes((root / "plain.tif").read_bytes()[:40])
    (root / "garbage.tif").write_bytes(b"II*\x00" + b"\xff" * 50)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    # a decompression bomb: a 1 kB PNG that declares 60000 x 60000 pixels
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
    bomb = b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")
    (root / "bomb_60000x60000.png").write_bytes(bomb)
    for name in ("truncated.tif", "garbage.tif", "bomb_60000x60000.png"):
        bad[root / name] = "decode"


def _errors(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == ["path", "stage", "reason"]
    return {r["path"]: r for r in rows}


# ------------------------------------------------------------------------------------------ library, fast


def test_scan_sniffs_rasters_by_signature_and_names_every_other_path(tmp_path):
    good, bad, skipped = _corpus(tmp_path / "c")
    scan = scan_inputs([tmp_path / "c"])
    assert set(good) <= set(scan.images)
    discover_bad = {p for p, stage in bad.items() if stage == "discover"}
    assert {i.path for i in scan.failed} == discover_bad
    assert {i.path for i in scan.skipped} == set(skipped)
    assert all(i.reason for i in scan.issues)
    loop = next(i for i in scan.failed if i.path.name == "loop.png")
    assert "loop" in loop.reason
    assert raster_format(b"BM not a bitmap, just text") is None


def test_blank_image_is_refused_and_a_faint_one_stretched(caplog):
    with pytest.raises(BlankImageError, match="blank image"):
        check_not_blank(MuraImage(np.full((32, 32), 0.5, np.float32), {"path": "c.png"}))
    faint = np.full((32, 32), 0.5, np.float32)
    faint[:, :16] += 0.004
    with caplog.at_level("WARNING", logger="mura_cli"):
        out = check_not_blank(MuraImage(faint, {"path": "faint.png"}))
    assert out.pixels.max() - out.pixels.min() > 0.9 and out.meta["stretched"]
    assert "faint.png" in caplog.text


@needs_dicom
def test_dicom_window_that_misses_the_data_falls_back_with_a_warning(tmp_path, caplog):
    path = _dicom(tmp_path / "w.dcm", window=(60000, 10))
    with caplog.at_level("WARNING", logger="mura_cli"):
        pixels = read_image(path).pixels
    assert pixels.max() - pixels.min() > 0.5, "the window was kept: all pixels at one value"
    assert "w.dcm" in caplog.text and "percentile" in caplog.text


def test_dicom_suffix_without_a_header_says_so(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_bytes(b"garbage" * 40)
    from mura_cli.errors import DataError

    with pytest.raises(DataError, match="no DICOM header"):
        read_image(path)


# ------------------------------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    run_dir = make_run(root / "run")
    good, bad, skipped = _corpus(root / "corpus")
    return root, run_dir, good, bad, skipped


def _check_named(res, errors_csv: Path, bad: dict[Path, str], skipped: list[Path]) -> None:
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    assert res.returncode == 6, res.stderr
    rows = _errors(errors_csv)
    for path, stage in bad.items():
        assert str(path) in res.stderr, f"{path.name} not named"
        assert rows[str(path)]["stage"] == stage, (path.name, rows[str(path)])
        assert rows[str(path)]["reason"]
    for path in skipped:
        assert str(path) in res.stderr and rows[str(path)]["stage"] == "discover"
    assert str(errors_csv) in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.slow
def test_predict_over_bad_inputs_exits_6_and_lists_them(corpus_run):
    root, run_dir, good, bad, skipped = corpus_run
    out = root / "results.csv"
    res = mura("predict", root / "corpus", "--model", run_dir, "--out", out, "--images", root / "images.csv", cwd=root)
    _check_named(res, errors_path(out), bad, skipped)
    scored = {r["path"] for r in csv.DictReader((root / "images.csv").read_text(encoding="utf-8").splitlines())}
    assert scored == {str(g) for g in good}
    if DICOM_BASE.exists():
        assert "window_misses.dcm" in res.stderr and "percentile" in res.stderr
    # the errors CSV is an output too: not replaced without --overwrite
    out.unlink()
    again = mura("predict", root / "corpus", "--model", run_dir, "--out", out, cwd=root)
    assert again.returncode == 2 and "errors.csv" in again.stderr and "--overwrite" in again.stderr


@pytest.mark.slow
def test_localize_over_bad_inputs_exits_6_and_lists_them(corpus_run):
    root, run_dir, good, bad, skipped = corpus_run
    out = root / "boxes.json"
    res = mura("localize", root / "corpus", "--model", run_dir, "--out", out, cwd=root)
    _check_named(res, root / "boxes.errors.csv", bad, skipped)
    boxes = json.loads(out.read_text())["boxes"]
    assert {b["image"] for b in boxes} == {str(g) for g in good}


@pytest.mark.slow
def test_clean_folder_exits_0_without_errors_csv(tmp_path):
    run_dir = make_run(tmp_path / "run")
    _png(tmp_path / "clean" / "a.png")
    _png(tmp_path / "clean" / "b b.png")
    res = mura("predict", tmp_path / "clean", "--model", run_dir, "--out", tmp_path / "r.csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "r.errors.csv").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = mura("predict", empty, "--model", run_dir, "--out", tmp_path / "e.csv", cwd=tmp_path)
    assert res.returncode == 2 and "no image files" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.slow
def test_prepare_and_benchmark_name_bad_files_in_a_mura_tree_with_missing_csv_rows(tmp_path):
    from synth import make_mura_tree

    mura_dir = make_mura_tree(tmp_path / "d", patients_per_part=3, valid_patients=2)
    for name in ("train_image_paths.csv", "valid_labeled_studies.csv"):  # rows missing from the CSVs
        lines = (mura_dir / name).read_text().splitlines()
        (mura_dir / name).write_text("\n".join(lines[1:]) + "\n")
    study = sorted((mura_dir / "valid").rglob("study1_*"))[0]
    (study / "image8.png").write_bytes(b"garbage" * 20)
    (study / "image9.png").write_bytes(b"")
    res = mura("prepare", tmp_path / "d", "--out", tmp_path / "idx", cwd=tmp_path)
    assert res.returncode == 0 and "Traceback" not in res.stderr + res.stdout
    for kind in ("unlisted_image", "unlabeled_study", "empty_file", "not_an_image"):
        assert kind in res.stdout + res.stderr
    run_dir = make_run(tmp_path / "run")
    rep = tmp_path / "rep"
    res = mura(
        "benchmark", "--data", tmp_path / "d", "--model", run_dir, "--split", "valid", "--out", rep, cwd=tmp_path
    )
    assert res.returncode == 6 and "Traceback" not in res.stderr, res.stderr
    rows = _errors(rep / "report.errors.csv")
    assert {Path(p).name for p in rows} == {"image8.png", "image9.png"}
    assert (rep / "report.json").is_file() and "2 inputs failed" in res.stderr.splitlines()[-1]
