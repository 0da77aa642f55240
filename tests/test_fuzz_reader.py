"""Fuzzing the reader (issue 11): mutated bytes of real PNG, JPEG and DICOM files either decode or raise the
project's one error type, each within a time bound and without runaway memory.

CI runs a short budget; a long one by hand: ``MURA_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz_reader.py``.
Cases it found are kept in the bad-input corpus (``tests/test_bad_inputs.py``).
"""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mura_cli.data.readers import read_images
from mura_cli.errors import MuraError

from synth import SHARED_DATA, _radiograph

EXAMPLES = int(os.environ.get("MURA_FUZZ_EXAMPLES", "150"))
SECONDS_PER_CALL = 5.0
PEAK_BYTES = 256 * 2**20


def _bases(tmp: Path) -> dict[str, bytes]:
    """Small real files where the shared data has them, else synthetic ones of the same formats."""
    out = {}
    dcm = SHARED_DATA / "dicom" / "CR_cspine_16x16_tiny_pydicom_bundled.dcm"
    if dcm.is_file():
        out["dcm"] = dcm.read_bytes()
    humerus = sorted((SHARED_DATA / "mura-humerus-64").rglob("*.jpg"))[:1]
    if humerus:
        out["jpg"] = humerus[0].read_bytes()
    out["j2k.dcm"] = _j2k_dicom(tmp / "b.j2k.dcm")
    png = tmp / "b.png"
    Image.fromarray(_radiograph(np.random.default_rng(0), 24, 20)).save(png)
    out["png"] = png.read_bytes()
    return out


def _j2k_dicom(path: Path) -> bytes:
    """A 64 x 64 12-bit JPEG 2000 DICOM: read with ``min_side=16`` it takes the reduced-resolution decoder."""
    from openjpeg.utils import encode_array
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless, generate_uid

    arr = (np.random.default_rng(1).integers(0, 4096, (64, 64))).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 64, 64, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = encapsulate([encode_array(arr, bits_stored=12, photometric_interpretation=2, use_mct=False)])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


BASES = _bases(Path(os.environ.get("TMPDIR", "/tmp")))


mutation = st.tuples(
    st.sampled_from(("flip", "cut", "insert", "zero")), st.floats(0, 1), st.binary(min_size=1, max_size=8)
)


def _mutate(data: bytes, ops: list[tuple[str, float, bytes]]) -> bytes:
    b = bytearray(data)
    for op, where, extra in ops:
        i = min(int(where * len(b)), max(len(b) - 1, 0))
        if op == "flip" and b:
            b[i] ^= extra[0] or 0xFF
        elif op == "cut":
            b = b[:i]
        elif op == "insert":
            b[i:i] = extra
        elif op == "zero" and b:
            b[i : i + len(extra)] = bytes(len(b[i : i + len(extra)]))
    return bytes(b)


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(BASES)), ops=st.lists(mutation, min_size=1, max_size=6))
def test_mutated_files_decode_or_raise_the_project_error(tmp_path, kind, ops):
    path = tmp_path / f"fuzz.{kind}"
    path.write_bytes(_mutate(BASES[kind], ops))
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        for im in read_images(path, max_pixels=4_000_000, min_side=16 if kind == "j2k.dcm" else None):
            assert im.pixels.ndim == 2 and np.isfinite(im.pixels).all()
            assert float(im.pixels.min()) >= 0.0 and float(im.pixels.max()) <= 1.0
    except MuraError as exc:
        assert str(path) in str(exc)  # the one error type, naming the file
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - t0 < SECONDS_PER_CALL
    assert peak < PEAK_BYTES
