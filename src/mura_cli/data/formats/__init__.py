"""Dataset formats: one reader per dataset layout, all with the same contract.

A reader says whether it can read a path (``can_read``), where its dataset is under that path (``locate``:
MURA accepts the folder above ``MURA-v1.1``) and turns it into an :class:`~mura_cli.data.records.Index`
(``read``). :func:`mura_cli.data.index.build_index` asks the readers of :data:`DATASET_READERS` in order and
uses the first that can read. A new layout is a new module here and one more entry in that tuple.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from mura_cli.data.formats.csv_table import CsvReader
from mura_cli.data.formats.fracatlas import FracAtlasReader
from mura_cli.data.formats.mura import MuraReader
from mura_cli.data.records import Index


class DatasetReader(Protocol):
    """The contract of a dataset format."""

    name: str
    """The dataset kind written in the index (``mura``, ``fracatlas``, ``csv``)."""

    def can_read(self, root: Path) -> bool:
        """True when ``root`` holds this layout."""
        ...

    def locate(self, root: Path) -> Path | None:
        """The dataset's own folder or file under ``root`` (``None`` when it cannot read ``root``)."""
        ...

    def read(self, root: Path, *, check_files: bool = True) -> Index:
        """Index the dataset at ``root``; ``check_files`` also checks each file's header and tail (cheap)."""
        ...


DATASET_READERS: tuple[DatasetReader, ...] = (CsvReader(), FracAtlasReader(), MuraReader())
"""The readers :func:`mura_cli.data.index.build_index` tries, in this order."""


def find_reader(root: Path) -> DatasetReader | None:
    """The first reader of :data:`DATASET_READERS` that can read ``root``, else ``None``."""
    return next((r for r in DATASET_READERS if r.can_read(root)), None)


__all__ = ["DATASET_READERS", "CsvReader", "DatasetReader", "FracAtlasReader", "MuraReader", "find_reader"]
