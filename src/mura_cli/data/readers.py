"""One front door for radiographs: :func:`read_image` (and :func:`read_images` for every DICOM frame).

Every reader returns the same thing: an :class:`Image` whose ``pixels`` are float32 HxW in [0, 1], bone
brighter than background, plus a ``meta`` dict. DICOM is found by content (``DICM`` at byte 128, or a
dataset without the preamble), never by suffix, and so are rasters (:func:`raster_format`: PNG, JPEG, TIFF and
BMP signatures, whatever the suffix); and read by :mod:`mura_cli.data.dicom` (its pixel pipeline
is documented there); everything else goes to Pillow through :mod:`mura_cli.data.raster`. The pure pixel
functions of both are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from mura_cli.data.dicom import apply_window as apply_window
from mura_cli.data.dicom import dicom_to_unit as dicom_to_unit
from mura_cli.data.dicom import read_dicom
from mura_cli.data.image import DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS
from mura_cli.data.image import Image as Image
from mura_cli.data.image import robust_range as robust_range
from mura_cli.data.raster import pil_to_unit as pil_to_unit
from mura_cli.data.raster import read_raster
from mura_cli.errors import DataError

DICOM_MAGIC = b"DICM"
RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
IMAGE_SUFFIXES = RASTER_SUFFIXES | DICOM_SUFFIXES
"""Suffixes that say "this is meant to be an image": such a file that cannot be read is a failure, not a skip."""

_RASTER_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
_BMP_DIB_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})


# --------------------------------------------------------------------------------------------- sniffing


def _head(path: str | Path) -> bytes | None:
    """A file's first 132 bytes (enough for every signature sniffed here), or ``None`` when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(132)
    except OSError:
        return None


def is_dicom(path: str | Path) -> bool:
    """True if the file is DICOM by content: ``DICM`` at byte 128, or a preamble-less dataset."""
    head = _head(path)
    return head is not None and sniff_head(head) == "dicom"


def _looks_like_raw_dataset(head: bytes) -> bool:
    """A dataset written without preamble starts with a group 0x0002 or 0x0008 element, little or big endian."""
    if len(head) < 8:
        return False
    group_le = int.from_bytes(head[0:2], "little")
    group_be = int.from_bytes(head[0:2], "big")
    if group_le not in (0x0002, 0x0008) and group_be not in (0x0002, 0x0008):
        return False
    vr = head[4:6]
    if vr.isalpha() and vr.isupper():  # explicit VR: a two-letter code
        return True
    length = int.from_bytes(head[4:8], "little")  # implicit VR: a plausible 4-byte length
    return 0 < length < 1024


def raster_format(head: bytes) -> str | None:
    """The raster format a file's first bytes announce (``png``, ``jpeg``, ``tiff``, ``bmp``), else ``None``.

    BMP needs ``BM`` and a known DIB header size at byte 14, so a text file starting with "BM" is not one.
    """
    for magic, name in _RASTER_MAGIC:
        if head.startswith(magic):
            return name
    if head.startswith(b"BM") and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "bmp"
    return None


def sniff_head(head: bytes) -> str | None:
    """``dicom``, a raster format name, or ``None`` from a file's first 132 bytes."""
    if len(head) >= 132 and head[128:132] == DICOM_MAGIC:
        return "dicom"
    return raster_format(head) or ("dicom" if _looks_like_raw_dataset(head) else None)


def is_image_file(path: str | Path) -> bool:
    """True for a raster file by suffix or signature, or a DICOM file by content."""
    if Path(path).suffix.lower() in RASTER_SUFFIXES:
        return True
    head = _head(path)
    return head is not None and sniff_head(head) is not None


# --------------------------------------------------------------------------------------------- front door


def read_image(path: str | Path, *, frame: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
    """Read one radiograph (one frame of a multi-frame DICOM).

    Args:
        path: PNG, JPEG, BMP, TIFF or DICOM file (DICOM found by content, whatever the suffix).
        frame: which frame of a multi-frame DICOM.
        max_pixels: refuse frames with more pixels than this (decompression-bomb guard).

    Returns:
        The image, HxW float32 in [0, 1] with its metadata.

    Raises:
        DataError: naming the file and the reason (which decoder failed and why).

    Example:
        >>> img = read_image("CR_hip_RG2_jpegls_lossless.dcm")
        >>> img.pixels.shape
        (2140, 1760)
    """
    p = Path(path)
    _check_readable(p)
    if is_dicom(p):
        return read_dicom(p, frames=[frame], max_pixels=max_pixels)[0]
    return read_raster(p, max_pixels=max_pixels)


def read_images(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None) -> list[Image]:
    """Read every frame of a file: one :class:`Image` per DICOM frame, one for a raster file.

    ``min_side``: the pixels are only needed at this size or above, so a grey DICOM frame may be read at a
    reduced resolution (:meth:`Image.size` stays the original's; see :func:`~mura_cli.data.dicom.read_dicom`).
    """
    p = Path(path)
    _check_readable(p)
    if is_dicom(p):
        return read_dicom(p, frames=None, max_pixels=max_pixels, min_side=min_side)
    return [read_raster(p, max_pixels=max_pixels)]


def _check_readable(p: Path) -> None:
    if not p.exists():
        raise DataError(f"{p}: no such file; check the path")
    if p.is_dir():
        raise DataError(f"{p}: is a folder, not an image; pass the files inside it")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: the file is empty (0 bytes); re-export or skip it")
    if p.suffix.lower() in DICOM_SUFFIXES and sniff_head(_head(p) or b"") is None:
        raise DataError(
            f"{p}: named like DICOM but has no DICOM header (no 'DICM' at byte 128, no dataset at the "
            "start); the file is damaged or not DICOM"
        )
