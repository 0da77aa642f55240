"""The DICOM reader and its pixel pipeline.

Pipeline, in the order the standard gives (PS3.4 Grayscale Transform Pipeline): modality LUT (rescale
slope/intercept or LUT) -> VOI LUT, or the first window center/width, or a robust 0.5-99.5 percentile range
when the file has neither -> MONOCHROME1 inversion -> [0, 1]. A VOI LUT or window that maps the frame to (near)
constant values while the stored values do vary (a window that misses the data) is replaced by the percentile
range, with a warning naming the file. :func:`dicom_to_unit`, :func:`apply_window` and
:func:`robust_range` are pure functions. Patient name and ID never leave the reader.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mura_cli.data.image import Image, check_pixel_limit, is_near_constant, one_line, rgb_to_unit_gray, robust_range
from mura_cli.data.j2k import decode_reduced, reduce_level
from mura_cli.errors import DataError

log = logging.getLogger("mura_cli.data.readers")  # the readers' one logger, whichever module reads the file

_DICOM_META_KEYS = (
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "BodyPartExamined",
    "ViewPosition",
    "Modality",
)


_LOGGED_WARNINGS: set[str] = set()
_VR_LINK = re.compile(r"\s*Please see <[^>]*> for allowed values for each VR\.?")
_DEVELOPER_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning)


@contextlib.contextmanager
def _warnings_to_log(p: Path | str) -> Iterator[None]:
    """Turn the warnings a library raises while reading ``p`` (pydicom's invalid-value and VR notes...) into
    one log line each, ``<file>: <message>``, on logger ``mura_cli.data.readers``; a message already logged
    (by any file) goes to debug. Deprecation warnings are for developers and pass through unchanged."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:  # the filters are restored here; also when the read failed (the warnings may say why)
        _log_warnings(p, caught)


def _log_warnings(p: Path | str, caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        if issubclass(w.category, _DEVELOPER_WARNINGS):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
            continue
        message = one_line(_VR_LINK.sub("", str(w.message)))
        if message in _LOGGED_WARNINGS:
            log.debug("%s: %s", p, message)
            continue
        _LOGGED_WARNINGS.add(message)
        log.warning("%s: %s", p, message)


def read_dicom(
    p: Path | str,
    *,
    frames: list[int] | None,
    max_pixels: int,
    min_side: int | None = None,
    data: bytes | None = None,
) -> list[Image]:
    """Read ``frames`` of a DICOM file (``None``: all); pydicom's warnings become one log line each.

    With ``min_side``, a frame is read at a reduced resolution whose shorter side is still at least that: a JPEG
    2000 frame decoded so (:func:`~mura_cli.data.j2k.decode_reduced`), a grey frame of any other syntax decoded in
    full and then box-reduced (:func:`box_reduce`), before the display pipeline; ``meta`` then keeps the
    original ``height`` and ``width`` and says ``reduced`` (the pixels are ``1 / 2**reduced`` of them).

    ``data``: the file's bytes (an instance fetched from a PACS), read instead of the file; ``p`` then only
    names it in messages.
    """
    with _warnings_to_log(p):
        return _read_dicom_quietly(p, frames=frames, max_pixels=max_pixels, min_side=min_side, data=data)


def _read_dicom_quietly(
    p: Path | str, *, frames: list[int] | None, max_pixels: int, min_side: int | None, data: bytes | None = None
) -> list[Image]:
    import pydicom
    from pydicom.errors import BytesLengthException

    try:
        # from memory: a file object's read(n) allocates n bytes up front, so a damaged 32-bit length in a 2 kB
        # file would cost gigabytes (found by tests/test_fuzz_reader.py); BytesIO returns only what is there
        ds = pydicom.dcmread(io.BytesIO(Path(p).read_bytes() if data is None else data), force=True)
    except Exception as exc:  # InvalidDicomError, struct.error, BytesLengthException, EOFError...: a damaged file
        raise DataError(
            f"{p}: not a readable DICOM file (pydicom: {one_line(exc)}); the file may be truncated or damaged"
        ) from None
    # pydicom converts header values lazily, so a damaged value (bad VR, non-numeric DS) fails only when used.
    header_errors = (ValueError, TypeError, KeyError, IndexError, NotImplementedError, OverflowError, struct.error)
    try:
        return _dicom_frames(p, ds, frames=frames, max_pixels=max_pixels, min_side=min_side)
    except (*header_errors, BytesLengthException) as exc:
        raise DataError(
            f"{p}: damaged DICOM header ({type(exc).__name__}: {one_line(exc)}); the file may be corrupt"
        ) from None


def _dicom_frames(
    p: Path | str, ds: Any, *, frames: list[int] | None, max_pixels: int, min_side: int | None
) -> list[Image]:
    import pydicom

    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        sop = ds.get("SOPClassUID") or getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID")
        if len(ds) == 0 or "Rows" in ds or "Image Storage" in getattr(sop, "name", ""):
            raise DataError(
                f"{p}: DICOM image whose pixel data is missing or cut off; the file is probably truncated, "
                "copy or export it again"
            )
        raise DataError(f"{p}: DICOM without pixel data (a report or structured document?); skip it")
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        # A dataset without preamble/file meta: pydicom guessed the encoding while reading; record it.
        ds.file_meta = getattr(ds, "file_meta", pydicom.dataset.FileMetaDataset())
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        if ds.is_little_endian is False:
            ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        elif ds.is_implicit_VR:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        else:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows <= 0 or cols <= 0:
        raise DataError(f"{p}: DICOM header has no Rows/Columns; the file is damaged")
    check_pixel_limit(p, rows, cols, max_pixels)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    wanted = list(range(n_frames)) if frames is None else frames
    for f in wanted:
        if not 0 <= f < n_frames:
            raise DataError(f"{p}: frame {f} requested but the file has {n_frames} frame(s)")

    reduced = decode_reduced(ds, min_side) if min_side else None
    boxed = 0  # frames decoded in full are box-reduced to this level before the display pipeline
    if reduced is not None:
        arr, level = reduced[0][None], reduced[1]
    else:
        arr = _decode_dicom_pixels(p, ds)
        if n_frames == 1:  # pydicom gives single-frame data without a frame axis (palette indices are 2-D too)
            arr = arr[None]
        grey = photometric in ("MONOCHROME1", "MONOCHROME2") and arr.ndim == 3
        if min_side and grey and np.issubdtype(arr.dtype, np.integer):
            boxed = reduce_level(rows, cols, min_side)
        level = boxed
    # pydicom's pixel_array is already RGB for YBR_FULL/YBR_FULL_422 (and JPEG 2000 decodes YBR_ICT/RCT to RGB)
    array_photometric = "RGB" if photometric.startswith("YBR") else photometric
    base_meta = _dicom_meta(p, ds, photometric, n_frames)
    out = []
    for f in wanted:
        where = f"{p} (frame {f})" if n_frames > 1 else str(p)
        stored = box_reduce(arr[f], boxed) if boxed else arr[f]
        pixels = dicom_to_unit(stored, ds, array_photometric, source=where)
        meta = dict(base_meta, frame=f, height=int(pixels.shape[0]), width=int(pixels.shape[1]))
        if level:  # the pixels are 1 / 2**level of the original, whose size the meta keeps
            meta.update(height=rows, width=cols, reduced=level)
        out.append(Image(pixels=pixels, meta=meta))
    return out


def box_reduce(stored: np.ndarray, level: int) -> np.ndarray:
    """An HxW integer frame at ``1 / 2**level`` of its size, ``ceil(H / 2**level)`` x ``ceil(W / 2**level)``: each
    output value the rounded mean of its block (edge blocks of what they cover), in the input's dtype, so the
    modality and VOI LUTs apply as to stored values. What a JPEG 2000 frame's reduced decode gives, for frames
    decoded in full: the display pipeline then runs on 1 / 4**level of the pixels."""
    from PIL import Image as PILImage

    f = 2**level
    mean = np.asarray(PILImage.fromarray(stored.astype(np.float32)).reduce(f))
    return np.rint(mean).astype(stored.dtype)


_PREFERRED_PLUGINS = {
    "1.2.840.10008.1.2.4.80": "pyjpegls",  # JPEG-LS lossless: CharLS, 3.6x faster than libjpeg on a CR plate
    "1.2.840.10008.1.2.4.81": "pyjpegls",  # JPEG-LS near-lossless
}
"""Decoding plugins tried first for a transfer syntax (pydicom would try pylibjpeg first), when installed."""


def _decode_dicom_pixels(p: Path | str, ds: Any) -> np.ndarray:
    """Decode PixelData with pydicom's plugins (a faster one first where :data:`_PREFERRED_PLUGINS` names it, then
    all in pydicom's order); failures name the transfer syntax and the decoders tried."""
    plugin = _PREFERRED_PLUGINS.get(str(ds.file_meta.get("TransferSyntaxUID", "")))
    if plugin:
        try:
            ds.pixel_array_options(decoding_plugin=plugin)
            return ds.pixel_array
        except Exception:  # not installed, or it refuses this file: the default order below names every failure
            ds.pixel_array_options(decoding_plugin="")
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom raises RuntimeError/ValueError/NotImplementedError/...; all are data errors
        tsyntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(tsyntax, "name", str(tsyntax))
        reason = one_line(exc)
        raise DataError(
            f"{p}: cannot decode pixel data ({name}): {reason}. Compressed DICOM needs pylibjpeg, "
            "pylibjpeg-libjpeg and pylibjpeg-openjpeg (installed with mura-cli); the file may be truncated"
        ) from None


def _dicom_meta(p: Path | str, ds: Any, photometric: str, n_frames: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"path": str(p), "format": "dicom", "frames": n_frames}
    for key in _DICOM_META_KEYS:
        value = ds.get(key)
        meta[key] = str(value) if value not in (None, "") else None
    spacing = None
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(key)
        if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
            spacing = (float(value[0]), float(value[1]))
            break
    meta["PixelSpacing"] = spacing
    meta["PhotometricInterpretation"] = photometric
    tsyntax = ds.file_meta.get("TransferSyntaxUID")
    meta["TransferSyntaxUID"] = str(tsyntax) if tsyntax else None
    return meta


def dicom_to_unit(arr: np.ndarray, ds: Any, photometric: str | None = None, *, source: str = "") -> np.ndarray:
    """Map stored DICOM pixel values of one frame to display values HxW float32 in [0, 1], bone bright.

    A function of the array and the dataset's attributes: modality LUT, then VOI LUT or the first window,
    or a robust percentile range, then MONOCHROME1 inversion. A VOI LUT or window under which the frame is
    (near) constant while its values vary falls back to the percentile range and logs a warning naming
    ``source`` (the file).
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    photometric = (photometric or str(ds.get("PhotometricInterpretation", "MONOCHROME2"))).upper()
    if photometric == "PALETTE COLOR" and arr.ndim == 2:  # palette indices -> RGB through the colour LUTs
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
    if arr.ndim == 3:  # colour DICOM (rare for radiographs): pydicom gives RGB; use luminance
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            arr = convert_color_space(arr, photometric, "RGB")
        return rgb_to_unit_gray(arr)
    values = apply_modality_lut(arr, ds).astype(np.float64, copy=False)
    voi_seq = ds.get("VOILUTSequence")
    if voi_seq:
        lut_out = apply_voi_lut(np.rint(values).astype(np.int64), ds, index=0).astype(np.float64)
        descriptor = voi_seq[0].get("LUTDescriptor", [0, 0, 16])
        top = float(2 ** int(descriptor[2]) - 1) if len(descriptor) > 2 and descriptor[2] else lut_out.max()
        unit = lut_out / top if top > 0 else lut_out
        unit = _unless_blank(unit, values, "its VOI LUT", source)
    else:
        window = _first_window(ds)
        if window is not None:
            center, width = window
            unit = apply_window(values, center, width, str(ds.get("VOILUTFunction", "LINEAR")).upper())
            unit = _unless_blank(unit, values, f"window center {center:g} / width {width:g}", source)
        else:
            unit = robust_range(values)
    unit = np.clip(unit, 0.0, 1.0).astype(np.float32)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return np.ascontiguousarray(unit, dtype=np.float32)


def _unless_blank(unit: np.ndarray, values: np.ndarray, what: str, source: str) -> np.ndarray:
    """``unit``, or the percentile range of ``values`` when ``unit`` is (near) constant and that range is not."""
    if not is_near_constant(np.clip(unit, 0.0, 1.0)):
        return unit
    fallback = robust_range(values)
    if is_near_constant(fallback):
        return unit  # constant stored values too: a blank image, which the caller's sanity check reports
    lo, hi = float(values.min()), float(values.max())
    log.warning(
        "%s: %s leaves almost no contrast over the stored values %g-%g; used their 0.5-99.5 percentile range",
        source or "DICOM",
        what,
        lo,
        hi,
    )
    return fallback


def _first_window(ds: Any) -> tuple[float, float] | None:
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return None

    def first(v: Any) -> float:
        try:
            return float(v[0]) if hasattr(v, "__len__") and not isinstance(v, str) else float(v)
        except (TypeError, ValueError, IndexError):
            return float("nan")

    c, w = first(center), first(width)
    if not np.isfinite(c) or not np.isfinite(w) or w <= 0:
        return None
    return c, w


def apply_window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM windowing (PS3.3 C.11.2.1.2) to [0, 1]: LINEAR, LINEAR_EXACT or SIGMOID. Pure function."""
    values = np.asarray(values, dtype=np.float64)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - (center - width / 2.0)) / width, 0.0, 1.0)
    # LINEAR: the standard's "c - 0.5" and "w - 1" offsets
    if width <= 1:
        return (values > center - 0.5).astype(np.float64)
    return np.clip(((values - (center - 0.5)) / (width - 1.0)) + 0.5, 0.0, 1.0)
