"""What an index is made of: :class:`IndexRow`, :class:`Index`, :class:`Problem`, part names and the MURA path.

Everything here is plain data and pure functions; the dataset formats (:mod:`mura_cli.data.formats`) build
these records and :mod:`mura_cli.data.index` writes and reads them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

MURA_PARTS = ("elbow", "finger", "forearm", "hand", "humerus", "shoulder", "wrist")
FRACATLAS_REGIONS = ("hand", "leg", "hip", "shoulder")
SPLITS = ("train", "tune", "valid")
INDEX_COLUMNS = ("path", "split", "part", "patient", "study", "label", "boxes")
INDEX_FILE = "index.csv"
SUMMARY_FILE = "summary.json"
MAX_EXAMPLES = 5
"""How many examples a :class:`Problem` keeps."""

_MURA_NAMES = re.compile(r"(?:^|/)(XR_[A-Z]+)/(patient\d+)/(study\d+_\w+)(?:/|$)")
_STUDY_SUFFIX = re.compile(r"study\d+_(\w+)")
_FOLDER_LABELS = {"positive": 1, "negative": 0}


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


class Problems:
    """Collects the defects of one indexing pass, in the order they are added.

    Example:
        >>> found = Problems()
        >>> found.add("missing_file", "images listed but not on disk", ["a.png", "b.png"])
        >>> found.add("bad_layout", "files outside the layout", [])  # nothing found: nothing added
        >>> [(p.kind, p.count) for p in found.to_tuple()]
        [('missing_file', 2)]
    """

    def __init__(self) -> None:
        self._found: list[Problem] = []

    def add(self, kind: str, message: str, items: Sequence[str]) -> None:
        """Record ``kind`` with ``len(items)`` occurrences and the first few as examples; no-op when empty."""
        if items:
            self._found.append(Problem(kind, len(items), message, tuple(items[:MAX_EXAMPLES])))

    def note(self, kind: str, message: str) -> None:
        """Record a defect of the dataset as a whole (counted once, no examples), e.g. a missing CSV."""
        self._found.append(Problem(kind, 1, message))

    def extend(self, problems: Sequence[Problem]) -> None:
        self._found.extend(problems)

    def to_tuple(self) -> tuple[Problem, ...]:
        return tuple(self._found)


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


def part_from_name(name: str) -> str | None:
    """``XR_ELBOW``/``elbow``/``Elbow`` -> ``elbow``; unknown names -> ``None``."""
    n = name.strip().lower()
    if n.startswith("xr_"):
        n = n[3:]
    return n or None


class MuraPath(NamedTuple):
    """The MURA folders ``<split>/XR_<PART>/patientNNNNN/studyN_<label>`` of a path (a tuple: one per image).

    Attributes:
        above: the path above ``XR_<PART>`` (``""`` when there is none), without a trailing slash.
        part_dir: ``XR_ELBOW``.
        patient: ``patientNNNNN``.
        study_dir: ``study1_positive``.
        label: the study folder's label: 1 for ``studyN_positive``, 0 for ``studyN_negative``, else ``None``.
    """

    above: str
    part_dir: str
    patient: str
    study_dir: str
    label: int | None

    @property
    def part(self) -> str:
        """Body part, lower case (``elbow``)."""
        return part_from_name(self.part_dir) or self.part_dir


def parse_mura_path(path: str, *, relative: bool = False) -> MuraPath | None:
    """The MURA folders of a forward-slash ``path``, else ``None``.

    The one place that knows how MURA names its folders: the MURA dataset format reads its tree with it and
    input discovery places loose files with it.

    Args:
        path: a file or folder path with forward slashes.
        relative: ``path`` is relative to a MURA-v1.1 folder, ``<split>/<part>/<patient>/<study>/...``: the
            folders are taken by position, whatever their names (the index reports odd ones). Otherwise the
            first ``XR_<PART>/patientNNNNN/studyN_<suffix>`` anywhere in ``path`` is found by name.
    """
    if relative:
        parts = path.split("/", 4)
        if len(parts) < 4:
            return None
        above, part_dir, patient, study_dir = parts[0], parts[1], parts[2], parts[3]
    else:
        m = _MURA_NAMES.search(path)
        if m is None:
            return None
        above = path[: m.start(1)].rstrip("/")
        part_dir, patient, study_dir = m.group(1, 2, 3)
    suffix = _STUDY_SUFFIX.fullmatch(study_dir)
    return MuraPath(above, part_dir, patient, study_dir, _FOLDER_LABELS.get(suffix.group(1)) if suffix else None)
