"""Dataset indexing, the front door: any supported dataset to one table of image rows, split, written, read back.

An index is a list of :class:`IndexRow` (one per image) plus the problems found while building it. It is
written as ``index.csv`` (paths relative to the dataset root) and ``summary.json``; every later command
reads it back with :func:`load_index`.

The layouts (MURA-v1.1, FracAtlas, a labelled CSV) are read by the readers of :mod:`mura_cli.data.formats`;
the records live in :mod:`mura_cli.data.records` and are re-exported here.
"""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from mura_cli.config import FOLD_SCHEMES
from mura_cli.data.formats import DatasetReader, find_reader
from mura_cli.data.records import FRACATLAS_REGIONS as FRACATLAS_REGIONS
from mura_cli.data.records import INDEX_COLUMNS as INDEX_COLUMNS
from mura_cli.data.records import INDEX_FILE as INDEX_FILE
from mura_cli.data.records import MURA_PARTS as MURA_PARTS
from mura_cli.data.records import SPLITS as SPLITS
from mura_cli.data.records import SUMMARY_FILE as SUMMARY_FILE
from mura_cli.data.records import Index as Index
from mura_cli.data.records import IndexRow as IndexRow
from mura_cli.data.records import Problem as Problem
from mura_cli.data.records import part_from_name as part_from_name
from mura_cli.errors import DataError, UsageError
from mura_cli.utils import atomic_path, plural, write_json

# ============================================================================================ building


def find_dataset(root: str | Path) -> tuple[str, Path]:
    """Say what ``root`` holds: ``("mura", mura_dir)``, ``("fracatlas", dir)`` or ``("csv", file)``.

    Raises:
        DataError: when ``root`` is none of those.
    """
    reader, where = _reader_for(root)
    return reader.name, where


def _reader_for(root: str | Path) -> tuple[DatasetReader, Path]:
    """The first dataset reader that can read ``root``, and where its dataset is (see :func:`find_dataset`)."""
    p = Path(root).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or folder; pass a MURA-v1.1 folder, its parent, FracAtlas or a CSV")
    reader = find_reader(p)
    where = reader.locate(p) if reader else None
    if reader is None or where is None:
        if p.is_file():
            raise DataError(f"{p}: expected a dataset folder or a labelled CSV (path,label[,part,study,patient])")
        raise DataError(
            f"{p}: not a dataset layout mura knows; expected MURA-v1.1/<split>/XR_<PART>/patient*/study*_*/, "
            "FracAtlas (images/Fractured, dataset.csv) or a CSV file with columns path,label[,part,study,patient]"
        )
    return reader, where


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

    Example:
        >>> index = build_index("MURA-v1.1", tune_fraction=0.1)  # doctest: +SKIP
        >>> index.select(split="tune", part="elbow")  # doctest: +SKIP
    """
    reader, where = _reader_for(root)
    index = reader.read(where, check_files=check_files)
    rows = split_by_patient(index.rows, tune_fraction=tune_fraction, seed=seed)
    if not rows:
        raise DataError(f"{where}: no images found; check the folder layout (see `mura prepare --help`)")
    meta = dict(index.meta, tune_fraction=tune_fraction, seed=seed)
    return replace(index, rows=tuple(rows), meta=meta)


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
    strata = _patient_strata(r for r in rows if r.split == "train")
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


def _patient_strata(rows: Iterable[IndexRow]) -> dict[tuple[str, int], list[str]]:
    """Patients by stratum: their most frequent part and whether any of their studies is abnormal (sorted)."""
    by_patient: dict[str, list[IndexRow]] = defaultdict(list)
    for r in rows:
        by_patient[r.patient].append(r)
    strata: dict[tuple[str, int], list[str]] = defaultdict(list)
    for patient, prs in sorted(by_patient.items()):
        part = Counter(r.part for r in prs).most_common(1)[0][0]
        strata[(part, max(r.label for r in prs))].append(patient)
    return strata


def patient_folds(rows: Sequence[IndexRow], k: int, seed: int = 0, scheme: str = "random") -> dict[str, int]:
    """Assign each patient of ``rows`` to one of ``k`` folds (1..k), stratified by (part, label); seeded.

    ``scheme`` (:data:`~mura_cli.config.FOLD_SCHEMES`): ``random`` (stratified), ``later`` (fold ``k`` is the last
    block of each stratum's patients in patient-number order, a proxy for a later intake), ``region`` (one fold
    per body part or region: leave-one-region-out, for data without patient ids such as FracAtlas).

    Every study and image of a patient lands in the same fold, so a fold's model never saw its held-out
    patients. Within each stratum patients are shuffled and dealt round-robin, continuing where the previous
    stratum stopped, so fold sizes differ by at most one patient per stratum. ``later`` first puts the last
    ``1/k`` of every stratum's patients, ordered by the number in their id, in fold ``k`` and deals the rest to
    folds ``1..k-1``; ``region`` makes fold ``i`` the ``i``-th part (sorted), so ``k`` must equal the number of
    parts.
    """
    if k < 2:
        raise DataError(f"--folds {k}: needs at least 2 folds")
    if scheme not in FOLD_SCHEMES:
        raise DataError(f"--folds-by {scheme}: expected one of {', '.join(FOLD_SCHEMES)}")
    strata = _patient_strata(rows)
    if sum(len(p) for p in strata.values()) < k:
        raise DataError(f"--folds {k}: only {plural(sum(len(p) for p in strata.values()), 'patient')} to split")
    if scheme == "region":
        return _region_folds(strata, k)
    out: dict[str, int] = {}
    if scheme == "later":
        for key in sorted(strata):
            ordered = sorted(strata[key], key=_patient_number)
            n_late = round(len(ordered) / k)
            out.update((p, k) for p in ordered[len(ordered) - n_late :])
            strata[key] = [p for p in strata[key] if p not in out]
        k -= 1
    rng = np.random.default_rng(seed)
    dealt = 0
    for key in sorted(strata):
        patients = strata[key]
        for i in rng.permutation(len(patients)):
            out[patients[i]] = dealt % k + 1
            dealt += 1
    return out


def _region_folds(strata: dict[tuple[str, int], list[str]], k: int) -> dict[str, int]:
    parts = sorted({part for part, _ in strata})
    if len(parts) != k:
        n = len(parts)
        raise DataError(f"--folds-by region: the data has {n} parts ({', '.join(parts)}); pass --folds {n}")
    return {p: parts.index(part) + 1 for (part, _), patients in strata.items() for p in patients}


def _patient_number(patient: str) -> tuple[int, str]:
    """``patient01234`` -> ``(1234, patient01234)``: the order of intake where ids are numbered."""
    digits = "".join(c for c in patient if c.isdigit())
    return (int(digits) if digits else -1, patient)


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
        with atomic_path(index_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=INDEX_COLUMNS, lineterminator="\n")
            w.writeheader()
            for r in index.rows:
                w.writerow(r.to_row())
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
        write_json(summary_path, summary)
    except OSError as exc:
        raise DataError(
            f"{out}: cannot write the index there ({exc.strerror}); choose another folder with --out"
        ) from None
    return index_path, summary_path


def _box(values: Sequence[float]) -> tuple[float, float, float, float]:
    """One stored box as ``(x0, y0, x1, y1)``; anything but four numbers is a ValueError (a damaged index)."""
    x0, y0, x1, y1 = (float(v) for v in values)
    return x0, y0, x1, y1


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
                boxes = tuple(_box(b) for b in json.loads(rec["boxes"])) if rec.get("boxes") else ()
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


def default_data(cwd: Path | None = None) -> Path:
    """The data ``mura train`` uses when no ``--data`` is given: the one dataset ``mura prepare`` wrote into
    ``./.mura``, else a ``MURA-v1.1`` folder in the working folder (relative paths when ``cwd`` is None).

    Raises:
        UsageError: several datasets are prepared here (which one is meant), or none is and no ``MURA-v1.1``.
    """
    here = Path() if cwd is None else cwd
    prepared = sorted(p.parent for p in here.glob(f".mura/*/{INDEX_FILE}"))
    if len(prepared) == 1:
        return prepared[0]
    if prepared:
        names = ", ".join(str(p) for p in prepared)
        raise UsageError(
            f"no --data given and {len(prepared)} datasets are prepared here ({names}); pass --data with one"
        )
    if (here / "MURA-v1.1").is_dir():
        return here / "MURA-v1.1"
    raise UsageError(
        "no --data given and no dataset here: pass --data with a MURA-v1.1 folder, or run "
        "`mura prepare MURA-v1.1` first and train in the same folder without --data"
    )


def _built_from(index_dir: Path, where: Path) -> bool:
    """True when the index in ``index_dir`` was built from the dataset at ``where`` (its summary's ``root``)."""
    try:
        root = json.loads((index_dir / SUMMARY_FILE).read_text()).get("root")
    except (OSError, ValueError, AttributeError):
        return False
    expected = where.parent if where.is_file() else where
    return bool(root) and Path(root).resolve() == expected.resolve()
