"""Inputs to inference: files, folders and globs expanded to images, and where each image sits in a study.

:func:`scan_inputs` finds the images and says why each other path is not one (:func:`discover_inputs` is
its short form); :func:`mura_study_of` places a file in the MURA layout and
:func:`resolve_study_and_part` gives any image its study and body part (MURA path, then DICOM tags; else
unknown, an empty part).
"""

from __future__ import annotations

import errno
import glob
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mura_cli.data.readers import DICOM_SUFFIXES, IMAGE_SUFFIXES, RASTER_SUFFIXES, sniff_head
from mura_cli.data.records import parse_mura_path, part_from_name
from mura_cli.errors import DataError
from mura_cli.utils import plural

MURA_FIRST_VALID_PATIENT = 11185
"""MURA-v1.1 train patients are 00001-11184, valid ones 11185 on."""


@dataclass(frozen=True)
class InputIssue:
    """A path found among the inputs that is not an image to score.

    Attributes:
        path: the file or folder.
        reason: why, for a person (does not repeat the path).
        failed: True for something meant to be an image that cannot be read (an empty ``.dcm``, a link loop,
            an unreadable file); False for a skipped non-image (a CSV, a folder named like an image).
    """

    path: Path
    reason: str
    failed: bool


@dataclass(frozen=True)
class InputScan:
    """What :func:`scan_inputs` found: images to read, and the other paths with their reasons."""

    images: list[Path]
    issues: list[InputIssue]

    @property
    def skipped(self) -> list[InputIssue]:
        return [i for i in self.issues if not i.failed]

    @property
    def failed(self) -> list[InputIssue]:
        return [i for i in self.issues if i.failed]

    @property
    def split(self) -> tuple[list[InputIssue], list[InputIssue]]:
        """``(failed, skipped)``."""
        return self.failed, self.skipped


def discover_inputs(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """Expand files, folders (recursive) and globs into image files; returns ``(images, other paths)``.

    The short form of :func:`scan_inputs`, without the reasons.

    Raises:
        DataError: a path does not exist or a pattern matches nothing.
    """
    scan = scan_inputs(paths)
    return scan.images, [i.path for i in scan.issues]


def scan_inputs(paths: Sequence[str | Path]) -> InputScan:
    """Expand files, folders (recursive) and globs into image files, and say why every other path is not one.

    Sniffing rules: a file is an image when its first bytes are a PNG, JPEG, TIFF or BMP signature or DICOM
    (``DICM`` at byte 128, or a preamble-less dataset), whatever its suffix; a file with a raster or DICOM
    suffix but no signature is still listed as an image (its reader then says what is wrong). An empty file
    or a file that cannot be opened with such a suffix, a broken link and a link loop are failures; other
    files, and folders named like an image (searched like any folder), are skipped non-images.

    Raises:
        DataError: a path does not exist or a pattern matches nothing.
    """
    images: list[Path] = []
    issues: list[InputIssue] = []
    seen: set[Path] = set()
    for raw in paths:
        s = str(raw)
        candidates: list[Path]
        if any(ch in s for ch in "*?[") and not Path(s).exists():
            candidates = [Path(m) for m in sorted(glob.glob(s, recursive=True))]
            if not candidates:
                raise DataError(f"{s}: the pattern matches no file")
        else:
            p = Path(s)
            if not p.exists() and not p.is_symlink():
                raise DataError(f"{p}: no such file or folder")
            candidates = [p]
        for c in candidates:
            # hidden files and dot-folders are skipped only below a folder the user passed, never on the path typed
            entries = sorted(f for f in c.rglob("*") if not _hidden_below(f, c)) if _is_dir(c) else [c]
            for f in entries:
                if f in seen:
                    continue
                seen.add(f)
                kind = _classify(f)
                if isinstance(kind, InputIssue):
                    issues.append(kind)
                elif kind:
                    images.append(f)
    return InputScan(images, issues)


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:  # a link loop on some platforms
        return False


def _classify(f: Path) -> InputIssue | bool:
    """True for an image, False for a folder to pass over quietly, else the issue."""
    suffix = f.suffix.lower()
    meant = suffix in IMAGE_SUFFIXES
    try:
        st = f.stat()
    except OSError as exc:  # broken link, link loop (ELOOP), permission on a parent
        if f.is_symlink():
            what = "a symbolic link loop" if _is_loop(f) else "a broken symbolic link (its target is missing)"
            return InputIssue(f, f"{what}; fix or remove the link", failed=True)
        return InputIssue(f, f"cannot be read ({exc.strerror or exc}); check its permissions", failed=True)
    if stat.S_ISDIR(st.st_mode):
        if meant:
            return InputIssue(f, "a folder named like an image file; the files inside it were searched", failed=False)
        return False
    if not stat.S_ISREG(st.st_mode):
        return InputIssue(f, "not a regular file (a device, pipe or socket)", failed=meant)
    if st.st_size == 0:
        if meant:
            return InputIssue(f, "the file is empty (0 bytes); re-export or copy it again", failed=True)
        return InputIssue(f, "an empty file", failed=False)
    try:
        with open(f, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        return InputIssue(f, f"cannot be read ({exc.strerror or exc}); check its permissions", failed=True)
    if sniff_head(head) is not None or suffix in RASTER_SUFFIXES or suffix in DICOM_SUFFIXES:
        return True
    return InputIssue(f, "not an image (no PNG/JPEG/TIFF/BMP signature, not DICOM)", failed=False)


def _is_loop(f: Path) -> bool:
    try:
        f.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        return True
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _hidden_below(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


@dataclass(frozen=True)
class MuraStudy:
    """Where a file sits in the MURA layout ``<split>/XR_<PART>/patientNNNNN/studyN_<label>/``.

    Unpacks and indexes as the triple ``(part, patient, study)`` that :func:`mura_study_of` used to return.

    Attributes:
        part: body part, lower case (``elbow``).
        patient: ``patientNNNNN``.
        study: the study path as the official CSVs spell it: ``MURA-v1.1/valid/XR_ELBOW/patient11186/study1_positive/``.
        split: ``train`` or ``valid``.
        assumed: True when the path does not hold ``MURA-v1.1/<split>/`` above ``XR_<PART>`` (a renamed or
            copied folder): the prefix of ``study`` was then assumed, and the split too when the folder above
            ``XR_<PART>`` is not ``train``/``valid`` (taken from the patient number: MURA-v1.1 train patients
            are 00001-11184, valid ones 11185 on).
    """

    part: str
    patient: str
    study: str
    split: str = "valid"
    assumed: bool = False

    def __iter__(self) -> Iterator[str]:
        return iter((self.part, self.patient, self.study))

    def __getitem__(self, i: int) -> str:
        return (self.part, self.patient, self.study)[i]

    def __len__(self) -> int:
        return 3


def mura_study_of(path: str | Path) -> MuraStudy | None:
    """Where ``path`` sits in the MURA layout (``part, patient, study = ...`` still unpacks), else ``None``.

    The study path is always ``MURA-v1.1/<split>/XR_<PART>/patientNNNNN/studyN_<label>/`` as in the official
    CSVs, whatever the folders above ``<split>`` are called; ``assumed`` says when the path did not show it.
    """
    posix = Path(os.path.abspath(path)).as_posix()  # absolute, symlinks kept: the layout the user sees
    found = parse_mura_path(posix)
    if found is None:
        return None
    above = found.above.split("/")  # folders above XR_<PART>
    split_dir = above[-1] if above else ""
    if split_dir.lower() in ("train", "valid"):
        split = split_dir.lower()
        assumed = not (split_dir == split and len(above) >= 2 and above[-2] == "MURA-v1.1")
    else:
        number = int(found.patient[len("patient") :])
        split = "train" if number < MURA_FIRST_VALID_PATIENT else "valid"
        assumed = True
    study_path = f"MURA-v1.1/{split}/{found.part_dir}/{found.patient}/{found.study_dir}/"
    return MuraStudy(part=found.part, patient=found.patient, study=study_path, split=split, assumed=assumed)


def resolve_study_and_part(path: str, meta: dict[str, Any], part: str | None, per_image: bool) -> tuple[str, str]:
    """The body part and study of one image frame: ``(part, study)``.

    Args:
        path: the image file.
        meta: the image's reader metadata (``frame``, ``StudyInstanceUID``, ``BodyPartExamined`` are used).
        part: the part the user forced, if any.
        per_image: every image (every frame) is its own study.

    Returns:
        The part (forced, else the MURA folder, else DICOM BodyPartExamined, else ``""``: unknown; the model's
        parts say nothing about the image) and the study (the image itself with ``per_image``, else the MURA
        study, else the DICOM StudyInstanceUID, else the file's folder).
    """
    mura = mura_study_of(path)
    frame = int(meta.get("frame", 0))
    image_id = path if frame == 0 else f"{path}#frame{frame}"
    if per_image:
        study = image_id
    elif mura:
        study = mura.study
    elif meta.get("StudyInstanceUID"):
        study = str(meta["StudyInstanceUID"])
    else:
        study = str(Path(path).parent)
    p = part_from_name(part) if part else None
    if not p and mura:
        p = mura.part
    if not p and meta.get("BodyPartExamined"):
        p = part_from_name(str(meta["BodyPartExamined"]))
    return p or "", study


def mura_path_warnings(paths: Sequence[str | Path], per_image: bool) -> list[str]:
    """What ``--format mura`` should warn about: study prefixes assumed, and images outside the MURA layout."""
    found = [mura_study_of(p) for p in paths]
    out = []
    assumed = sorted({m.split for m in found if m is not None and m.assumed})
    if assumed:
        out.append(
            f"study paths assumed under {' and '.join(f'MURA-v1.1/{s}/' for s in assumed)} (the folders above "
            "XR_<PART> are not MURA-v1.1/<split>/); check them against the CSV you score with"
        )
    outside = sum(m is None for m in found)
    if outside and not per_image:
        out.append(
            f"{plural(outside, 'image')} not in the MURA layout (<split>/XR_<PART>/patient*/study*/): their rows "
            "will not match the official CSVs"
        )
    return out
