"""JPEG 2000 DICOM frames decoded at a reduced resolution, for screening at a fixed network input size.

A JPEG 2000 codestream is a wavelet pyramid: OpenJPEG can stop ``r`` levels short of full resolution and
return the image at ``1 / 2**r`` of its size, low-pass filtered by the transform itself, in a fraction of
the time (on the shared CR plates: 2,500 x 2,048 in 35 ms instead of 490 ms). Predict and localize need no
more than the network input (320 px), so :func:`decode_reduced` is asked for the coarsest level whose shorter
side is still at least that. Only single-frame, single-sample, unsigned codestreams are taken this way; for
anything else, or when the decoder refuses a level, ``None`` sends the caller to the full decode.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

J2K_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")  # JPEG 2000 lossless, JPEG 2000


def reduce_level(rows: int, cols: int, min_side: int) -> int:
    """The largest ``r`` with ``min(rows, cols) / 2**r >= min_side`` (0 when none)."""
    r = 0
    while min(rows, cols) / 2 ** (r + 1) >= min_side:
        r += 1
    return r


def codestream_precision(frame: bytes) -> tuple[int, bool] | None:
    """``(bits, signed)`` of the first component from the codestream's SIZ marker, or ``None``."""
    at = frame.find(b"\xff\x51", 0, 512)
    ssiz_at = at + 2 + 2 + 2 + 32 + 2  # marker, Lsiz, Rsiz, 8 four-byte sizes and offsets, Csiz
    if at < 0 or len(frame) <= ssiz_at:
        return None
    ssiz = frame[ssiz_at]
    return (ssiz & 0x7F) + 1, bool(ssiz & 0x80)


def decode_reduced(ds: Any, min_side: int) -> tuple[np.ndarray, int] | None:
    """``(stored values, r)``: the frame of ``ds`` at ``1 / 2**r`` of its size, ``r`` from :func:`reduce_level`
    (or less when the decoder refuses a level); ``None`` when the file does not qualify or ``r`` would be 0."""
    meta = getattr(ds, "file_meta", {})
    if str(meta.get("TransferSyntaxUID", "")) not in J2K_SYNTAXES or "PixelData" not in ds:
        return None
    if int(ds.get("SamplesPerPixel", 1)) != 1 or int(ds.get("NumberOfFrames", 1) or 1) != 1:
        return None
    if int(ds.get("PixelRepresentation", 0)) != 0:
        return None
    r = reduce_level(int(ds.Rows), int(ds.Columns), min_side)
    if r == 0:
        return None
    from PIL import Image as PILImage
    from PIL.Jpeg2KImagePlugin import Jpeg2KImageFile
    from pydicom.encaps import generate_frames

    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception:  # damaged encapsulation: the full decode names it
        return None
    precision = codestream_precision(frame)
    if precision is None or precision[1] or not 8 <= precision[0] <= 16:
        return None
    for level in range(r, 0, -1):
        try:
            with PILImage.open(io.BytesIO(frame)) as im:
                if not isinstance(im, Jpeg2KImageFile):  # only its decoder can skip resolution levels
                    return None
                im.reduce = level
                im.load()
                arr = np.asarray(im)
        except Exception:  # OpenJPEG refuses some levels of some codestreams: try a finer one
            continue
        expected = (-(-int(ds.Rows) // 2**level), -(-int(ds.Columns) // 2**level))
        if arr.shape != expected or arr.dtype not in (np.uint8, np.uint16):
            return None  # the codestream disagrees with the header: the full decode says so
        if arr.dtype == np.uint16:  # Pillow scales samples up to 16 bits; back to stored values
            arr = arr >> (16 - precision[0])
        return arr, level
    return None
