"""Readers: DICOM (the transfer syntaxes of pydicom's bundled samples, and every codec in ../shared/data/dicom),
pydicom transcodes, raster formats, windowing, metadata privacy, the pixel limit and broken inputs.

The DICOM samples that pydicom ships in its package cover the transfer syntaxes on any clone (as
torchxrayvision's tests do); they are never downloaded. Real radiographs live in ``../shared/data`` next to the
repository and are the wider set; tests that need them skip with a reason when they are absent. Everything else
is written into ``tmp_path`` (never into the repository).
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from PIL import ImageFile
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import (
    JPEG2000,
    BasicTextSRStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from mura_cli.data.readers import (
    Image,
    apply_window,
    dicom_to_unit,
    is_dicom,
    is_image_file,
    pil_to_unit,
    read_image,
    read_images,
    robust_range,
)
from mura_cli.errors import DataError, MuraError

from synth import SHARED_DATA

DICOM_DIR = SHARED_DATA / "dicom"
MURA_SAMPLE = SHARED_DATA / "mura-sample" / "MURA-v1.1"
TRUNCATED_FRACATLAS = SHARED_DATA / "fracatlas" / "images" / "Non_fractured" / "IMG0004028.jpg"
NO_DATA = f"real data not found at {SHARED_DATA} (../shared/data next to the repository)"

CSPINE = "CR_cspine_16x16_tiny_pydicom_bundled.dcm"
TIBIA = "CR_extremity_tibia_RG3_uncompressed_explicitLE.dcm"

# (rows, columns) by file-name prefix, from the shared data README.
EXPECTED_SHAPES = {
    "CR_extremity_tibia_RG3": (1760, 1760),
    "CR_hand_PA_kodak": (2500, 2048),
    "CR_hip_RG2": (2140, 1760),
    "CR_chest_PA_RG1": (1955, 1841),
    "CR_cspine_16x16": (16, 16),
}
# Reference points measured on the images: (row fraction, col fraction) -> value, bright then dark.
REFERENCE_POINTS = {
    "CR_extremity_tibia_RG3": (((0.5, 0.475), 0.65), ((0.5, 0.3), 0.10)),
    "CR_hand_PA_kodak": (((0.8, 0.475), 0.61), ((0.8, 0.1), 0.07)),
    "CR_hip_RG2": (((0.3, 0.425), 0.73), ((0.8, 0.3), 0.0)),
    "CR_chest_PA_RG1": (((0.5, 0.5), 0.87), ((0.3, 0.25), 0.53)),  # MONOCHROME1: spine vs lung
}
META_KEYS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "BodyPartExamined",
    "ViewPosition",
    "PixelSpacing",
    "PhotometricInterpretation",
    "frame",
)


def _files(folder: Path, pattern: str) -> list:
    files = sorted(folder.glob(pattern)) if folder.is_dir() else []
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=NO_DATA), id="no-shared-data")]
    return [pytest.param(f, id=f.name) for f in files]


DICOM_FILES = _files(DICOM_DIR, "*.dcm")
REFERENCE_FILES = [
    f for f in DICOM_FILES if f.values[0] is None or f.values[0].name.startswith(tuple(REFERENCE_POINTS))
]
MURA_PNGS = _files(MURA_SAMPLE, "train/*/*/*/*.png")


def _prefix(path: Path) -> str | None:
    return next((k for k in EXPECTED_SHAPES if path.name.startswith(k)), None)


@functools.lru_cache(maxsize=16)
def _read_cached(path: Path) -> Image:
    """Decode each real DICOM once per session (the big ones take a fraction of a second each)."""
    return read_image(path)


@pytest.fixture(scope="module", autouse=True)
def _free_decoded_images():
    yield
    _read_cached.cache_clear()


def _shared_dicom(shared_data: Path, name: str) -> Path:
    path = shared_data / "dicom" / name
    if not path.is_file():
        pytest.skip(f"{path} not found in the shared data")
    return path


def _patch(pixels: np.ndarray, row: float, col: float, half: int = 8) -> float:
    """Mean of a small square around a (row fraction, col fraction) point."""
    h, w = pixels.shape
    y, x = int(row * h), int(col * w)
    return float(pixels[y - half : y + half + 1, x - half : x + half + 1].mean())


def _assert_unit(pixels: np.ndarray, shape: tuple[int, int] | None = None) -> None:
    assert pixels.dtype == np.float32
    assert pixels.ndim == 2
    assert np.isfinite(pixels).all()
    assert pixels.min() >= 0.0
    assert pixels.max() <= 1.0
    if shape is not None:
        assert pixels.shape == shape


# --------------------------------------------------------------------------------------------- real DICOM


@pytest.mark.parametrize("path", DICOM_FILES)
def test_every_shared_dicom_decodes(path):
    img = _read_cached(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    expected = EXPECTED_SHAPES.get(_prefix(path) or "", (int(ds.Rows), int(ds.Columns)))
    _assert_unit(img.pixels, expected)
    assert img.shape == expected
    assert img.pixels.std() > 0.01, "a decoded radiograph is not flat"
    assert img.meta["format"] == "dicom"
    assert (img.meta["height"], img.meta["width"]) == expected
    assert img.meta["TransferSyntaxUID"] == str(ds.file_meta.TransferSyntaxUID)
    assert is_dicom(path)
    assert is_image_file(path)


@pytest.mark.parametrize("path", REFERENCE_FILES)
def test_shared_dicom_bone_brighter_than_background(path):
    points = REFERENCE_POINTS[_prefix(path)]
    pixels = _read_cached(path).pixels
    ((bright_at, bright_value), (dark_at, dark_value)) = points
    bright, dark = _patch(pixels, *bright_at), _patch(pixels, *dark_at)
    assert bright == pytest.approx(bright_value, abs=0.08)
    assert dark == pytest.approx(dark_value, abs=0.08)
    assert bright > dark + 0.25, f"{path.name}: bone {bright:.3f} not brighter than background {dark:.3f}"


@pytest.mark.parametrize("path", DICOM_FILES)
def test_shared_dicom_metadata_without_patient_identity(path):
    img = _read_cached(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    meta = img.meta
    for key in META_KEYS:
        assert key in meta, key
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert meta[key] == str(ds[key].value)
    assert meta["BodyPartExamined"] == (str(ds.BodyPartExamined) if ds.get("BodyPartExamined") else None)
    assert meta["PhotometricInterpretation"] == str(ds.PhotometricInterpretation)
    assert meta["frame"] == 0
    assert meta["frames"] == 1
    spacing = meta["PixelSpacing"]
    assert spacing is None or (len(spacing) == 2 and all(isinstance(v, float) and v > 0 for v in spacing))
    _assert_no_patient_identity(meta, ds)


def _assert_no_patient_identity(meta: dict, ds: Dataset) -> None:
    assert not any("patient" in str(k).lower() for k in meta)
    secrets = [str(ds.get("PatientName", "")), str(ds.get("PatientID", ""))]
    secrets += [part for part in secrets[0].split("^") if len(part) >= 4]
    values = " | ".join(repr(v) for v in meta.values())
    for secret in secrets:
        if secret:
            assert secret not in values, f"patient identity {secret!r} leaked into meta"


def test_known_pixel_spacing(shared_data):
    assert _read_cached(_shared_dicom(shared_data, "CR_hand_PA_kodak_j2k_lossless.dcm")).meta["PixelSpacing"] == (
        0.115,
        0.115,
    )
    # ImagerPixelSpacing is used when PixelSpacing is absent.
    assert read_image(_shared_dicom(shared_data, CSPINE)).meta["PixelSpacing"] == (0.1, 0.1)


@pytest.mark.parametrize("name", [CSPINE, TIBIA, "CR_chest_PA_RG1_j2k_lossy.dcm"])
def test_monochrome1_is_inverted(shared_data, name):
    path = _shared_dicom(shared_data, name)
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    arr = ds.pixel_array
    as_mono1 = dicom_to_unit(arr, ds)
    np.testing.assert_array_equal(read_image(path).pixels, as_mono1)
    ds.PhotometricInterpretation = "MONOCHROME2"
    as_mono2 = dicom_to_unit(arr, ds)
    np.testing.assert_allclose(as_mono1, 1.0 - as_mono2, atol=1e-6)
    np.testing.assert_allclose(dicom_to_unit(arr, ds, "MONOCHROME1"), as_mono1, atol=1e-6)
    assert not np.allclose(as_mono1, as_mono2)


@pytest.mark.parametrize(
    ("reference", "lossless", "lossy"),
    [
        (
            "CR_extremity_tibia_RG3_uncompressed_explicitLE.dcm",
            "CR_extremity_tibia_RG3_j2k_lossless.dcm",
            "CR_extremity_tibia_RG3_j2k_lossy.dcm",
        ),
        (
            "CR_hip_RG2_jpeg_lossless_sv1.dcm",
            "CR_hip_RG2_jpegls_lossless.dcm",
            "CR_hip_RG2_jpeg_extended_lossy.dcm",
        ),
    ],
    ids=["tibia-uncompressed-j2k", "hip-jpeg-jpegls"],
)
def test_encodings_of_the_same_image_agree(shared_data, reference, lossless, lossy):
    ref = _read_cached(_shared_dicom(shared_data, reference))
    exact = _read_cached(_shared_dicom(shared_data, lossless))
    approx = _read_cached(_shared_dicom(shared_data, lossy))
    np.testing.assert_array_equal(exact.pixels, ref.pixels)
    assert approx.shape == ref.shape
    diff = np.abs(approx.pixels - ref.pixels)
    assert float(diff.mean()) < 0.02
    assert float(np.percentile(diff, 99)) < 0.1
    assert exact.meta["StudyInstanceUID"] == ref.meta["StudyInstanceUID"] == approx.meta["StudyInstanceUID"]
    assert exact.meta["TransferSyntaxUID"] != ref.meta["TransferSyntaxUID"] != approx.meta["TransferSyntaxUID"]


# --------------------------------------------------------------------------------------------- pydicom's samples

# Samples pydicom ships in its package, by the transfer syntax each covers (found locally, never downloaded).
BUNDLED = {
    "MR_small.dcm": ExplicitVRLittleEndian,
    "MR_small_implicit.dcm": ImplicitVRLittleEndian,
    "MR_small_bigendian.dcm": ExplicitVRBigEndian,
    "MR_small_RLE.dcm": RLELossless,
    "MR_small_jp2klossless.dcm": JPEG2000Lossless,
    "MR_small_jpeg_ls_lossless.dcm": JPEGLSLossless,
    "CT_small.dcm": ExplicitVRLittleEndian,
    "image_dfl.dcm": DeflatedExplicitVRLittleEndian,
    "JPEG2000.dcm": JPEG2000,
    "JPGExtended.dcm": JPEGExtended12Bit,
    "JPEGLSNearLossless_16.dcm": JPEGLSNearLossless,
    "SC_rgb_jpeg_dcmtk.dcm": JPEGBaseline8Bit,
    "SC_rgb_jpeg_gdcm.dcm": JPEGLosslessSV1,
    "SC_rgb_rle_2frame.dcm": RLELossless,
}
# Lossless encodings of MR_small.dcm: they must decode to exactly its pixels.
MR_SMALL_LOSSLESS = [n for n in BUNDLED if n.startswith("MR_small_")]


def _bundled(name: str) -> Path:
    """A DICOM sample from pydicom's package; skips when this pydicom does not ship it (never downloads)."""
    found = get_testdata_file(name, download=False)
    if not found:
        pytest.skip(f"{name} is not among the test files of pydicom {pydicom.__version__}")
    return Path(found)


@pytest.mark.parametrize("name", list(BUNDLED))
def test_bundled_dicom_decodes(name):
    path = _bundled(name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    images = read_images(path)
    assert len(images) == int(ds.get("NumberOfFrames", 1) or 1)
    for i, img in enumerate(images):
        _assert_unit(img.pixels, (int(ds.Rows), int(ds.Columns)))
        assert img.pixels.std() > 0.01, "a decoded image is not flat"
        assert img.meta["format"] == "dicom"
        assert img.meta["frame"] == i
        assert img.meta["TransferSyntaxUID"] == BUNDLED[name]
        assert img.meta["PhotometricInterpretation"] == str(ds.PhotometricInterpretation)
        _assert_no_patient_identity(img.meta, ds)
    assert is_dicom(path)
    assert is_image_file(path)


@pytest.mark.parametrize("name", MR_SMALL_LOSSLESS)
def test_bundled_lossless_encodings_agree(name):
    reference = read_image(_bundled("MR_small.dcm"))
    img = read_image(_bundled(name))
    np.testing.assert_array_equal(img.pixels, reference.pixels)
    assert img.meta["SOPInstanceUID"] == reference.meta["SOPInstanceUID"]


@pytest.mark.parametrize("name", ["MR_small.dcm", "CT_small.dcm", "JPEG2000.dcm", "JPGExtended.dcm"])
def test_bundled_dicom_follows_the_pixel_pipeline(name):
    """The reader's pixels are pydicom's decoded array through :func:`dicom_to_unit` (rescale, window, invert)."""
    path = _bundled(name)
    ds = pydicom.dcmread(path)
    np.testing.assert_array_equal(read_image(path).pixels, dicom_to_unit(ds.pixel_array, ds))


def test_bundled_truncated_dicom_is_one_line_error():
    path = _bundled("MR_truncated.dcm")
    with pytest.raises(DataError, match="truncated") as info:
        read_image(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------- transcodes


def _shared_or_skip() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(NO_DATA)
    return SHARED_DATA


def _mr_small_ds() -> Dataset:
    return pydicom.dcmread(_bundled("MR_small.dcm"))


def _cspine_ds(shared_data: Path) -> Dataset:
    return pydicom.dcmread(_shared_dicom(shared_data, CSPINE))


def _tibia_crop_ds(shared_data: Path) -> Dataset:
    """A 64x320 crop of the tibia across the bone/air edge (non-square, to catch transposes)."""
    ds = pydicom.dcmread(_shared_dicom(shared_data, TIBIA))
    crop = np.ascontiguousarray(ds.pixel_array[848:912, 500:820])
    ds.PixelData = crop.tobytes()
    ds.Rows, ds.Columns = crop.shape
    return ds


# Each source is read on demand: pydicom's MR_small always, the shared radiographs when present.
SOURCES = {
    "mr_small": _mr_small_ds,
    "cspine": lambda: _cspine_ds(_shared_or_skip()),
    "tibia_crop": lambda: _tibia_crop_ds(_shared_or_skip()),
}


def _stored(ds: Dataset) -> np.ndarray:
    """The stored values of a native little-endian dataset, without pydicom's pixel cache."""
    dtype = np.dtype("<u2") if int(ds.PixelRepresentation) == 0 else np.dtype("<i2")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    shape = (frames, int(ds.Rows), int(ds.Columns)) if frames > 1 else (int(ds.Rows), int(ds.Columns))
    return np.frombuffer(ds.PixelData, dtype=dtype).reshape(shape)


def _to_big_endian(ds: Dataset) -> None:
    """dcmwrite does not byte-swap OW values; do it for PixelData before writing big endian."""
    ds.PixelData = _stored(ds).astype(">u2" if int(ds.PixelRepresentation) == 0 else ">i2").tobytes()


def _write(ds: Dataset, path: Path, encoding: str) -> Path:
    """Write ``ds`` to ``path`` in one of the encodings real archives produce."""
    if encoding == "rle":
        ds.compress(RLELossless)  # pydicom's own RLE encoder, no plugin needed
        ds.save_as(path, enforce_file_format=True)
    elif encoding == "implicit_le":
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(path, enforce_file_format=True)
    elif encoding == "explicit_be":
        _to_big_endian(ds)
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        pydicom.dcmwrite(path, ds, enforce_file_format=True)  # save_as refuses to change endianness
    elif encoding == "meta_no_preamble":  # file meta kept, 128-byte preamble and DICM dropped
        ds.preamble = None
        ds.save_as(path, enforce_file_format=False)
    elif encoding.startswith("raw_"):  # a bare dataset: no preamble, no file meta
        implicit, little = {"raw_explicit_le": (False, True), "raw_implicit_le": (True, True)}.get(
            encoding, (False, False)
        )
        if not little:
            _to_big_endian(ds)
        ds.preamble = None
        ds.file_meta = FileMetaDataset()
        pydicom.dcmwrite(path, ds, implicit_vr=implicit, little_endian=little, enforce_file_format=False)
    else:
        raise AssertionError(encoding)
    return path


ENCODINGS = {
    "rle": RLELossless,
    "implicit_le": ImplicitVRLittleEndian,
    "explicit_be": ExplicitVRBigEndian,
    "meta_no_preamble": ExplicitVRLittleEndian,
    "raw_explicit_le": ExplicitVRLittleEndian,
    "raw_implicit_le": ImplicitVRLittleEndian,
    "raw_explicit_be": ExplicitVRBigEndian,
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("source", list(SOURCES))
def test_transcoded_dicom_reads_the_same_pixels(tmp_path, source, encoding):
    ds = SOURCES[source]()
    expected = dicom_to_unit(_stored(ds).copy(), ds)
    path = _write(ds, tmp_path / f"{source}_{encoding}.dcm", encoding)

    head = path.read_bytes()[:132]
    if encoding == "meta_no_preamble" or encoding.startswith("raw_"):
        assert head[128:132] != b"DICM"
    if encoding.startswith("raw_"):
        assert head[:2] == (b"\x00\x08" if encoding.endswith("_be") else b"\x08\x00")
    assert (
        pydicom.dcmread(path, force=True).file_meta.get("TransferSyntaxUID", ENCODINGS[encoding])
        == (ENCODINGS[encoding])
    )
    assert is_dicom(path), "DICOM must be found by content"

    img = read_image(path)
    _assert_unit(img.pixels, expected.shape)
    np.testing.assert_array_equal(img.pixels, expected)
    assert img.meta["TransferSyntaxUID"] == ENCODINGS[encoding]
    assert img.meta["SOPInstanceUID"] == str(ds.SOPInstanceUID)
    assert [i.meta["frame"] for i in read_images(path)] == [0]


@pytest.mark.parametrize("name", ["IM000001", "radiograph.png", "scan.jpg", "export.dcm.bak", "UPPER.DCM"])
@pytest.mark.parametrize("source", ["MR_small.dcm", CSPINE])
def test_dicom_found_by_content_whatever_the_suffix(tmp_path, name, source):
    original = _bundled(source) if source == "MR_small.dcm" else _shared_dicom(_shared_or_skip(), source)
    path = tmp_path / name
    path.write_bytes(original.read_bytes())
    assert is_dicom(path)
    assert is_image_file(path)
    img = read_image(path)
    assert img.meta["format"] == "dicom"
    np.testing.assert_array_equal(img.pixels, read_image(original).pixels)


@pytest.mark.parametrize("encoding", ["explicit_le", "rle"])
def test_multiframe(shared_data, tmp_path, encoding):
    ds = _cspine_ds(shared_data)
    base = _stored(ds)
    frames = np.stack([base, np.flipud(base), np.fliplr(base)])
    ds.NumberOfFrames = 3
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    path = tmp_path / "multi.dcm"
    if encoding == "rle":
        _write(ds, path, "rle")
    else:
        ds.save_as(path, enforce_file_format=True)

    images = read_images(path)
    assert len(images) == 3
    assert [img.meta["frame"] for img in images] == [0, 1, 2]
    assert all(img.meta["frames"] == 3 for img in images)
    for img, stored in zip(images, frames, strict=True):
        _assert_unit(img.pixels, (16, 16))
        np.testing.assert_array_equal(img.pixels, dicom_to_unit(stored, ds))
    np.testing.assert_array_equal(images[1].pixels, np.flipud(images[0].pixels))
    np.testing.assert_array_equal(images[2].pixels, np.fliplr(images[0].pixels))

    third = read_image(path, frame=2)
    assert third.meta["frame"] == 2
    np.testing.assert_array_equal(third.pixels, images[2].pixels)
    np.testing.assert_array_equal(read_image(path).pixels, images[0].pixels)
    for bad in (3, -1):
        with pytest.raises(DataError, match="frame") as info:
            read_image(path, frame=bad)
        assert str(path) in str(info.value)


def test_single_frame_read_images_and_frame_out_of_range(shared_data):
    path = _shared_dicom(shared_data, CSPINE)
    images = read_images(path)
    assert len(images) == 1
    assert images[0].meta["frame"] == 0
    with pytest.raises(DataError, match=r"frame 1 requested") as info:
        read_image(path, frame=1)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------------------------- DICOM pixel pipeline


def _manual_pipeline(stored: np.ndarray, slope: float, intercept: float, center: float, width: float) -> np.ndarray:
    """Rescale, DICOM LINEAR window, MONOCHROME1 inversion, by hand."""
    values = stored.astype(np.float64) * slope + intercept
    unit = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    return (1.0 - unit).astype(np.float32)


@pytest.mark.parametrize(("slope", "intercept"), [(0.684, 200.0), (1.0, 0.0), (2.0, -2400.0), (0.5, 800.0)])
def test_rescale_slope_intercept(shared_data, tmp_path, slope, intercept):
    ds = _cspine_ds(shared_data)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    path = tmp_path / "rescaled.dcm"
    ds.save_as(path, enforce_file_format=True)
    expected = _manual_pipeline(_stored(ds), slope, intercept, 1600.0, 2800.0)
    assert 0.0 < float(expected.mean()) < 1.0, "the test window must not saturate"
    np.testing.assert_allclose(read_image(path).pixels, expected, atol=1e-6)


def test_original_rescale_is_applied(shared_data):
    ds = _cspine_ds(shared_data)
    assert float(ds.RescaleSlope) == pytest.approx(0.684)
    expected = _manual_pipeline(_stored(ds), 0.684, 200.0, 1600.0, 2800.0)
    np.testing.assert_allclose(read_image(_shared_dicom(shared_data, CSPINE)).pixels, expected, atol=1e-6)


@pytest.mark.parametrize("change", ["deleted", "zero_width", "garbage"])
def test_without_a_usable_window_the_robust_range_is_used(shared_data, tmp_path, change):
    ds = _cspine_ds(shared_data)
    path = tmp_path / "nowindow.dcm"
    if change == "deleted":
        del ds.WindowCenter
        del ds.WindowWidth
    elif change == "zero_width":
        ds.WindowWidth = 0
    if change == "garbage":  # pydicom will not write an invalid DS; patch the bytes
        path.write_bytes(_shared_dicom(shared_data, CSPINE).read_bytes().replace(b"1600", b"ab.c"))
        assert pydicom.dcmread(path).WindowCenter == "ab.c"
    else:
        ds.save_as(path, enforce_file_format=True)
    img = read_image(path)
    _assert_unit(img.pixels, (16, 16))
    values = _stored(ds).astype(np.float64) * 0.684 + 200.0
    np.testing.assert_allclose(img.pixels, 1.0 - robust_range(values), atol=1e-6)
    assert img.pixels.min() == 0.0
    assert img.pixels.max() == 1.0


def test_first_of_several_windows_is_used(shared_data, tmp_path):
    ds = _cspine_ds(shared_data)
    ds.WindowCenter, ds.WindowWidth = [1600, 1900], [2800, 300]
    path = tmp_path / "twowindows.dcm"
    ds.save_as(path, enforce_file_format=True)
    np.testing.assert_array_equal(read_image(path).pixels, read_image(_shared_dicom(shared_data, CSPINE)).pixels)


@pytest.mark.parametrize("function", ["LINEAR_EXACT", "SIGMOID"])
def test_voi_lut_function(shared_data, tmp_path, function):
    ds = _cspine_ds(shared_data)
    ds.VOILUTFunction = function
    path = tmp_path / "voifunction.dcm"
    ds.save_as(path, enforce_file_format=True)
    values = _stored(ds).astype(np.float64) * 0.684 + 200.0
    expected = 1.0 - apply_window(values, 1600.0, 2800.0, function)
    np.testing.assert_allclose(read_image(path).pixels, expected, atol=1e-6)


def test_voi_lut_sequence(shared_data, tmp_path):
    """A VOI LUT takes precedence over the window; its output is scaled by the LUT's bit depth."""
    ds = _cspine_ds(shared_data)
    first, entries, bits = 1500, 700, 12
    lut = np.arange(entries, dtype=np.uint16) * 5  # 0 .. 3495 of 4095
    item = Dataset()
    item.LUTDescriptor = [entries, first, bits]
    item.add_new("LUTData", "US", lut.tolist())  # "US or OW": say which, so pydicom can write it
    ds.VOILUTSequence = [item]
    path = tmp_path / "voilut.dcm"
    ds.save_as(path, enforce_file_format=True)

    values = _stored(ds).astype(np.float64) * 0.684 + 200.0
    index = np.clip(np.rint(values).astype(np.int64) - first, 0, entries - 1)
    expected = (1.0 - lut[index] / 4095.0).astype(np.float32)
    img = read_image(path)
    _assert_unit(img.pixels, (16, 16))
    np.testing.assert_allclose(img.pixels, expected, atol=1e-6)
    np.testing.assert_allclose(dicom_to_unit(_stored(ds), pydicom.dcmread(path)), expected, atol=1e-6)


def _colour_ds(photometric: str, stored: np.ndarray, *, samples: int, frames: int = 1) -> Dataset:
    """A minimal 8-bit secondary-capture dataset around ``stored`` (native little endian)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = stored.shape[1:3] if frames > 1 else stored.shape[:2]
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = samples
    if samples == 3:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    return ds


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL"])
@pytest.mark.parametrize("equal", [True, False], ids=["gray", "colour"])
def test_colour_dicom(tmp_path, photometric, equal):
    rgb = np.repeat(_gradient()[..., None], 3, axis=2) if equal else _rgb_unequal()
    stored = rgb if photometric == "RGB" else convert_color_space(rgb, "RGB", "YBR_FULL")
    path = tmp_path / f"{photometric}.dcm"
    _colour_ds(photometric, stored, samples=3).save_as(path, enforce_file_format=True)
    img = read_image(path)
    _assert_unit(img.pixels, rgb.shape[:2])
    expected = rgb[..., 0] / 255.0 if equal else _luma(rgb)
    # YBR_FULL -> RGB rounds to whole values: allow a couple of grey levels; RGB is exact.
    np.testing.assert_allclose(img.pixels, expected, atol=1e-6 if photometric == "RGB" else 2.5 / 255)
    assert img.meta["PhotometricInterpretation"] == photometric


def test_colour_dicom_multiframe(tmp_path):
    rgb = _rgb_unequal()
    frames = np.stack([rgb, 255 - rgb])
    path = tmp_path / "rgb_frames.dcm"
    _colour_ds("RGB", frames, samples=3, frames=2).save_as(path, enforce_file_format=True)
    images = read_images(path)
    assert [img.shape for img in images] == [rgb.shape[:2]] * 2
    np.testing.assert_allclose(images[1].pixels, _luma(255 - rgb), atol=1e-6)


def test_palette_colour_dicom(tmp_path):
    index = (np.arange(6 * 8).reshape(6, 8) % 4).astype(np.uint8)
    ds = _colour_ds("PALETTE COLOR", index, samples=1)
    colours = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (80, 80, 80)], dtype=np.uint16) * 257  # 16-bit
    for channel, name in enumerate(("Red", "Green", "Blue")):
        ds.add_new(f"{name}PaletteColorLookupTableDescriptor", "US", [4, 0, 16])  # 4 entries from 0, 16 bits
        ds.add_new(f"{name}PaletteColorLookupTableData", "OW", colours[:, channel].astype("<u2").tobytes())
    path = tmp_path / "palette.dcm"
    ds.save_as(path, enforce_file_format=True)
    img = read_image(path)
    _assert_unit(img.pixels, index.shape)
    np.testing.assert_allclose(img.pixels, _luma(colours[index] / 257.0), atol=1e-6)


def test_colour_dicom_uses_luma():
    ds = Dataset()
    ds.PhotometricInterpretation = "RGB"
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 0, 0
    rgb[1] = 100  # equal channels on the second row
    out = dicom_to_unit(rgb, ds)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], 0.299, atol=1e-6)
    np.testing.assert_allclose(out[1], 100 / 255, atol=1e-6)


# --------------------------------------------------------------------------------------------- metadata


def test_patient_identity_never_leaves_the_reader(shared_data, tmp_path):
    ds = _cspine_ds(shared_data)
    ds.PatientName = "Secretname^Person"
    ds.PatientID = "PID-98765"
    ds.OtherPatientIDs = "OTHER-4242"
    path = tmp_path / "identified.dcm"
    ds.save_as(path, enforce_file_format=True)
    for img in (read_image(path), *read_images(path)):
        _assert_no_patient_identity(img.meta, ds)
        text = repr(img.meta)
        for secret in ("Secretname", "Person", "PID-98765", "OTHER-4242"):
            assert secret not in text


def test_missing_optional_metadata_is_none(shared_data, tmp_path):
    ds = _cspine_ds(shared_data)
    del ds.BodyPartExamined
    del ds.ViewPosition
    del ds.ImagerPixelSpacing
    path = tmp_path / "sparse.dcm"
    ds.save_as(path, enforce_file_format=True)
    meta = read_image(path).meta
    for key in META_KEYS:
        assert key in meta
    assert meta["BodyPartExamined"] is None
    assert meta["ViewPosition"] is None
    assert meta["PixelSpacing"] is None


# --------------------------------------------------------------------------------------------- pixel limit


def test_pixel_limit_dicom(shared_data):
    path = _shared_dicom(shared_data, CSPINE)
    with pytest.raises(DataError, match="limit") as info:
        read_image(path, max_pixels=255)
    assert str(path) in str(info.value)
    with pytest.raises(DataError):
        read_images(path, max_pixels=100)
    assert read_image(path, max_pixels=256).shape == (16, 16)  # the limit itself is allowed


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns; the reader raises
@pytest.mark.parametrize("max_pixels", [1999, 500, 10])  # under the limit, and far under (Pillow's own bomb error)
def test_pixel_limit_raster(tmp_path, max_pixels):
    path = tmp_path / "big.png"
    PILImage.fromarray(np.zeros((40, 50), dtype=np.uint8)).save(path)
    before = (PILImage.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    with pytest.raises(DataError) as info:
        read_image(path, max_pixels=max_pixels)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert before == (PILImage.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES), "Pillow globals restored"
    assert read_image(path, max_pixels=2000).shape == (40, 50)


# --------------------------------------------------------------------------------------------- broken inputs


def _broken(kind: str, tmp_path: Path) -> Path:
    rng = np.random.default_rng(1234)
    cspine = (DICOM_DIR / CSPINE).read_bytes() if (DICOM_DIR / CSPINE).is_file() else None
    needs_dicom = kind.startswith(("truncated", "dicom_"))
    if needs_dicom and cspine is None:
        pytest.skip(NO_DATA)
    if kind == "truncated_uncompressed_half":
        data = (DICOM_DIR / TIBIA).read_bytes()
        return _put(tmp_path / "tibia_half.dcm", data[: len(data) // 2])
    if kind == "truncated_j2k_half":
        data = (DICOM_DIR / "CR_extremity_tibia_RG3_j2k_lossless.dcm").read_bytes()
        return _put(tmp_path / "tibia_j2k_half.dcm", data[: len(data) // 2])
    if kind == "truncated_small_half":
        return _put(tmp_path / "cspine_half.dcm", cspine[: len(cspine) // 2])
    if kind == "truncated_in_file_meta":
        return _put(tmp_path / "cut_meta.dcm", cspine[:141])
    if kind == "truncated_in_element_header":
        return _put(tmp_path / "cut_header.dcm", cspine[:152])
    if kind == "dicom_bad_vr":
        data = bytearray(cspine)
        at = data.index(b"(\x00\x10\x00US")  # Rows
        data[at + 4 : at + 6] = b"\x55\x86"
        return _put(tmp_path / "bad_vr.dcm", bytes(data))
    if kind == "dicom_bad_spacing":
        return _put(tmp_path / "bad_spacing.dcm", cspine.replace(b"0.1000\\0.1000", b"0.1\x0e00\\0.1000"))
    if kind == "dicom_bad_slope":
        return _put(tmp_path / "bad_slope.dcm", cspine.replace(b"0.684", b"0.6x4"))
    if kind == "dicom_no_pixel_data":
        ds = pydicom.dcmread(io.BytesIO(cspine))
        del ds.PixelData
        ds.save_as(tmp_path / "nopixels.dcm", enforce_file_format=True)
        return tmp_path / "nopixels.dcm"
    if kind == "dicom_no_rows":
        ds = pydicom.dcmread(io.BytesIO(cspine))
        del ds.Rows
        ds.save_as(tmp_path / "norows.dcm", enforce_file_format=True)
        return tmp_path / "norows.dcm"
    if kind == "dicom_undecodable_j2k":
        ds = pydicom.dcmread(io.BytesIO(cspine))
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        ds.save_as(tmp_path / "badj2k.dcm", enforce_file_format=True)
        return tmp_path / "badj2k.dcm"
    if kind == "empty_dcm":
        return _put(tmp_path / "empty.dcm", b"")
    if kind == "empty_png":
        return _put(tmp_path / "empty.png", b"")
    if kind == "random_bytes_dcm":
        return _put(tmp_path / "random.dcm", b"\x00\x01" + rng.bytes(4096))
    if kind == "dicom_lookalike_garbage":  # passes the preamble-less sniff, then garbage
        return _put(tmp_path / "garbage.dcm", b"\x08\x00\x05\x00CS" + rng.bytes(2048))
    if kind == "text_png":
        return _put(tmp_path / "notes.png", b"this is not an image\nreally\n")
    if kind == "truncated_png_header":
        buf = io.BytesIO()
        PILImage.fromarray(np.zeros((20, 20), dtype=np.uint8)).save(buf, "PNG")
        return _put(tmp_path / "cut.png", buf.getvalue()[:20])
    if kind == "missing":
        return tmp_path / "does_not_exist.dcm"
    if kind == "folder":
        (tmp_path / "a_folder.png").mkdir()
        return tmp_path / "a_folder.png"
    raise AssertionError(kind)


def _put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BROKEN = [
    "truncated_uncompressed_half",
    "truncated_j2k_half",
    "truncated_small_half",
    "truncated_in_file_meta",
    "truncated_in_element_header",
    "dicom_bad_vr",
    "dicom_bad_spacing",
    "dicom_bad_slope",
    "dicom_no_pixel_data",
    "dicom_no_rows",
    "dicom_undecodable_j2k",
    "empty_dcm",
    "empty_png",
    "random_bytes_dcm",
    "dicom_lookalike_garbage",
    "text_png",
    "truncated_png_header",
    "missing",
    "folder",
]


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")  # pydicom, on the cut JPEG 2000 file
@pytest.mark.parametrize("reader", [read_image, read_images], ids=["read_image", "read_images"])
@pytest.mark.parametrize("kind", BROKEN)
def test_broken_inputs_raise_data_error_naming_the_file(tmp_path, kind, reader):
    path = _broken(kind, tmp_path)
    with pytest.raises(DataError) as info:
        reader(path)
    message = str(info.value)
    assert isinstance(info.value, MuraError)
    assert str(path) in message
    assert "\n" not in message, "one-line message"
    if kind.startswith("truncated") and kind != "truncated_png_header":
        assert "truncat" in message.lower(), message


def test_dicom_without_pixel_data_that_is_not_an_image(tmp_path):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = BasicTextSRStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "SR"
    path = tmp_path / "report.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert is_dicom(path)
    with pytest.raises(DataError, match="without pixel data") as info:
        read_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("kind", ["missing", "folder", "empty_dcm", "text_png", "random_bytes_dcm"])
def test_is_dicom_false_for_non_dicom(tmp_path, kind):
    assert not is_dicom(_broken(kind, tmp_path))


def test_is_dicom_false_for_raster(tmp_path):
    path = tmp_path / "x.dcm"
    PILImage.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(path, format="PNG")
    assert not is_dicom(path)
    assert read_image(path).meta["format"] == "png"


# --------------------------------------------------------------------------------------------- raster: real


@pytest.mark.parametrize("path", MURA_PNGS)
def test_mura_sample_pngs(path):
    img = read_image(path)
    with PILImage.open(path) as im:
        arr = np.asarray(im)
        mode, size = im.mode, im.size
    _assert_unit(img.pixels, (size[1], size[0]))
    if mode == "RGB":
        assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])
        arr = arr[..., 0]
    else:
        assert mode == "L"
    np.testing.assert_array_equal(img.pixels, arr.astype(np.float32) / 255.0)
    assert img.meta["format"] == "png"
    assert img.meta["frame"] == 0
    assert img.meta["truncated"] is False
    assert not is_dicom(path)


def test_mura_sample_has_an_rgb_png_with_equal_channels(shared_data):
    paths = sorted((shared_data / "mura-sample" / "MURA-v1.1").glob("train/*/*/*/*.png"))
    if not paths:
        pytest.skip("no MURA sample PNGs in the shared data")
    rgb = []
    for p in paths:
        with PILImage.open(p) as im:
            if im.mode == "RGB":
                rgb.append((p, np.asarray(im)))
    assert rgb, "the README promises one RGB PNG"
    for p, arr in rgb:
        pixels = read_image(p).pixels
        np.testing.assert_array_equal(pixels, arr[..., 1].astype(np.float32) / 255.0)


def test_truncated_fracatlas_jpeg_reads(shared_data):
    if not TRUNCATED_FRACATLAS.is_file():
        pytest.skip(f"{TRUNCATED_FRACATLAS} not found")
    with PILImage.open(TRUNCATED_FRACATLAS) as im:
        size = im.size
        with pytest.raises(OSError, match="truncated"):
            im.load()  # Pillow alone refuses it: it really is truncated
    img = read_image(TRUNCATED_FRACATLAS)
    _assert_unit(img.pixels, (size[1], size[0]))
    assert img.meta["truncated"] is True
    assert img.pixels.std() > 0.05
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --------------------------------------------------------------------------------------------- raster: synthetic


def _gradient(h: int = 30, w: int = 44) -> np.ndarray:
    """An 8-bit image with no symmetry: a diagonal ramp and a bright block near the top-left."""
    y, x = np.mgrid[0:h, 0:w]
    img = (x * 3 + y * 2).astype(np.float64)
    img[3:9, 4:12] = 250
    return np.clip(img, 0, 255).astype(np.uint8)


LOSSLESS = [("PNG", ".png"), ("BMP", ".bmp"), ("TIFF", ".tif"), ("TIFF", ".tiff")]


@pytest.mark.parametrize(("fmt", "suffix"), LOSSLESS)
def test_8bit_gray_lossless(tmp_path, fmt, suffix):
    arr = _gradient()
    path = tmp_path / f"gray{suffix}"
    PILImage.fromarray(arr, mode="L").save(path, format=fmt)
    img = read_image(path)
    _assert_unit(img.pixels, arr.shape)
    np.testing.assert_array_equal(img.pixels, arr.astype(np.float32) / 255.0)
    assert img.meta["format"] == fmt.lower()
    assert (img.meta["height"], img.meta["width"]) == arr.shape


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg"])
def test_8bit_gray_jpeg(tmp_path, suffix):
    arr = _gradient()
    path = tmp_path / f"gray{suffix}"
    PILImage.fromarray(arr, mode="L").save(path, format="JPEG", quality=95)
    img = read_image(path)
    _assert_unit(img.pixels, arr.shape)
    with PILImage.open(path) as im:
        np.testing.assert_array_equal(img.pixels, np.asarray(im, dtype=np.float32) / 255.0)
    assert float(np.abs(img.pixels - arr / 255.0).mean()) < 0.02
    assert img.meta["format"] == "jpeg"
    assert img.meta["truncated"] is False


@pytest.mark.parametrize(("fmt", "suffix"), [("PNG", ".png"), ("TIFF", ".tif")])
def test_16bit_gray_scaled_by_65535(tmp_path, fmt, suffix):
    arr = np.linspace(0, 65535, 24 * 20).reshape(24, 20).astype(np.uint16)
    arr[0, 0], arr[-1, -1], arr[5, 5] = 0, 65535, 300  # a value above 255, to catch 8-bit truncation
    path = tmp_path / f"gray16{suffix}"
    PILImage.fromarray(arr).save(path, format=fmt)
    img = read_image(path)
    _assert_unit(img.pixels, arr.shape)
    np.testing.assert_allclose(img.pixels, arr.astype(np.float64) / 65535.0, atol=1e-7)
    assert img.pixels[0, 0] == 0.0
    assert img.pixels[-1, -1] == 1.0


def test_16bit_dark_image_not_stretched(tmp_path):
    """A dim 16-bit image stays dim: it is scaled by 65535, not by its own range."""
    arr = np.full((10, 12), 1000, dtype=np.uint16)
    arr[2:4, 2:4] = 2000
    path = tmp_path / "dim16.png"
    PILImage.fromarray(arr).save(path)
    pixels = read_image(path).pixels
    assert float(pixels.max()) == pytest.approx(2000 / 65535, abs=1e-6)


def _rgb_unequal() -> np.ndarray:
    rgb = np.zeros((12, 16, 3), dtype=np.uint8)
    rgb[..., 0] = np.arange(16, dtype=np.uint8)[None, :] * 16
    rgb[..., 1] = np.arange(12, dtype=np.uint8)[:, None] * 20
    rgb[..., 2] = 200
    return rgb


def _luma(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255.0


@pytest.mark.parametrize(("fmt", "suffix"), LOSSLESS)
def test_rgb_unequal_channels_bt601_luma(tmp_path, fmt, suffix):
    rgb = _rgb_unequal()
    path = tmp_path / f"rgb{suffix}"
    PILImage.fromarray(rgb, mode="RGB").save(path, format=fmt)
    img = read_image(path)
    _assert_unit(img.pixels, rgb.shape[:2])
    np.testing.assert_allclose(img.pixels, _luma(rgb), atol=1e-6)


def test_rgb_equal_channels_kept_exactly(tmp_path):
    gray = _gradient()
    path = tmp_path / "rgbgray.png"
    PILImage.fromarray(np.repeat(gray[..., None], 3, axis=2), mode="RGB").save(path)
    np.testing.assert_array_equal(read_image(path).pixels, gray.astype(np.float32) / 255.0)


@pytest.mark.parametrize("equal", [False, True], ids=["colour", "gray"])
def test_rgba_alpha_dropped(tmp_path, equal):
    rgb = np.repeat(_gradient()[..., None], 3, axis=2) if equal else _rgb_unequal()
    alpha = np.full(rgb.shape[:2], 7, dtype=np.uint8)
    alpha[0, 0] = 255
    path = tmp_path / "rgba.png"
    PILImage.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(path)
    img = read_image(path)
    _assert_unit(img.pixels, rgb.shape[:2])
    expected = rgb[..., 0] / 255.0 if equal else _luma(rgb)
    np.testing.assert_allclose(img.pixels, expected, atol=1e-6)


def test_la_alpha_dropped(tmp_path):
    gray = _gradient()
    path = tmp_path / "la.png"
    PILImage.fromarray(np.dstack([gray, np.full_like(gray, 9)]), mode="LA").save(path)
    np.testing.assert_array_equal(read_image(path).pixels, gray.astype(np.float32) / 255.0)


@pytest.mark.parametrize(("fmt", "suffix"), [("PNG", ".png"), ("BMP", ".bmp"), ("TIFF", ".tif")])
def test_palette_gray(tmp_path, fmt, suffix):
    index = (np.arange(12 * 10).reshape(12, 10) % 256).astype(np.uint8)
    grays = 255 - np.arange(256)  # an inverting palette: the index is not the grey value
    im = PILImage.fromarray(index, mode="P")
    im.putpalette(np.repeat(grays[:, None], 3, axis=1).astype(np.uint8).ravel().tolist())
    path = tmp_path / f"palette{suffix}"
    im.save(path, format=fmt)
    with PILImage.open(path) as check:
        assert check.mode == "P"
    img = read_image(path)
    _assert_unit(img.pixels, index.shape)
    np.testing.assert_array_equal(img.pixels, grays[index].astype(np.float32) / 255.0)


def test_palette_colour_and_transparency(tmp_path):
    index = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:4] = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (80, 80, 80)]
    im = PILImage.fromarray(index, mode="P")
    im.putpalette(palette.ravel().tolist())
    path = tmp_path / "colour_palette.png"
    im.save(path, transparency=0)
    img = read_image(path)
    np.testing.assert_allclose(img.pixels, _luma(palette[index]), atol=1e-6)


def test_bilevel(tmp_path):
    bits = np.zeros((8, 9), dtype=bool)
    bits[2:5, 3:7] = True
    path = tmp_path / "bits.png"
    PILImage.fromarray(bits).save(path)
    np.testing.assert_array_equal(read_image(path).pixels, bits.astype(np.float32))


# Orientation tag value -> what a viewer does to the stored array (PIL's exif_transpose).
ORIENTATIONS = {
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, -1),  # rotate 90 degrees clockwise
    7: lambda a: np.rot90(a, 2).T,
    8: lambda a: np.rot90(a, 1),  # rotate 90 degrees counter-clockwise
}


def _save_with_orientation(arr: np.ndarray, path: Path, orientation: int, fmt: str) -> None:
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    kwargs = {"quality": 95} if fmt == "JPEG" else {}
    PILImage.fromarray(arr, mode="L").save(path, format=fmt, exif=exif, **kwargs)


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_exif_orientation_jpeg(tmp_path, orientation):
    arr = _gradient()
    path = tmp_path / f"rot{orientation}.jpg"
    _save_with_orientation(arr, path, orientation, "JPEG")
    img = read_image(path)
    expected = ORIENTATIONS[orientation](arr).astype(np.float64) / 255.0
    _assert_unit(img.pixels, expected.shape)
    assert float(np.abs(img.pixels - expected).mean()) < 0.02
    if expected.shape == arr.shape:  # a wrong rotation with the same shape must be told apart
        assert float(np.abs(img.pixels - arr / 255.0).mean()) > 0.1
    else:
        wrong = np.rot90(arr, 1 if orientation == 6 else -1) / 255.0
        assert float(np.abs(img.pixels - wrong).mean()) > 0.1
    assert img.meta["exif_orientation"] == orientation
    assert (img.meta["height"], img.meta["width"]) == expected.shape


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_png_exact(tmp_path, orientation):
    arr = _gradient()
    path = tmp_path / f"rot{orientation}.png"
    _save_with_orientation(arr, path, orientation, "PNG")
    img = read_image(path)
    np.testing.assert_array_equal(img.pixels, ORIENTATIONS[orientation](arr).astype(np.float32) / 255.0)
    assert img.meta["exif_orientation"] == orientation


def test_truncated_synthetic_jpeg_reads_with_flag(tmp_path):
    rng = np.random.default_rng(0)
    arr = np.clip(_gradient(64, 80).astype(np.float64) + rng.normal(0, 20, (64, 80)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="JPEG", quality=90)
    full = buf.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(full[: int(len(full) * 0.6)])
    img = read_image(path)
    _assert_unit(img.pixels, arr.shape)
    assert img.meta["truncated"] is True
    complete = read_image(_put(tmp_path / "whole.jpg", full))
    assert complete.meta["truncated"] is False
    # The rows before the cut decode as in the complete file.
    np.testing.assert_allclose(img.pixels[:8], complete.pixels[:8], atol=1e-6)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_pil_to_unit_modes():
    gray = _gradient(4, 5)
    np.testing.assert_array_equal(pil_to_unit(PILImage.fromarray(gray)), gray / np.float32(255))
    wide = PILImage.fromarray(gray.astype(np.int32) * 200)  # mode "I" holding 16-bit data
    assert wide.mode == "I"
    np.testing.assert_allclose(pil_to_unit(wide), gray.astype(np.float64) * 200 / 65535.0, atol=1e-7)
    floats = PILImage.fromarray(np.array([[-1.0, 0.0], [1.0, 3.0]], dtype=np.float32))
    np.testing.assert_allclose(pil_to_unit(floats), [[0.0, 0.25], [0.5, 1.0]], atol=1e-7)
    assert pil_to_unit(PILImage.fromarray(np.zeros((2, 2), dtype=np.float32))).max() == 0.0
    for mode in ("CMYK", "YCbCr"):
        out = pil_to_unit(PILImage.new(mode, (3, 2)))
        assert out.shape == (2, 3)
        assert out.dtype == np.float32


# --------------------------------------------------------------------------------------------- windowing units


def test_apply_window_linear_hand_computed():
    # c=50, w=11: ((x - 49.5) / 10 + 0.5) clipped; 0 at or below 44.5, 1 at or above 54.5
    values = np.array([[40.0, 44.5, 47.0, 49.5], [52.0, 54.5, 60.0, -1e9]])
    expected = np.array([[0.0, 0.0, 0.25, 0.5], [0.75, 1.0, 1.0, 0.0]])
    np.testing.assert_allclose(apply_window(values, 50, 11), expected, atol=1e-12)
    np.testing.assert_allclose(apply_window(values, 50, 11, "LINEAR"), expected, atol=1e-12)
    assert apply_window(values, 50, 11).shape == values.shape


def test_apply_window_linear_width_one_is_a_threshold():
    values = np.array([9.0, 9.5, 9.6, 11.0])
    np.testing.assert_array_equal(apply_window(values, 10, 1), [0.0, 0.0, 1.0, 1.0])


def test_apply_window_linear_exact_and_sigmoid():
    values = np.array([40.0, 45.0, 50.0, 52.5, 55.0, 60.0])
    np.testing.assert_allclose(apply_window(values, 50, 10, "LINEAR_EXACT"), [0, 0, 0.5, 0.75, 1, 1], atol=1e-12)
    sig = apply_window(np.array([50.0, 55.0, 45.0]), 50, 10, "SIGMOID")
    np.testing.assert_allclose(sig, [0.5, 1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(2.0))], atol=1e-12)


def test_robust_range_hand_computed():
    values = np.arange(11, dtype=np.float64).reshape(1, 11)
    np.testing.assert_allclose(robust_range(values, 0, 100), values / 10.0, atol=1e-12)
    # 0.5th / 99.5th percentiles of 0..999 (linear interpolation): 4.995 and 994.005
    ramp = np.arange(1000, dtype=np.float64).reshape(10, 100)
    out = robust_range(ramp)
    np.testing.assert_allclose(out, np.clip((ramp - 4.995) / (994.005 - 4.995), 0, 1), atol=1e-12)
    assert out.min() == 0.0
    assert out.max() == 1.0


def test_robust_range_degenerate():
    np.testing.assert_array_equal(robust_range(np.full((3, 4), 7.0)), np.zeros((3, 4)))
    # Percentiles collapse (one bright pixel in a flat image): fall back to min..max instead of all zeros.
    spike = np.zeros((10, 100))
    spike[0, 0] = 100.0
    out = robust_range(spike)
    assert out[0, 0] == 1.0
    assert out.sum() == 1.0


# ============================================================================================ reduced resolution


J2K_FILES = (
    "CR_chest_PA_RG1_j2k_lossy.dcm",
    "CR_extremity_tibia_RG3_j2k_lossless.dcm",
    "CR_extremity_tibia_RG3_j2k_lossy.dcm",
    "CR_hand_PA_kodak_j2k_lossless.dcm",
)
FULL_DECODE_FILES = (  # decoded in full, then box-reduced
    "CR_extremity_tibia_RG3_uncompressed_explicitLE.dcm",
    "CR_hip_RG2_jpeg_extended_lossy.dcm",
    "CR_hip_RG2_jpeg_lossless_sv1.dcm",
    "CR_hip_RG2_jpegls_lossless.dcm",
)


@pytest.mark.parametrize("name", J2K_FILES + FULL_DECODE_FILES)
def test_dicom_read_at_reduced_resolution_is_the_full_image_scaled_down(shared_data, name):
    """Real CR plates of every syntax: the level that still covers 320 px (a JPEG 2000 wavelet level, or a box
    reduction of the full decode) is the full image, block-averaged, to within 1% of the range on average; the
    original size is kept and the network input barely moves."""
    from mura_cli.config import TransformConfig
    from mura_cli.data.transforms import build_transforms

    path = shared_data / "dicom" / name
    full = read_images(path)[0]
    small = read_images(path, min_side=320)[0]
    r = small.meta["reduced"]
    assert r >= 1 and small.size == full.shape == full.size
    assert min(small.shape) >= 320 and small.shape == tuple(-(-s // 2**r) for s in full.shape)
    f = 2**r
    h, w = full.shape[0] // f, full.shape[1] // f
    blocks = full.pixels[: h * f, : w * f].reshape(h, f, w, f).mean(axis=(1, 3))
    assert np.abs(blocks - small.pixels[:h, :w]).mean() < 0.01
    tf = build_transforms(TransformConfig(size=320), train=False)
    assert float((tf(full.pixels) - tf(small.pixels)).abs().mean()) < 0.03


def test_reduced_resolution_only_where_it_still_covers_min_side(shared_data):
    for name in (J2K_FILES[1], FULL_DECODE_FILES[0]):  # min_side over half the plate: read in full
        small = read_images(shared_data / "dicom" / name, min_side=1000)[0]
        assert "reduced" not in small.meta and small.shape == (1760, 1760)
    png = next((shared_data / "mura-sample").rglob("*.png"))
    img = read_images(png, min_side=16)[0]  # rasters are read as they are
    assert "reduced" not in img.meta and img.size == img.shape


def test_box_reduce_keeps_dtype_and_averages_edge_blocks():
    from mura_cli.data.dicom import box_reduce

    a = np.arange(30, dtype=np.uint16).reshape(5, 6) * 10
    out = box_reduce(a, 1)
    assert out.dtype == np.uint16 and out.shape == (3, 3)
    assert out[0, 0] == round(a[:2, :2].mean()) and out[2, 2] == round(a[4, 4:6].mean())
    signed = box_reduce(np.array([[-3, -5], [-7, -9]], dtype=np.int16), 1)
    assert signed.dtype == np.int16 and signed[0, 0] == -6


def test_reduce_level_and_codestream_precision():
    from mura_cli.data.j2k import codestream_precision, reduce_level

    assert (
        reduce_level(2500, 2048, 320) == 2 and reduce_level(1760, 1760, 320) == 2 and reduce_level(500, 500, 320) == 0
    )
    assert codestream_precision(b"garbage") is None


def test_jpegls_is_decoded_by_the_preferred_plugin_and_falls_back_when_it_refuses(shared_data, monkeypatch):
    """JPEG-LS goes to CharLS (pyjpegls) first; the lossless plate is the same pixels libjpeg gives, and an
    unusable preferred plugin falls back to pydicom's own order."""
    import pydicom

    from mura_cli.data import dicom

    path = shared_data / "dicom" / "CR_hip_RG2_jpegls_lossless.dcm"
    ref = pydicom.dcmread(path)
    ref.pixel_array_options(decoding_plugin="pylibjpeg")
    ds = pydicom.dcmread(path)
    assert np.array_equal(dicom._decode_dicom_pixels(path, ds), ref.pixel_array)
    monkeypatch.setitem(dicom._PREFERRED_PLUGINS, str(ds.file_meta.TransferSyntaxUID), "no-such-plugin")
    assert np.array_equal(dicom._decode_dicom_pixels(path, pydicom.dcmread(path)), ref.pixel_array)
