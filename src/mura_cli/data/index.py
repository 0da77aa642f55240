"""Dataset indexing: MURA-v1.1, FracAtlas and generic labelled CSVs to one table of image rows.

An index is a list of :class:`IndexRow` (one per image) plus the problems found while building it. It is
written as ``index.csv`` (paths relative to the dataset root) and ``summary.json``; every later command
reads it back with :func:`load_index`.

MURA layout: ``MURA-v1.1/<split>/XR_<PART>/patientNNNNN/studyN_<positive|negative>/imageN.png`` with the
four official headerless CSVs (``train_image_paths.csv``, ``train_labeled_studies.csv`` and the ``valid_``
pair). FracAtlas layout: ``images/{Fractured,Non_fractured}/*.jpg``, ``dataset.csv`` and
``Annotations/COCO_fracture_masks.json``.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mura_cli.data.readers import RASTER_SUFFIXES
from mura_cli.errors import DataError

MURA_PARTS = ("elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist")
FRACATLAS_REGIONS = ("hand", "leg", "hip", "shoulder")
SPLITS = ("train", "tune", "valid")
INDEX_COLUMNS = ("path", "split", "part", "patient", "study", "label", "boxes")
INDEX_FILE = "index.csv"
SUMMARY_FILE = "summary.json"
_MURA_CSVS = (
    "train_image_paths.csv",
    "train_labeled_studies.csv",
    "valid_image_paths.csv",
    "valid_labeled_studies.csv",
)
_STUDY_RE = re.compile(r"^study\d+_(positive|negative)$")
_JPEG_SUFFIXES = (".jpg", ".jpeg")
_MAX_EXAMPLES = 5


@dataclass(frozen=True)
class IndexRow:
    """One image of a dataset.

    Attributes:
        path: image path relative to the dataset root, with forward slashes.
        split: ``train``, ``tune`` or ``valid`` (MURA's valid is the evaluation split).
        part: body part, lower case (``elbow`` ... ``wrist``; FracAtlas ``hand``, ``leg``, ``hip``, ``shoulder``,
            ``mixed``).
        patient: patient id (FracAtlas has none: the image id stands in).
        study: study id; the study label is the label of its images.
        label: 1 abnormal, 0 normal.
        boxes: ground-truth boxes ``(x0, y0, x1, y1)`` in pixels of the EXIF-upright image (FracAtlas).
    """

    path: str
    split: str
    part: str
    patient: str
    study: str
    label: int
    boxes: tuple[tuple[float, float, float, float], ...] = ()

    def to_row(self) -> dict[str, str]:
        boxes = json.dumps([[round(v, 2) for v in b] for b in self.boxes]) if self.boxes else ""
        return {
            "path": self.path,
            "split": self.split,
            "part": self.part,
            "patient": self.patient,
            "study": self.study,
            "label": str(self.label),
            "boxes": boxes,
        }


@dataclass(frozen=True)
class Problem:
    """A defect found while indexing: a ``kind`` (e.g. ``missing_file``), how many, and a few examples."""

    kind: str
    count: int
    message: str
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Index:
    """An indexed dataset: rows, the root they are relative to, the dataset kind and the problems found."""

    root: Path
    kind: str
    rows: tuple[IndexRow, ...]
    problems: tuple[Problem, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def parts(self) -> list[str]:
        return sorted({r.part for r in self.rows})

    def select(self, *, split: str | Sequence[str] | None = None, part: str | None = None) -> list[IndexRow]:
        """Rows of one split (or several) and one part (``None`` or ``all`` for every part)."""
        splits = {split} if isinstance(split, str) else set(split) if split else None
        return [
            r for r in self.rows if (splits is None or r.split in splits) and (part in (None, "all") or r.part == part)
        ]

    def resolve(self, row: IndexRow) -> Path:
        """Absolute path of a row's image."""
        return self.root / row.path


# ============================================================================================ building


def find_dataset(root: str | Path) -> tuple[str, Path]:
    """Say what ``root`` holds: ``("mura", mura_dir)``, ``("fracatlas", dir)`` or ``("csv", file)``.

    Raises:
        DataError: when ``root`` is none of those.
    """
    p = Path(root).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or folder; pass a MURA-v1.1 folder, its parent, FracAtlas or a CSV")
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return "csv", p
        raise DataError(f"{p}: expected a dataset folder or a labelled CSV (path,label[,part,study,patient])")
    if (p / "images" / "Fractured").is_dir() or ((p / "dataset.csv").is_file() and (p / "images").is_dir()):
        return "fracatlas", p
    for candidate in (p, p / "MURA-v1.1"):
        if candidate.is_dir() and (
            any((candidate / s).is_dir() for s in ("train", "valid"))
            or any((candidate / c).is_file() for c in _MURA_CSVS)
        ):
            return "mura", candidate
    raise DataError(
        f"{p}: not a dataset layout mura knows; expected MURA-v1.1/<split>/XR_<PART>/patient*/study*_*/, "
        "FracAtlas (images/Fractured, dataset.csv) or a CSV file with columns path,label[,part,study,patient]"
    )


def build_index(
    root: str | Path,
    *,
    tune_fraction: float = 0.1,
    seed: int = 0,
    check_files: bool = True,
) -> Index:
    """Index a dataset and split its train images into train/tune by patient.

    Args:
        root: a MURA-v1.1 folder or its parent, a FracAtlas folder, or a labelled CSV.
        tune_fraction: fraction of train patients moved to the tune split (per part x label stratum).
        seed: seed of the split.
        check_files: look inside each file's header/tail for truncation and EXIF rotation (cheap).

    Returns:
        The index with every defect found listed in ``problems``.
    """
    kind, where = find_dataset(root)
    if kind == "mura":
        index = _index_mura(where)
    elif kind == "fracatlas":
        index = _index_fracatlas(where)
    else:
        index = _index_csv(where)
    problems = list(index.problems)
    if check_files:
        problems.extend(check_image_files(index))
    rows = split_by_patient(index.rows, tune_fraction=tune_fraction, seed=seed)
    if not rows:
        raise DataError(f"{where}: no images found; check the folder layout (see `mura prepare --help`)")
    meta = dict(index.meta, tune_fraction=tune_fraction, seed=seed)
    return replace(index, rows=tuple(rows), problems=tuple(problems), meta=meta)


def _problem(kind: str, items: Sequence[str], message: str) -> Problem:
    return Problem(kind=kind, count=len(items), message=message, examples=tuple(items[:_MAX_EXAMPLES]))


def _scan_files(top: Path, suffixes: Iterable[str]) -> list[str]:
    """All files under ``top`` with one of ``suffixes``, as paths relative to ``top`` (os.scandir, no stat)."""
    suffixes = tuple(s.lower() for s in suffixes)
    out: list[str] = []
    stack = [("", str(top))]
    while stack:
        rel, absdir = stack.pop()
        try:
            entries = list(os.scandir(absdir))
        except OSError:
            continue
        for e in entries:
            name = e.name
            if name.startswith("."):
                continue
            r = f"{rel}/{name}" if rel else name
            if e.is_dir(follow_symlinks=False):
                stack.append((r, e.path))
            elif name.lower().endswith(suffixes):
                out.append(r)
    out.sort()
    return out


def _read_headerless_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]


def part_from_name(name: str) -> str | None:
    """``XR_ELBOW``/``elbow``/``Elbow`` -> ``elbow``; unknown names -> ``None``."""
    n = name.strip().lower()
    if n.startswith("xr_"):
        n = n[3:]
    return n or None


def _index_mura(mura_dir: Path) -> Index:
    """Index MURA-v1.1: the official CSVs when present, cross-checked with the files; else the folders."""
    prefix = mura_dir.name + "/"  # CSV paths start with "MURA-v1.1/"
    files = [f for f in _scan_files(mura_dir, RASTER_SUFFIXES) if f.split("/", 1)[0] in ("train", "valid")]
    on_disk = set(files)
    problems: list[Problem] = []
    csv_images: dict[str, str] = {}  # rel path -> split
    study_labels: dict[str, int] = {}  # rel study dir (no trailing slash) -> label
    csvs_found = []
    for split in ("train", "valid"):
        img_csv = mura_dir / f"{split}_image_paths.csv"
        study_csv = mura_dir / f"{split}_labeled_studies.csv"
        if img_csv.is_file():
            csvs_found.append(img_csv.name)
            for row in _read_headerless_csv(img_csv):
                csv_images[_strip_prefix(row[0].strip(), prefix)] = split
        if study_csv.is_file():
            csvs_found.append(study_csv.name)
            bad = []
            for row in _read_headerless_csv(study_csv):
                if len(row) < 2 or row[1].strip() not in ("0", "1"):
                    bad.append(",".join(row))
                    continue
                study_labels[_strip_prefix(row[0].strip(), prefix).rstrip("/")] = int(row[1].strip())
            if bad:
                problems.append(_problem("bad_csv_row", bad, f"{study_csv.name}: rows without a 0/1 label, ignored"))

    if csv_images:
        missing = sorted(p for p in csv_images if p not in on_disk)
        unlisted = sorted(p for p in on_disk if p not in csv_images)
        if missing:
            problems.append(_problem("missing_file", missing, "images listed in the CSVs but not on disk (left out)"))
        if unlisted:
            problems.append(
                _problem("unlisted_image", unlisted, "images on disk that no image CSV lists (indexed from folders)")
            )
        paths = sorted((set(csv_images) & on_disk) | set(unlisted))
    else:
        paths = files

    rows: list[IndexRow] = []
    bad_layout: list[str] = []
    disagree: list[str] = []
    unlabeled: list[str] = []
    for rel in paths:
        parts = rel.split("/")
        if len(parts) != 5:
            bad_layout.append(rel)
            continue
        split, part_dir, patient, study_dir, _ = parts
        m = _STUDY_RE.match(study_dir)
        folder_label = None if m is None else int(m.group(1) == "positive")
        study = "/".join(parts[:4])
        label = study_labels.get(study)
        if label is None:
            if study_labels:
                unlabeled.append(study)
            label = folder_label
        elif folder_label is not None and folder_label != label:
            disagree.append(study)
        if label is None:
            bad_layout.append(rel)
            continue
        part = part_from_name(part_dir) or part_dir
        rows.append(IndexRow(path=rel, split=split, part=part, patient=patient, study=study, label=label))
    if disagree:
        ds = sorted(set(disagree))
        problems.append(
            _problem(
                "label_disagrees",
                ds,
                "studies whose CSV label disagrees with the folder suffix (the CSV label is used)",
            )
        )
    if unlabeled:
        us = sorted(set(unlabeled))
        problems.append(
            _problem(
                "unlabeled_study", us, "studies no labelled-studies CSV lists (label taken from the folder suffix)"
            )
        )
    if study_labels:
        indexed_studies = {r.study for r in rows}
        empty = sorted(s for s in study_labels if s not in indexed_studies)
        if empty:
            problems.append(_problem("study_without_images", empty, "studies in the CSVs with no image on disk"))
    if bad_layout:
        problems.append(
            _problem("bad_layout", bad_layout, "files outside <split>/XR_<PART>/patient*/study*_<label>/ (left out)")
        )
    parts_seen = {r.part for r in rows}
    odd = sorted(parts_seen - set(MURA_PARTS))
    if odd:
        problems.append(_problem("unknown_part", odd, "body-part folders other than the seven MURA parts (kept)"))
    return Index(root=mura_dir, kind="mura", rows=tuple(rows), problems=tuple(problems), meta={"csvs": csvs_found})


def _strip_prefix(path: str, prefix: str) -> str:
    path = path.replace("\\", "/")
    return path[len(prefix) :] if path.startswith(prefix) else path


def _index_fracatlas(root: Path) -> Index:
    """Index FracAtlas: label = fractured, part = region flag, each image its own study and patient."""
    problems: list[Problem] = []
    files = _scan_files(root / "images", (*_JPEG_SUFFIXES, ".png"))
    by_name: dict[str, tuple[str, int]] = {}
    for rel in files:
        folder, name = rel.rsplit("/", 1)[0], rel.rsplit("/", 1)[-1]
        folder_label = {"fractured": 1, "non_fractured": 0}.get(folder.lower())
        if folder_label is None:
            continue
        by_name[name] = ("images/" + rel, folder_label)
    csv_rows: dict[str, dict[str, str]] = {}
    csv_path = root / "dataset.csv"
    if csv_path.is_file():
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            for r in csv.DictReader(f):
                csv_rows[r["image_id"].strip()] = r
    else:
        problems.append(Problem("missing_csv", 1, "dataset.csv not found: parts unknown, labels from folders"))
    boxes = _fracatlas_boxes(root, problems)

    rows: list[IndexRow] = []
    disagree, no_csv, multi = [], [], []
    for name in sorted(by_name):
        rel, folder_label = by_name[name]
        r = csv_rows.get(name)
        label = folder_label
        part = "unknown"
        if r is None:
            no_csv.append(name)
        else:
            csv_label = int(r.get("fractured", folder_label) or 0)
            if csv_label != folder_label:
                disagree.append(
                    f"{name} (folder {'Fractured' if folder_label else 'Non_fractured'}, CSV fractured={csv_label}"
                    f"{', has a fracture box' if name in boxes else ''})"
                )
            flags = [reg for reg in FRACATLAS_REGIONS if str(r.get(reg, "0")).strip() == "1"]
            if str(r.get("mixed", "0")).strip() == "1" or len(flags) > 1:
                part = "mixed"
                if len(flags) > 1 and str(r.get("mixed", "0")).strip() != "1":
                    multi.append(name)
            elif flags:
                part = flags[0]
        stem = name.rsplit(".", 1)[0]
        rows.append(
            IndexRow(
                path=rel, split="train", part=part, patient=stem, study=stem, label=label, boxes=boxes.get(name, ())
            )
        )
    missing = sorted(n for n in csv_rows if n not in by_name)
    if missing:
        problems.append(_problem("missing_file", missing, "dataset.csv rows whose image is not on disk (left out)"))
    if disagree:
        problems.append(
            _problem(
                "label_disagrees",
                disagree,
                "images whose CSV label disagrees with their folder "
                "(the folder label is used; it agrees with the fracture boxes)",
            )
        )
    if no_csv:
        problems.append(_problem("unlisted_image", no_csv, "images dataset.csv does not list (part unknown)"))
    if multi:
        problems.append(_problem("multi_region", multi, "images with several region flags but mixed=0 (part mixed)"))
    box_no_image = sorted(n for n in boxes if n not in by_name)
    if box_no_image:
        problems.append(_problem("box_without_image", box_no_image, "fracture boxes whose image is not on disk"))
    fractured_without_box = sorted(r.path for r in rows if r.label == 1 and not r.boxes)
    if fractured_without_box:
        problems.append(
            _problem(
                "fracture_without_box",
                fractured_without_box,
                "fractured images with no fracture box (kept for classification)",
            )
        )
    meta = {"boxes": sum(len(r.boxes) for r in rows)}
    return Index(root=root, kind="fracatlas", rows=tuple(rows), problems=tuple(problems), meta=meta)


def _fracatlas_boxes(root: Path, problems: list[Problem]) -> dict[str, tuple[tuple[float, float, float, float], ...]]:
    coco = root / "Annotations" / "COCO_fracture_masks.json"
    if not coco.is_file():
        problems.append(Problem("missing_boxes", 1, "Annotations/COCO_fracture_masks.json not found: no boxes"))
        return {}
    try:
        data = json.loads(coco.read_text())
        names = {img["id"]: img["file_name"] for img in data["images"]}
        out: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)
        for ann in data["annotations"]:
            x, y, w, h = (float(v) for v in ann["bbox"])
            out[names[ann["image_id"]]].append((x, y, x + w, y + h))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{coco}: not a COCO annotation file ({exc}); fix or remove it") from None
    return {k: tuple(v) for k, v in out.items()}


def _index_csv(csv_path: Path) -> Index:
    """Index a generic labelled CSV: ``path,label[,part,study,patient[,split]]``, header optional."""
    rows_in = _read_headerless_csv(csv_path)
    if not rows_in:
        raise DataError(f"{csv_path}: the CSV is empty; expected rows path,label[,part,study,patient]")
    columns = ["path", "label", "part", "study", "patient", "split"]
    first = [c.strip().lower() for c in rows_in[0]]
    has_header = "path" in first and "label" in first
    if has_header:
        columns = first
        rows_in = rows_in[1:]
    root = csv_path.parent
    problems: list[Problem] = []
    rows: list[IndexRow] = []
    bad, missing = [], []
    for n, raw in enumerate(rows_in, start=2 if has_header else 1):
        rec = dict(zip(columns, (c.strip() for c in raw), strict=False))
        path, label = rec.get("path", ""), rec.get("label", "")
        if not path or label not in ("0", "1"):
            bad.append(f"line {n}: {','.join(raw)}")
            continue
        p = Path(path)
        rel = p.relative_to(root).as_posix() if p.is_absolute() and p.is_relative_to(root) else path
        if not (root / rel).is_file():
            missing.append(rel)
            continue
        study = rec.get("study") or str(Path(rel).parent.as_posix()) or rel
        patient = rec.get("patient") or study
        split = rec.get("split", "train") or "train"
        split = "valid" if split.lower() in ("valid", "val", "test", "validation") else split.lower()
        part = part_from_name(rec.get("part") or "") or "unknown"
        rows.append(
            IndexRow(
                path=rel,
                split=split if split in SPLITS else "train",
                part=part,
                patient=patient,
                study=study,
                label=int(label),
            )
        )
    if bad:
        problems.append(_problem("bad_csv_row", bad, "rows without a path or a 0/1 label (left out)"))
    if missing:
        problems.append(_problem("missing_file", missing, "CSV rows whose image is not on disk (left out)"))
    return Index(root=root, kind="csv", rows=tuple(rows), problems=tuple(problems), meta={"csv": csv_path.name})


# ============================================================================================ checks


def check_image_files(index: Index) -> list[Problem]:
    """Cheap content checks on every image: empty, truncated JPEG/PNG, EXIF rotation (JPEG only)."""
    empty, truncated, rotated, unreadable = [], [], [], []
    for row in index.rows:
        kind = _check_one(index.root / row.path)
        if kind == "empty":
            empty.append(row.path)
        elif kind == "truncated":
            truncated.append(row.path)
        elif kind == "rotated":
            rotated.append(row.path)
        elif kind == "unreadable":
            unreadable.append(row.path)
    out = []
    if empty:
        out.append(_problem("empty_file", empty, "empty files (0 bytes); they will fail to load"))
    if unreadable:
        out.append(_problem("unreadable", unreadable, "files that cannot be opened"))
    if truncated:
        out.append(
            _problem(
                "truncated",
                truncated,
                "truncated images (no end marker): decoded as far as the data goes, the missing part left grey",
            )
        )
    if rotated:
        out.append(
            _problem(
                "exif_rotated", rotated, "JPEGs with an EXIF orientation: read upright (boxes are in the upright frame)"
            )
        )
    return out


def _check_one(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
            if not head:
                return "empty"
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64))
            tail = f.read()
    except OSError:
        return "unreadable"
    if head[:3] == b"\xff\xd8\xff":
        if b"\xff\xd9" not in tail:
            return "truncated"
        return "rotated" if _jpeg_orientation(head) not in (None, 1) else None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        return "truncated"
    return None


def _jpeg_orientation(head: bytes) -> int | None:
    """EXIF orientation from the APP1 segment of a JPEG's first bytes, without decoding."""
    i = 2
    while i + 4 <= len(head) and head[i] == 0xFF:
        marker = head[i + 1]
        seg_len = int.from_bytes(head[i + 2 : i + 4], "big")
        if marker == 0xE1 and head[i + 4 : i + 10] == b"Exif\x00\x00":
            tiff = head[i + 10 : i + 2 + seg_len]
            if len(tiff) < 8:
                return None
            order = "little" if tiff[:2] == b"II" else "big"
            ifd = int.from_bytes(tiff[4:8], order)
            if ifd + 2 > len(tiff):
                return None
            count = int.from_bytes(tiff[ifd : ifd + 2], order)
            for k in range(count):
                e = ifd + 2 + 12 * k
                if e + 12 > len(tiff):
                    break
                if int.from_bytes(tiff[e : e + 2], order) == 0x0112:
                    return int.from_bytes(tiff[e + 8 : e + 10], order)
            return None
        if marker in (0xDA, 0xD9):  # start of scan: no EXIF before the image data
            return None
        i += 2 + seg_len
    return None


# ============================================================================================ split


def split_by_patient(rows: Sequence[IndexRow], *, tune_fraction: float = 0.1, seed: int = 0) -> list[IndexRow]:
    """Move ``tune_fraction`` of the train patients to ``tune``, stratified by (part, label); seeded.

    A patient's stratum is its most frequent part and whether any of its studies is abnormal, so no patient
    ends up in both splits. Rows already marked ``tune`` or ``valid`` are kept as they are.
    """
    if not 0.0 <= tune_fraction < 1.0:
        raise DataError(f"--tune-fraction {tune_fraction}: must be in [0, 1)")
    if any(r.split == "tune" for r in rows) or tune_fraction == 0:
        return list(rows)
    by_patient: dict[str, list[IndexRow]] = defaultdict(list)
    for r in rows:
        if r.split == "train":
            by_patient[r.patient].append(r)
    strata: dict[tuple[str, int], list[str]] = defaultdict(list)
    for patient, prs in sorted(by_patient.items()):
        part = Counter(r.part for r in prs).most_common(1)[0][0]
        strata[(part, max(r.label for r in prs))].append(patient)
    rng = np.random.default_rng(seed)
    tune_patients: set[str] = set()
    for key in sorted(strata):
        patients = strata[key]
        n = len(patients)
        k = round(tune_fraction * n)
        if k == 0 and n >= 2 and rng.random() < tune_fraction * n:  # keep small strata unbiased in expectation
            k = 1
        k = min(k, n - 1) if n > 1 else 0
        order = rng.permutation(n)
        tune_patients.update(patients[i] for i in order[:k])
    return [replace(r, split="tune") if r.split == "train" and r.patient in tune_patients else r for r in rows]


# ============================================================================================ summary / io


def summarize(rows: Sequence[IndexRow]) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
    """Counts as ``{part: {split: {"normal"|"abnormal": {"studies": n, "images": n}}}}``."""
    images: Counter[tuple[str, str, int]] = Counter()
    studies: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    for r in rows:
        key = (r.part, r.split, r.label)
        images[key] += 1
        studies[key].add(r.study)
    out: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
    for part, split, label in sorted(images):
        cell = out.setdefault(part, {}).setdefault(split, {})
        cell["abnormal" if label else "normal"] = {
            "studies": len(studies[(part, split, label)]),
            "images": images[(part, split, label)],
        }
    return out


def write_index(index: Index, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``index.csv`` and ``summary.json`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        index_path = out / INDEX_FILE
        tmp = index_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=INDEX_COLUMNS, lineterminator="\n")
            w.writeheader()
            for r in index.rows:
                w.writerow(r.to_row())
        tmp.replace(index_path)
        summary = {
            "root": str(index.root.resolve()),
            "kind": index.kind,
            "images": len(index.rows),
            "studies": len({r.study for r in index.rows}),
            "patients": len({r.patient for r in index.rows}),
            "counts": summarize(index.rows),
            "problems": [asdict(p) for p in index.problems],
            "meta": index.meta,
        }
        summary_path = out / SUMMARY_FILE
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    except OSError as exc:
        raise DataError(
            f"{out}: cannot write the index there ({exc.strerror}); choose another folder with --out"
        ) from None
    return index_path, summary_path


def load_index(path: str | Path) -> Index:
    """Read an index written by :func:`write_index` (the folder, its ``index.csv`` or ``summary.json``)."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    index_path, summary_path = folder / INDEX_FILE, folder / SUMMARY_FILE
    if not index_path.is_file() or not summary_path.is_file():
        raise DataError(f"{folder}: no {INDEX_FILE}/{SUMMARY_FILE} here; run `mura prepare DATA --out {folder}` first")
    try:
        summary = json.loads(summary_path.read_text())
        rows = []
        with open(index_path, newline="", encoding="utf-8") as f:
            for rec in csv.DictReader(f):
                boxes = tuple(tuple(float(v) for v in b) for b in json.loads(rec["boxes"])) if rec.get("boxes") else ()
                rows.append(
                    IndexRow(
                        path=rec["path"],
                        split=rec["split"],
                        part=rec["part"],
                        patient=rec["patient"],
                        study=rec["study"],
                        label=int(rec["label"]),
                        boxes=boxes,
                    )
                )
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{index_path}: damaged index ({exc}); run `mura prepare` again") from None
    problems = tuple(
        Problem(p["kind"], p["count"], p["message"], tuple(p.get("examples", ()))) for p in summary.get("problems", [])
    )
    return Index(
        root=Path(summary["root"]),
        kind=summary.get("kind", "mura"),
        rows=tuple(rows),
        problems=problems,
        meta=summary.get("meta", {}),
    )


def default_out_dir(root: str | Path) -> Path:
    """Where ``mura prepare ROOT`` writes by default: ``.mura/<name>`` in the working directory, never inside
    the dataset (datasets sit on read-only shares and are shared between people).

    ``<name>`` is the dataset folder's name, with its parent's for MURA (``mura-sample-MURA-v1.1``), or the
    CSV's folder name (``fracatlas``, ``data``).
    """
    kind, where = find_dataset(root)
    base = (where.parent if kind == "csv" else where).resolve()
    name = base.name or "data"
    if kind == "mura" and name == "MURA-v1.1":
        name = f"{base.parent.name}-{name}" if base.parent.name else name
    return Path(".mura") / name


def find_prepared(data: str | Path) -> Path | None:
    """The folder holding a prepared index for ``data`` (an index folder or a dataset root), if there is one.

    For a dataset root: ``./.mura/<name>`` (where ``mura prepare ROOT`` writes), then ``ROOT/.mura`` (where
    older versions wrote); an index is used only when it was built from that same dataset.
    """
    p = Path(data)
    if (p / INDEX_FILE).is_file() or (p.name == INDEX_FILE and p.is_file()):
        return p if p.is_dir() else p.parent
    try:
        kind, where = find_dataset(p)
        out = default_out_dir(p)
    except DataError:
        return None
    legacy = (where.parent if kind == "csv" else where) / ".mura"
    for candidate in (out, legacy):
        if (candidate / INDEX_FILE).is_file() and _built_from(candidate, where):
            return candidate
    return None


def _built_from(index_dir: Path, where: Path) -> bool:
    """True when the index in ``index_dir`` was built from the dataset at ``where`` (its summary's ``root``)."""
    try:
        root = json.loads((index_dir / SUMMARY_FILE).read_text()).get("root")
    except (OSError, ValueError, AttributeError):
        return False
    expected = where.parent if where.is_file() else where
    return bool(root) and Path(root).resolve() == expected.resolve()
