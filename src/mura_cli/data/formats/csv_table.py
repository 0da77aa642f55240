"""A generic labelled CSV: ``path,label[,part,study,patient[,split]]``, with or without a header.

Paths are relative to the CSV's folder (absolute paths inside it are accepted); a study defaults to the image's
folder and a patient to its study.
"""

from __future__ import annotations

from pathlib import Path

from mura_cli.data.checks import check_image_files
from mura_cli.data.formats._files import read_csv_rows
from mura_cli.data.records import SPLITS, Index, IndexRow, Problems, part_from_name
from mura_cli.errors import DataError

DEFAULT_COLUMNS = ("path", "label", "part", "study", "patient", "split")
_VALID_NAMES = ("valid", "val", "test", "validation")


class CsvReader:
    """Reads a labelled CSV file."""

    name = "csv"

    def locate(self, root: Path) -> Path | None:
        """``root`` when it is a ``.csv`` file."""
        return root if root.is_file() and root.suffix.lower() == ".csv" else None

    def can_read(self, root: Path) -> bool:
        return self.locate(root) is not None

    def read(self, root: Path, *, check_files: bool = True) -> Index:
        """Index the images a CSV lists; rows without a path, a 0/1 label or a file are reported and left out."""
        rows_in = read_csv_rows(root)
        if not rows_in:
            raise DataError(f"{root}: the CSV is empty; expected rows path,label[,part,study,patient]")
        columns = list(DEFAULT_COLUMNS)
        first = [c.strip().lower() for c in rows_in[0]]
        has_header = "path" in first and "label" in first
        if has_header:
            columns = first
            rows_in = rows_in[1:]
        folder = root.parent
        rows: list[IndexRow] = []
        bad: list[str] = []
        missing: list[str] = []
        for n, raw in enumerate(rows_in, start=2 if has_header else 1):
            rec = dict(zip(columns, (c.strip() for c in raw), strict=False))
            path, label = rec.get("path", ""), rec.get("label", "")
            if not path or label not in ("0", "1"):
                bad.append(f"line {n}: {','.join(raw)}")
                continue
            p = Path(path)
            rel = p.relative_to(folder).as_posix() if p.is_absolute() and p.is_relative_to(folder) else path
            if not (folder / rel).is_file():
                missing.append(rel)
                continue
            rows.append(_row(rel, int(label), rec))
        problems = Problems()
        problems.add("bad_csv_row", "rows without a path or a 0/1 label (left out)", bad)
        problems.add("missing_file", "CSV rows whose image is not on disk (left out)", missing)
        if check_files:
            problems.extend(check_image_files(folder, (r.path for r in rows)))
        return Index(
            root=folder, kind=self.name, rows=tuple(rows), problems=problems.to_tuple(), meta={"csv": root.name}
        )


def _row(rel: str, label: int, rec: dict[str, str]) -> IndexRow:
    """One image row from a CSV record; unknown splits become ``train``, ``val``/``test`` become ``valid``."""
    study = rec.get("study") or str(Path(rel).parent.as_posix()) or rel
    patient = rec.get("patient") or study
    split = (rec.get("split", "train") or "train").lower()
    split = "valid" if split in _VALID_NAMES else split
    part = part_from_name(rec.get("part") or "") or "unknown"
    return IndexRow(
        path=rel, split=split if split in SPLITS else "train", part=part, patient=patient, study=study, label=label
    )
