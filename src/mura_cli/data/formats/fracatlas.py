"""FracAtlas: ``images/{Fractured,Non_fractured}/*.jpg``, ``dataset.csv`` and ``Annotations/COCO_fracture_masks.json``.

The label is the folder (it agrees with the fracture boxes where the CSV does not), the part is the CSV's region
flag, and each image is its own study and patient (FracAtlas gives no patient ids).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

from mura_cli.boxes import Corners
from mura_cli.data.checks import check_image_files
from mura_cli.data.formats._files import scan_files
from mura_cli.data.records import FRACATLAS_REGIONS, Index, IndexRow, Problems
from mura_cli.errors import DataError

COCO_FILE = "Annotations/COCO_fracture_masks.json"
_FOLDER_LABELS = {"fractured": 1, "non_fractured": 0}
_SUFFIXES = (".jpg", ".jpeg", ".png")


class FracAtlasReader:
    """Reads a FracAtlas folder."""

    name = "fracatlas"

    def locate(self, root: Path) -> Path | None:
        """``root`` when it holds ``images/Fractured``, or ``images/`` beside ``dataset.csv``."""
        if (root / "images" / "Fractured").is_dir() or (
            (root / "dataset.csv").is_file() and (root / "images").is_dir()
        ):
            return root
        return None

    def can_read(self, root: Path) -> bool:
        return self.locate(root) is not None

    def read(self, root: Path, *, check_files: bool = True) -> Index:
        """Index FracAtlas: label = fractured folder, part = region flag, each image its own study and patient."""
        problems = Problems()
        by_name = _images_by_name(root)
        csv_rows = _read_dataset_csv(root, problems)
        boxes = _read_boxes(root, problems)
        rows = _rows(by_name, csv_rows, boxes, problems)
        if check_files:
            problems.extend(check_image_files(root, (r.path for r in rows)))
        meta = {"boxes": sum(len(r.boxes) for r in rows)}
        return Index(root=root, kind=self.name, rows=tuple(rows), problems=problems.to_tuple(), meta=meta)


def _images_by_name(root: Path) -> dict[str, tuple[str, int]]:
    """File name -> (path relative to ``root``, folder label), for images in the two label folders."""
    by_name: dict[str, tuple[str, int]] = {}
    for rel in scan_files(root / "images", _SUFFIXES):
        folder, _, name = rel.rpartition("/")
        folder_label = _FOLDER_LABELS.get(folder.lower())
        if folder_label is not None:
            by_name[name] = ("images/" + rel, folder_label)
    return by_name


def _read_dataset_csv(root: Path, problems: Problems) -> dict[str, dict[str, str]]:
    csv_path = root / "dataset.csv"
    if not csv_path.is_file():
        problems.note("missing_csv", "dataset.csv not found: parts unknown, labels from folders")
        return {}
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        return {r["image_id"].strip(): r for r in csv.DictReader(f)}


def _read_boxes(root: Path, problems: Problems) -> dict[str, tuple[Corners, ...]]:
    """File name -> its fracture boxes ``(x0, y0, x1, y1)`` from the COCO file."""
    coco = root / COCO_FILE
    if not coco.is_file():
        problems.note("missing_boxes", f"{COCO_FILE} not found: no boxes")
        return {}
    try:
        data = json.loads(coco.read_text())
        names = {img["id"]: img["file_name"] for img in data["images"]}
        out: dict[str, list[Corners]] = defaultdict(list)
        for ann in data["annotations"]:
            x, y, w, h = (float(v) for v in ann["bbox"])
            out[names[ann["image_id"]]].append((x, y, x + w, y + h))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{coco}: not a COCO annotation file ({exc}); fix or remove it") from None
    return {k: tuple(v) for k, v in out.items()}


def _part(record: dict[str, str], name: str, multi: list[str]) -> str:
    """The region flagged in a CSV row; ``mixed`` for several (noted in ``multi`` when ``mixed`` is not set)."""
    flags = [reg for reg in FRACATLAS_REGIONS if str(record.get(reg, "0")).strip() == "1"]
    mixed = str(record.get("mixed", "0")).strip() == "1"
    if mixed or len(flags) > 1:
        if len(flags) > 1 and not mixed:
            multi.append(name)
        return "mixed"
    return flags[0] if flags else "unknown"


def _rows(
    by_name: dict[str, tuple[str, int]],
    csv_rows: dict[str, dict[str, str]],
    boxes: dict[str, tuple[Corners, ...]],
    problems: Problems,
) -> list[IndexRow]:
    rows: list[IndexRow] = []
    disagree: list[str] = []
    no_csv: list[str] = []
    multi: list[str] = []
    for name in sorted(by_name):
        rel, label = by_name[name]
        record = csv_rows.get(name)
        part = "unknown"
        if record is None:
            no_csv.append(name)
        else:
            csv_label = int(record.get("fractured", label) or 0)
            if csv_label != label:
                disagree.append(
                    f"{name} (folder {'Fractured' if label else 'Non_fractured'}, CSV fractured={csv_label}"
                    f"{', has a fracture box' if name in boxes else ''})"
                )
            part = _part(record, name, multi)
        stem = name.rsplit(".", 1)[0]
        rows.append(IndexRow(rel, "train", part, stem, stem, label, boxes.get(name, ())))
    problems.add(
        "missing_file",
        "dataset.csv rows whose image is not on disk (left out)",
        sorted(n for n in csv_rows if n not in by_name),
    )
    problems.add(
        "label_disagrees",
        "images whose CSV label disagrees with their folder "
        "(the folder label is used; it agrees with the fracture boxes)",
        disagree,
    )
    problems.add("unlisted_image", "images dataset.csv does not list (part unknown)", no_csv)
    problems.add("multi_region", "images with several region flags but mixed=0 (part mixed)", multi)
    problems.add(
        "box_without_image", "fracture boxes whose image is not on disk", sorted(n for n in boxes if n not in by_name)
    )
    problems.add(
        "fracture_without_box",
        "fractured images with no fracture box (kept for classification)",
        sorted(r.path for r in rows if r.label == 1 and not r.boxes),
    )
    return rows
