"""The built-in demo data: a synthetic radiograph set in the MURA-v1.1 layout, and one real DICOM sample.

:func:`generate_demo_set` draws a small MURA-shaped dataset (``MURA-v1.1/{train,valid}/XR_<PART>/patientNNNNN/
studyN_{positive,negative}/imageN.png`` with the four official headerless CSVs) from a seed, with no data and no
network: procedural radiographs of a few body parts (:mod:`mura_cli.data.phantom`), where every image of an
abnormal study shows its lesion (metal hardware or a displaced fracture) and the lesion's ground-truth boxes are
written to ``boxes.csv``, the optional file the MURA reader attaches to the index (so CAM boxes can be scored).
Some images are DICOM (``.dcm``, 12- or 16-bit, MONOCHROME2 or inverted MONOCHROME1) so the demo goes through
the DICOM reader too. The same arguments give the same bytes.

:func:`sample_dicom` is a real computed radiograph shipped with the package: the RG3 image (AP distal tibia, a
non-ossifying fibroma) of the public NEMA DICOM WG04 compression test set, JPEG 2000 lossless, 1760x1760,
MONOCHROME1, as redistributed in pylibjpeg-data (https://github.com/pydicom/pylibjpeg-data, ``RG3_J2KR.dcm``)
under the MIT License, Copyright (c) 2020 scaramallion; the license text is in ``data/samples/NOTICE.txt``.
"""

from __future__ import annotations

import csv
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mura_cli.data.anatomy import PHANTOM_PARTS
from mura_cli.data.phantom import LESION_KINDS, Box, Lesion, render_view
from mura_cli.errors import DataError

log = logging.getLogger("mura_cli.data.demo")

DEMO_PARTS = tuple(f"XR_{p.upper()}" for p in PHANTOM_PARTS)
"""The body parts the demo can draw: ``XR_HUMERUS``, ``XR_FOREARM``, ``XR_HAND``."""
DEMO_MANIFEST = "demo.json"
DEMO_VERSION = 1
"""Bumped whenever the drawn pictures change, so a cached demo set is redrawn."""
BOXES_FILE = "boxes.csv"
SAMPLE_DICOM = "CR_extremity_tibia_RG3_j2k_lossless.dcm"
_MURA = "MURA-v1.1"
_DICOM_KINDS = (("MONOCHROME2", 16), ("MONOCHROME1", 12), ("MONOCHROME2", 12), ("MONOCHROME1", 16))
"""(photometric interpretation, bits stored) of the DICOM images, drawn at random for each."""


@dataclass(frozen=True)
class _Study:
    split: str
    part: str  # XR_HUMERUS
    patient: int
    number: int
    lesion: Lesion | None
    young: bool
    views: tuple[str, ...]  # per image: "png" or a DICOM kind "MONOCHROME2/16"

    @property
    def folder(self) -> str:
        label = "positive" if self.lesion else "negative"
        return f"{self.split}/{self.part}/patient{self.patient:05d}/study{self.number}_{label}"


def generate_demo_set(
    root: str | Path,
    *,
    studies_per_part: int = 100,
    valid_fraction: float = 0.3,
    parts: Sequence[str] = DEMO_PARTS,
    seed: int = 0,
    size: int = 320,
    dicom_fraction: float = 0.15,
    workers: int | None = None,
) -> Path:
    """Write a synthetic MURA-v1.1 dataset under ``root`` (or reuse the one already there) and return its folder.

    Half the studies of each part and split are abnormal; each study has 1-3 views; a patient has one or two
    studies. Generation is deterministic: the same arguments give byte-identical files.

    Args:
        root: the folder to write ``MURA-v1.1/`` into.
        studies_per_part: studies per body part, train and valid together.
        valid_fraction: share of each part's studies in the valid split (the rest is train).
        parts: body parts, from :data:`DEMO_PARTS` (``XR_HAND`` or ``hand``).
        seed: seed of every random choice.
        size: image height in pixels; widths vary from 0.7 to 1 times it.
        dicom_fraction: share of the images written as DICOM instead of PNG.
        workers: processes that draw the images (``None``: one per CPU, at most 4); the files do not depend on
            it. They are started with ``spawn``: in a script, call this under ``if __name__ == "__main__":``.

    Returns:
        ``root/MURA-v1.1``, which holds the images, the four official CSVs, ``boxes.csv`` and ``demo.json``.

    Raises:
        DataError: bad arguments, or ``root/MURA-v1.1`` exists and is not this same demo set.

    Example:
        >>> mura_dir = generate_demo_set("demo-data")  # doctest: +SKIP
        >>> build_index(mura_dir).select(split="valid")  # doctest: +SKIP
    """
    params = _check_params(studies_per_part, valid_fraction, parts, seed, size, dicom_fraction)
    target = Path(root).expanduser() / _MURA
    manifest = {"generator": "mura_cli.data.demo", "version": DEMO_VERSION, "params": params}
    if target.exists():
        if _manifest(target) == manifest:
            return target
        raise DataError(
            f"{target}: exists and is not this demo set (other settings, or not a demo); "
            "remove it or choose another folder"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{_MURA}.partial-{os.getpid()}"  # written aside, then renamed: never half a set
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        studies = _plan(params)
        _write_set(tmp, studies, params, workers or min(4, os.cpu_count() or 1))
        (tmp / DEMO_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if target.exists() and _manifest(target) == manifest:  # another process wrote the same set meanwhile
            return target
        raise
    return target


def _check_params(
    studies_per_part: int, valid_fraction: float, parts: Sequence[str], seed: int, size: int, dicom_fraction: float
) -> dict:
    names = []
    for p in parts:
        name = p.upper() if p.upper().startswith("XR_") else f"XR_{p.upper()}"
        if name not in DEMO_PARTS:
            raise DataError(f"demo part {p!r}: not one the demo draws; choose from {', '.join(DEMO_PARTS)}")
        names.append(name)
    if not names or len(set(names)) != len(names):
        raise DataError(f"demo parts {list(parts)}: give one or more distinct parts of {', '.join(DEMO_PARTS)}")
    if studies_per_part < 4:
        raise DataError(f"studies_per_part={studies_per_part}: need at least 4 (normal and abnormal in each split)")
    if not 0.0 < valid_fraction < 1.0:
        raise DataError(f"valid_fraction={valid_fraction}: must be between 0 and 1")
    if not 64 <= size <= 2048:
        raise DataError(f"size={size}: choose an image height between 64 and 2048 pixels")
    if not 0.0 <= dicom_fraction <= 1.0:
        raise DataError(f"dicom_fraction={dicom_fraction}: must be between 0 and 1")
    return {
        "studies_per_part": int(studies_per_part),
        "valid_fraction": float(valid_fraction),
        "parts": names,
        "seed": int(seed),
        "size": int(size),
        "dicom_fraction": float(dicom_fraction),
    }


def _manifest(target: Path) -> dict | None:
    try:
        return json.loads((target / DEMO_MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _plan(params: dict) -> list[_Study]:
    """Every study of the set: split, part, patient, label, lesion, views and their file formats."""
    rng = np.random.default_rng([params["seed"], 0])
    n_valid = max(2, round(params["studies_per_part"] * params["valid_fraction"]))
    n_train = max(2, params["studies_per_part"] - n_valid)
    studies: list[_Study] = []
    patient = 0
    for split, n in (("train", n_train), ("valid", n_valid)):
        for part in params["parts"]:
            labels = rng.permutation(np.arange(n) < n // 2)
            number = 0
            for abnormal in labels:
                if number == 0 or number == 2 or rng.random() < 0.8:  # a new patient, or this one's second study
                    patient, number, young = patient + 1, 0, bool(rng.random() < 0.2)
                number += 1
                kind, site, t, every = rng.choice(LESION_KINDS), rng.integers(8), rng.uniform(0.28, 0.72), rng.random()
                lesion = Lesion(str(kind), int(site), float(t), every_bone=bool(every < 0.6)) if abnormal else None
                views = []
                for _ in range(int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))):
                    dicom = rng.random() < params["dicom_fraction"]
                    kind_index = int(rng.integers(len(_DICOM_KINDS)))
                    photometric, bits = _DICOM_KINDS[kind_index]
                    views.append(f"{photometric}/{bits}" if dicom else "png")
                studies.append(_Study(split, part, patient, number, lesion, young, tuple(views)))
    return studies


def _write_set(mura: Path, studies: list[_Study], params: dict, workers: int) -> None:
    """Draw and write every image (in ``workers`` processes), then the official CSVs and ``boxes.csv``."""
    written: list[list[tuple[str, list[Box]]]] | None = None
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    spawnable = not main_file or os.path.exists(main_file)  # `python -` cannot re-import its main in a child
    if workers > 1 and len(studies) >= 4 * workers and spawnable:
        try:
            context = multiprocessing.get_context("spawn")  # never fork a process that may hold torch threads
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                jobs = [pool.submit(_write_studies, mura, studies, params, i, workers) for i in range(workers)]
                parts = [job.result() for job in jobs]
            written = [parts[i % workers][i // workers] for i in range(len(studies))]
        except (OSError, BrokenProcessPool) as exc:  # no semaphores or processes here: draw them in this one
            log.info("demo set: drawing in one process (%s)", exc)
    if written is None:
        written = _write_studies(mura, studies, params, 0, 1)
    image_rows: dict[str, list[str]] = {"train": [], "valid": []}
    study_rows: dict[str, list[str]] = {"train": [], "valid": []}
    box_rows: list[tuple[str, Box]] = []
    for study, images in zip(studies, written, strict=True):
        for rel, boxes in images:
            image_rows[study.split].append(rel)
            box_rows += [(rel, b) for b in boxes]
        study_rows[study.split].append(f"{_MURA}/{study.folder}/,{1 if study.lesion else 0}")
    for split in ("train", "valid"):
        (mura / f"{split}_image_paths.csv").write_text("".join(f"{r}\n" for r in image_rows[split]))
        (mura / f"{split}_labeled_studies.csv").write_text("".join(f"{r}\n" for r in study_rows[split]))
    with open(mura / BOXES_FILE, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "x0", "y0", "x1", "y1"])
        w.writerows([rel, *box] for rel, box in box_rows)


def _write_studies(
    mura: Path, studies: list[_Study], params: dict, first: int, step: int
) -> list[list[tuple[str, list[Box]]]]:
    """Draw and write studies ``first, first + step, ...``; for each, its images' CSV paths and boxes.

    Every view has its own generator, seeded by (seed, study, view): the pictures do not depend on the order
    or the process they are drawn in.
    """
    out = []
    for index in range(first, len(studies), step):
        study, images = studies[index], []
        folder = mura / study.folder
        folder.mkdir(parents=True, exist_ok=True)
        for view, fmt in enumerate(study.views, start=1):
            rng = np.random.default_rng([params["seed"], 1, index, view])
            part = study.part[3:].lower()
            height = params["size"]
            width = round(height * (rng.uniform(0.8, 1.0) if part == "hand" else rng.uniform(0.7, 0.9)))
            pixels, boxes = render_view(rng, part, height=height, width=width, lesion=study.lesion, young=study.young)
            name = f"image{view}.png" if fmt == "png" else f"image{view}.dcm"
            if fmt == "png":
                _write_png(folder / name, pixels)
            else:
                photometric, bits = fmt.split("/")
                _write_dicom(
                    folder / name, pixels, study, view, seed=params["seed"], photometric=photometric, bits=int(bits)
                )
            images.append((f"{_MURA}/{study.folder}/{name}", boxes))
        out.append(images)
    return out


def _write_png(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(np.round(pixels * 255.0).astype(np.uint8)).save(path, compress_level=1)  # 2-D uint8: mode L


def _write_dicom(
    path: Path, pixels: np.ndarray, study: _Study, view: int, *, seed: int, photometric: str, bits: int
) -> None:
    """A CR image without patient identifiers; its window maps the stored range back to ``pixels`` exactly.

    Stored values span ``[low, low + span]`` (MONOCHROME1 inverted: low values white); the LINEAR window with
    center ``low + span / 2 + 0.5`` and width ``span + 1`` maps ``low`` to 0 and ``low + span`` to 1.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ComputedRadiographyImageStorage, ExplicitVRLittleEndian, generate_uid

    low, span = (0, 4095) if bits == 12 else (1000, 60000)
    shown = pixels if photometric == "MONOCHROME2" else 1.0 - pixels
    stored = (low + np.round(shown.astype(np.float64) * span)).astype(np.uint16)
    key = f"mura-cli demo {seed} {study.folder}"
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[key, str(view)])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[key])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[key, "series"])
    ds.Modality = "CR"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.PatientName = ""  # type 2: present and empty; the images are synthetic
    ds.PatientID = ""
    ds.PatientIdentityRemoved = "YES"
    ds.BodyPartExamined = study.part[3:]
    ds.StudyDescription = f"mura-cli synthetic demo, {study.part}"
    ds.SeriesNumber, ds.InstanceNumber = 1, view
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    ds.WindowCenter = f"{low + span / 2 + 0.5:g}"
    ds.WindowWidth = f"{span + 1:g}"
    ds.BurnedInAnnotation = "NO"
    ds.PixelData = stored.astype("<u2").tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def sample_dicom() -> Path:
    """The real CR radiograph shipped with the package (NEMA WG04 RG3, AP distal tibia, 1760x1760, MONOCHROME1,
    JPEG 2000 lossless; see the module docstring for its origin and license).

    Raises:
        DataError: the installed package lacks the file (a broken install).
    """
    from importlib.resources import files

    resource = files("mura_cli") / "data" / "samples" / SAMPLE_DICOM
    if isinstance(resource, Path) and resource.is_file():
        return resource
    if not resource.is_file():
        raise DataError(f"the sample DICOM {SAMPLE_DICOM} is missing from the installed package; reinstall mura-cli")
    copy = Path(tempfile.gettempdir()) / "mura-cli-samples" / SAMPLE_DICOM  # a zipped install: copy it out once
    if not copy.is_file():
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(resource.read_bytes())
    return copy
