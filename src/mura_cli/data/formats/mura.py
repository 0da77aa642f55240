"""MURA-v1.1: ``<split>/XR_<PART>/patientNNNNN/studyN_<positive|negative>/imageN.png`` and its four CSVs.

The official CSVs are headerless: ``train_image_paths.csv`` lists images (``MURA-v1.1/train/XR_.../image1.png``)
and ``train_labeled_studies.csv`` labels studies (``MURA-v1.1/train/XR_.../study1_positive/,1``); ``valid_`` the
same. When they are present they are cross-checked with the files on disk; without them the folders are read.
Images may be PNG/JPEG or DICOM (``imageN.dcm``) in the same layout.

Optional ground-truth boxes: a ``boxes.csv`` next to the official CSVs, with a header row
``path,x0,y0,x1,y1`` and one row per box (several rows for an image with several lesions)::

    path,x0,y0,x1,y1
    MURA-v1.1/train/XR_HAND/patient00001/study1_positive/image1.png,40,112,96,170

``path`` is written exactly as in the image-path CSVs (the ``MURA-v1.1/`` prefix may be left out); the
coordinates are pixels of the stored image (DICOM: rows and columns), ``x1``/``y1`` exclusive. The boxes land in
each :class:`~mura_cli.data.records.IndexRow`'s ``boxes`` as ``(x0, y0, x1, y1)``, as FracAtlas's do, for
scoring CAM boxes. Rows that name no indexed image, or are malformed, are reported as problems; boxes on images
of normal studies are kept and reported. The demo set (:mod:`mura_cli.data.demo`) writes this file; a user with
annotations of their own can write the same one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from mura_cli.boxes import Corners
from mura_cli.data.checks import check_image_files
from mura_cli.data.formats._files import read_csv_rows, scan_files
from mura_cli.data.readers import IMAGE_SUFFIXES
from mura_cli.data.records import MURA_PARTS, Index, IndexRow, MuraPath, Problems, parse_mura_path

MURA_DIR = "MURA-v1.1"
MURA_CSVS = (
    "train_image_paths.csv",
    "train_labeled_studies.csv",
    "valid_image_paths.csv",
    "valid_labeled_studies.csv",
)
BOXES_CSV = "boxes.csv"
_MURA_SPLITS = ("train", "valid")
_SUFFIXES = IMAGE_SUFFIXES


@dataclass
class _Listing:
    """What the official CSVs say: image path -> split, study folder -> label, and which CSVs were found."""

    images: dict[str, str] = field(default_factory=dict)
    study_labels: dict[str, int] = field(default_factory=dict)
    csvs: list[str] = field(default_factory=list)


class MuraReader:
    """Reads a MURA-v1.1 folder, or the folder above it."""

    name = "mura"

    def locate(self, root: Path) -> Path | None:
        """The MURA-v1.1 folder: ``root`` itself or ``root/MURA-v1.1``, when it holds a split folder or a CSV."""
        for candidate in (root, root / MURA_DIR):
            if candidate.is_dir() and (
                any((candidate / s).is_dir() for s in _MURA_SPLITS) or any((candidate / c).is_file() for c in MURA_CSVS)
            ):
                return candidate
        return None

    def can_read(self, root: Path) -> bool:
        return self.locate(root) is not None

    def read(self, root: Path, *, check_files: bool = True) -> Index:
        """Index MURA-v1.1: the official CSVs when present, cross-checked with the files; else the folders."""
        mura_dir = self.locate(root) or root
        files = [f for f in scan_files(mura_dir, _SUFFIXES) if f.split("/", 1)[0] in _MURA_SPLITS]
        problems = Problems()
        listing = _read_listing(mura_dir, problems)
        paths = _crosscheck(files, listing, problems) if listing.images else files
        rows = _rows(paths, listing.study_labels, problems)
        meta: dict = {"csvs": listing.csvs}
        if (mura_dir / BOXES_CSV).is_file():
            rows = _attach_boxes(rows, _read_boxes(mura_dir / BOXES_CSV, mura_dir.name + "/", problems), problems)
            meta["boxes"] = sum(len(r.boxes) for r in rows)
        if check_files:
            problems.extend(check_image_files(mura_dir, (r.path for r in rows)))
        return Index(root=mura_dir, kind=self.name, rows=tuple(rows), problems=problems.to_tuple(), meta=meta)


def _read_listing(mura_dir: Path, problems: Problems) -> _Listing:
    """Read the official CSVs that exist; paths lose their ``MURA-v1.1/`` prefix and study folders their slash."""
    prefix = mura_dir.name + "/"  # CSV paths start with "MURA-v1.1/"
    listing = _Listing()
    for split in _MURA_SPLITS:
        img_csv = mura_dir / f"{split}_image_paths.csv"
        study_csv = mura_dir / f"{split}_labeled_studies.csv"
        if img_csv.is_file():
            listing.csvs.append(img_csv.name)
            for row in read_csv_rows(img_csv):
                listing.images[_strip_prefix(row[0].strip(), prefix)] = split
        if study_csv.is_file():
            listing.csvs.append(study_csv.name)
            bad = []
            for row in read_csv_rows(study_csv):
                if len(row) < 2 or row[1].strip() not in ("0", "1"):
                    bad.append(",".join(row))
                    continue
                listing.study_labels[_strip_prefix(row[0].strip(), prefix).rstrip("/")] = int(row[1].strip())
            problems.add("bad_csv_row", f"{study_csv.name}: rows without a 0/1 label, ignored", bad)
    return listing


def _strip_prefix(path: str, prefix: str) -> str:
    path = path.replace("\\", "/")
    return path[len(prefix) :] if path.startswith(prefix) else path


def _study(
    study: str, study_labels: dict[str, int], disagree: set[str], unlabeled: set[str]
) -> tuple[MuraPath, int] | None:
    """A study folder ``<split>/<part>/<patient>/<study>`` and its label, or ``None`` (bad layout, no label).

    The CSV label wins; a study the CSVs do not label is noted in ``unlabeled``, a folder suffix that
    contradicts its CSV label in ``disagree``.
    """
    found = parse_mura_path(study, relative=True) if study.count("/") == 3 else None
    if found is None:
        return None
    label = study_labels.get(study)
    if label is None:
        if study_labels:
            unlabeled.add(study)
        label = found.label
    elif found.label is not None and found.label != label:
        disagree.add(study)
    return None if label is None else (found, label)


def _crosscheck(files: list[str], listing: _Listing, problems: Problems) -> list[str]:
    """The images to index: those both listed and on disk, plus those on disk that no CSV lists."""
    on_disk = set(files)
    missing = sorted(p for p in listing.images if p not in on_disk)
    unlisted = sorted(p for p in on_disk if p not in listing.images)
    problems.add("missing_file", "images listed in the CSVs but not on disk (left out)", missing)
    problems.add("unlisted_image", "images on disk that no image CSV lists (indexed from folders)", unlisted)
    return sorted((set(listing.images) & on_disk) | set(unlisted))


def _rows(paths: list[str], study_labels: dict[str, int], problems: Problems) -> list[IndexRow]:
    """One row per image in the layout; the CSV label of its study wins over the folder suffix."""
    rows: list[IndexRow] = []
    bad_layout: list[str] = []
    disagree: set[str] = set()
    unlabeled: set[str] = set()
    studies: dict[str, tuple[MuraPath, int] | None] = {}  # each study folder is read once, not once per image
    for rel in paths:
        study = rel.rpartition("/")[0]
        if study not in studies:
            studies[study] = _study(study, study_labels, disagree, unlabeled)
        found = studies[study]
        if found is None:
            bad_layout.append(rel)
            continue
        where, label = found
        rows.append(
            IndexRow(path=rel, split=where.above, part=where.part, patient=where.patient, study=study, label=label)
        )
    problems.add(
        "label_disagrees",
        "studies whose CSV label disagrees with the folder suffix (the CSV label is used)",
        sorted(disagree),
    )
    problems.add(
        "unlabeled_study",
        "studies no labelled-studies CSV lists (label taken from the folder suffix)",
        sorted(unlabeled),
    )
    if study_labels:
        indexed_studies = {r.study for r in rows}
        empty = sorted(s for s in study_labels if s not in indexed_studies)
        problems.add("study_without_images", "studies in the CSVs with no image on disk", empty)
    problems.add("bad_layout", "files outside <split>/XR_<PART>/patient*/study*_<label>/ (left out)", bad_layout)
    odd = sorted({r.part for r in rows} - set(MURA_PARTS))
    problems.add("unknown_part", "body-part folders other than the seven MURA parts (kept)", odd)
    return rows


def _read_boxes(path: Path, prefix: str, problems: Problems) -> dict[str, list[Corners]]:
    """Image path (without the ``MURA-v1.1/`` prefix) -> its boxes, from ``boxes.csv``; bad rows are reported."""
    found: dict[str, list[Corners]] = defaultdict(list)
    bad = []
    for n, row in enumerate(read_csv_rows(path)):
        if n == 0 and row[0].strip().lower() == "path":
            continue
        try:
            box = tuple(float(v) for v in row[1:5])
        except ValueError:
            box = ()
        if len(box) != 4 or not (0 <= box[0] < box[2] < math.inf and 0 <= box[1] < box[3] < math.inf):
            bad.append(",".join(row))
            continue
        found[_strip_prefix(row[0].strip(), prefix)].append(box)
    problems.add(
        "bad_csv_row", f"{path.name}: rows that are not path,x0,y0,x1,y1 with 0 <= x0 < x1 and 0 <= y0 < y1", bad
    )
    return found


def _attach_boxes(rows: list[IndexRow], boxes: dict[str, list[Corners]], problems: Problems) -> list[IndexRow]:
    """Rows with their ``boxes``; boxes naming no indexed image and boxes on normal images are reported."""
    indexed = {r.path for r in rows}
    problems.add(
        "box_without_image",
        f"{BOXES_CSV}: boxes whose image is not indexed (left out)",
        sorted(p for p in boxes if p not in indexed),
    )
    problems.add(
        "box_on_normal_image",
        f"{BOXES_CSV}: boxes on images of normal studies (kept)",
        sorted(r.path for r in rows if r.label == 0 and r.path in boxes),
    )
    return [replace(r, boxes=tuple(boxes[r.path])) if r.path in boxes else r for r in rows]
