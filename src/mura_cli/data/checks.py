"""Cheap content checks on image files, without decoding: empty, truncated JPEG/PNG, EXIF orientation.

Each file costs a read of its first 64 KiB and last 64 bytes; a complete JPEG that carries EXIF is also opened
with Pillow, which parses the header segments only.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Iterable
from pathlib import Path

from mura_cli.data.readers import sniff_head
from mura_cli.data.records import Problem, Problems

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXIF_ORIENTATION = 0x0112
_HEAD_BYTES = 65536
_TAIL_BYTES = 64

# kind -> message, in the order the problems are reported
_CHECKS = {
    "empty_file": "empty files (0 bytes); they will fail to load",
    "unreadable": "files that cannot be opened",
    "not_an_image": "files with no image signature (not PNG/JPEG/TIFF/BMP nor DICOM); they will fail to load",
    "truncated": "truncated images (no end marker): decoded as far as the data goes, the missing part left grey",
    "exif_rotated": "JPEGs with an EXIF orientation: read upright (boxes are in the upright frame)",
}


def check_image_files(root: Path, paths: Iterable[str]) -> list[Problem]:
    """Check every image ``root / path``: empty, unreadable, truncated (JPEG/PNG) and EXIF-rotated (JPEG)."""
    found: dict[str, list[str]] = {kind: [] for kind in _CHECKS}
    for rel in paths:
        kind = check_image_file(root / rel)
        if kind is not None:
            found[kind].append(rel)
    problems = Problems()
    for kind, message in _CHECKS.items():
        problems.add(kind, message, found[kind])
    return list(problems.to_tuple())


def check_image_file(path: Path) -> str | None:
    """The defect of one image file (``empty_file``, ``unreadable``, ``not_an_image``, ``truncated``,
    ``exif_rotated``), or ``None``."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
            if not head:
                return "empty_file"
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read()
    except OSError:
        return "unreadable"
    if sniff_head(head) is None:
        return "not_an_image"
    if head.startswith(JPEG_MAGIC):
        if b"\xff\xd9" not in tail:
            return "truncated"
        if b"Exif\x00\x00" in head and exif_orientation(path) not in (None, 1):  # no EXIF segment: no Pillow
            return "exif_rotated"
        return None
    if head.startswith(PNG_MAGIC) and b"IEND" not in tail:
        return "truncated"
    return None


def exif_orientation(path: Path) -> int | None:
    """The EXIF orientation tag of a JPEG (1-8), read from its header by Pillow; ``None`` when absent or unreadable."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a size or a corrupt EXIF is not this probe's to report
            with Image.open(path, formats=("JPEG",)) as im:
                value = im.getexif().get(EXIF_ORIENTATION)
    except (OSError, SyntaxError, ValueError, struct.error, Image.DecompressionBombError):
        return None
    return value if isinstance(value, int) else None
