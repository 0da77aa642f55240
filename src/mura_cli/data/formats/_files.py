"""File helpers the dataset formats share: a fast recursive scan and a headerless CSV reader."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path


def scan_files(top: Path, suffixes: Iterable[str]) -> list[str]:
    """All files under ``top`` with one of ``suffixes``, as sorted paths relative to ``top`` (os.scandir, no stat).

    Hidden files and folders are skipped; a folder that cannot be listed is passed over.
    """
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


def read_csv_rows(path: Path) -> list[list[str]]:
    """The non-blank rows of a CSV file (a UTF-8 byte-order mark is dropped), header included if any."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
