"""Configs of the inference jobs: ``mura predict``, ``mura localize`` and ``mura benchmark``."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from mura_cli.calibration import parse_operating_point
from mura_cli.errors import UsageError

# The closed sets of values a setting takes; the CLI offers exactly these as choices.
PREDICT_FORMATS = ("csv", "mura", "jsonl")
AGGREGATES = ("mean", "max")
HEATMAP_FORMATS = ("png", "npy")
COMPONENTS = ("largest", "peak")
THRESHOLD_FRAC = 0.2
"""The default CAM box threshold, as a fraction of the map's maximum (localize, benchmark --boxes, ``cam_box``)."""
COMPONENT = COMPONENTS[0]
"""The default region a CAM box is drawn around: the ``largest`` one above the threshold."""
MAX_PIXELS = 100_000_000
"""The default limit on an input's pixels (a decompression bomb is refused before it is decoded)."""
BENCHMARK_SPLITS = ("train", "tune", "valid", "all")


@dataclass(frozen=True)
class InferConfig:
    """What ``mura predict`` and ``mura localize`` share: inputs, model, device and decoding.

    Attributes:
        paths: files, folders (recursive) and globs; PNG/JPEG/BMP/TIFF and DICOM.
        model: run folders, ``org/name`` or ``hf-hub:org/name``; several form an ensemble; empty: ``$MURA_MODEL``,
            else the newest finished run under ``runs_dir``.
        runs_dir: where ``mura train`` leaves its runs.
        part: body part for every input (else the MURA path, then DICOM BodyPartExamined; else unknown, written empty).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        engine: ``torch``, ``torch-bf16``, ``onnx`` (ONNX Runtime, CPU), ``onnx-int8`` or ``auto`` (the default:
            torch-bf16 where :func:`~mura_cli.engine.serving.load.auto_bf16` allows it, else ONNX Runtime on CPU when it
            is installed and the model exports, else torch).
        tta: average each image with its horizontal flip (``None``: as each model's config says).
        batch_size: images per forward pass.
        workers: decoding processes (0 = in the main process).
        max_pixels: per-frame pixel limit (decompression-bomb guard).
        overwrite: replace existing output files.
        hash_ids: replace study ids taken from DICOM (StudyInstanceUID) by a salted hash, so results can leave
            the hospital; needs ``salt``.
        salt: the secret mixed into those hashes (``--salt`` or ``$MURA_SALT``); keep it to link results later.
        dicom_out: also write DICOM results for DICOM inputs into this folder (one folder per study).
        dicom_objects: which: ``sr``, ``pr``, ``sc``, comma-separated (``None``: all that apply).
        send: a DICOMweb server (``dicomweb+http(s)://host/path``) to store the DICOM results on (STOW-RS).
        study: with a DICOMweb source, the Study Instance UIDs to fetch (empty: every study the filters match).
        modality: with a DICOMweb source, modalities to keep, comma-separated (``CR,DX``).
        since: with a DICOMweb source, the first study date (``YYYY-MM-DD`` or ``YYYYMMDD``).
        body_part: with a DICOMweb source, BodyPartExamined values to keep, comma-separated.
    """

    paths: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    runs_dir: str = "runs"
    part: str | None = None
    device: str = "auto"
    engine: str = "auto"
    tta: bool | None = None
    batch_size: int = 16
    workers: int = 2
    max_pixels: int = MAX_PIXELS
    overwrite: bool = False
    hash_ids: bool = False
    salt: str | None = None
    dicom_out: str | None = None
    dicom_objects: str | None = None
    send: str | None = None
    study: tuple[str, ...] = ()
    modality: str | None = None
    since: str | None = None
    body_part: str | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 0 or self.max_pixels < 1:
            raise UsageError("--batch-size and --max-pixels must be at least 1, --workers at least 0")
        if self.hash_ids and not self.salt:
            raise UsageError("--hash-ids needs a secret salt: pass --salt TEXT or set MURA_SALT")
        if self.hash_ids and (self.dicom_out or self.send):
            raise UsageError(
                "--hash-ids cannot be used with --dicom-out/--send: DICOM results must carry the real study and "
                "instance UIDs to join the patient's study; run them separately"
            )
        if self.since and not re.fullmatch(r"\d{4}-?\d{2}-?\d{2}", self.since):
            raise UsageError(f"--since {self.since}: expected a date, YYYY-MM-DD")
        if self.send and not self.dicom_out:
            raise UsageError("--send needs --dicom-out DIR: the objects are written there first and kept")


@dataclass(frozen=True)
class PredictConfig(InferConfig):
    """``mura predict``: screening by study.

    Attributes:
        out: the study-level CSV (``-``: standard output).
        images: also write one row per image here.
        fmt: ``csv``, ``mura`` (headerless ``Study,Model`` rows for the official MURA scorer) or ``jsonl`` (one
            JSON object per image, with its study's probability and label).
        per_image: every image is its own study.
        aggregate: study probability from its images: ``mean`` (paper) or ``max``.
        threshold: abnormal threshold for every study (default: the threshold of the model that scored it), or
            an operating point the model stores (``sens:0.9``, ``spec:0.9``: chosen out of fold by ``--folds``).
        resume: continue a killed run from the journal it left beside ``out`` (``<out>.partial.jsonl``).
    """

    out: str = "results.csv"
    images: str | None = None
    fmt: str = "csv"
    per_image: bool = False
    aggregate: str = "mean"
    threshold: float | str | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fmt not in PREDICT_FORMATS:
            raise UsageError(f"--format {self.fmt}: expected one of {', '.join(PREDICT_FORMATS)}")
        if self.aggregate not in AGGREGATES:
            raise UsageError(f"--aggregate {self.aggregate}: expected one of {', '.join(AGGREGATES)}")
        if self.out == "-" and (self.images == "-" or self.resume):
            raise UsageError(
                "--out -: standard output takes one table and keeps no journal; drop --images - or --resume"
            )
        if isinstance(self.threshold, str):
            with contextlib.suppress(ValueError):  # the command line gives text: a number, or an operating point
                object.__setattr__(self, "threshold", float(self.threshold))
        if isinstance(self.threshold, str):
            try:
                parse_operating_point(self.threshold)
            except ValueError as exc:
                raise UsageError(f"--threshold {exc}, or a number in (0, 1)") from None
        elif self.threshold is not None and not 0 < self.threshold < 1:
            raise UsageError(f"--threshold {self.threshold}: must be in (0, 1)")


@dataclass(frozen=True)
class LocalizeConfig(InferConfig):
    """``mura localize``: class activation map boxes per image.

    Attributes:
        out: boxes as JSON (or CSV by suffix; ``-``: JSON on standard output).
        overlay: write a heatmap-and-box PNG per image.
        overlay_dir: folder for overlays and heatmaps.
        heatmap: also write the raw map per image: ``png`` (16-bit) or ``npy``.
        threshold_frac: box threshold as a fraction of the map's maximum (20% by default).
        component: which connected region above it is boxed: ``largest`` (default) or ``peak`` (the one holding
            the map's maximum).
    """

    out: str = "boxes.json"
    overlay: bool = False
    overlay_dir: str = "overlays"
    heatmap: str | None = None
    threshold_frac: float = THRESHOLD_FRAC
    component: str = COMPONENT

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_threshold_frac(self.threshold_frac)
        _check_component(self.component)
        if self.heatmap is not None and self.heatmap not in HEATMAP_FORMATS:
            raise UsageError(f"--heatmap {self.heatmap}: expected one of {', '.join(HEATMAP_FORMATS)}")


@dataclass(frozen=True)
class BenchmarkConfig:
    """``mura benchmark``: accuracy beside the published numbers, CAM boxes against ground truth, and speed.

    Attributes:
        data: a dataset root or ``mura prepare`` folder, or a ``dicomweb+http(s)://`` PACS (with ``labels``);
            empty: no accuracy part (``--speed`` only), or, with no model either, the built-in demo set.
        labels: with a DICOMweb ``data``, a CSV of the studies to score: ``study`` (Study Instance UID) and
            ``label`` (1 abnormal, 0 normal), optionally ``part``.
        model: run folders or Hub repos (as for predict); empty: ``$MURA_MODEL``, else the newest run.
        runs_dir: where ``mura train`` leaves its runs.
        split: ``train``, ``tune``, ``valid`` or ``all``; ``None``: valid when the index has it, else tune.
        part: score one body part only.
        out: report folder (report.json, report.md, plots, index.html).
        boxes: score CAM boxes against the index's ground-truth boxes.
        threshold_frac: CAM box threshold as a fraction of the map's maximum.
        component: which region above it is boxed: ``largest`` or ``peak``.
        threshold: abnormal threshold for every image (default: the model's).
        speed: also measure images per second and milliseconds per stage.
        archs: with ``speed``, time these architectures with random weights instead of the model.
        size: input size for ``archs`` (default: the arch's pretrained size).
        batch_size: images per forward pass.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        engine: ``torch``, ``torch-bf16``, ``onnx``, ``onnx-int8`` or ``auto`` (as for predict).
        tta: average each image with its horizontal flip (``None``: as each model's config says).
        workers: decoding processes.
        resamples: bootstrap resamples (by study) for the 95% confidence intervals.
        seed: bootstrap seed.
        overwrite: replace an existing report folder.
    """

    data: str = ""
    labels: str | None = None
    model: tuple[str, ...] = InferConfig.model  # the fields it shares with predict take predict's defaults
    runs_dir: str = InferConfig.runs_dir
    split: str | None = None
    part: str | None = InferConfig.part
    out: str = "benchmark"
    boxes: bool = False
    threshold_frac: float = THRESHOLD_FRAC
    component: str = COMPONENT
    threshold: float | None = None
    speed: bool = False
    archs: tuple[str, ...] = ()
    size: int | None = None
    batch_size: int = InferConfig.batch_size
    device: str = InferConfig.device
    engine: str = InferConfig.engine
    tta: bool | None = InferConfig.tta
    workers: int = InferConfig.workers
    resamples: int = 2000
    seed: int = 0
    overwrite: bool = InferConfig.overwrite

    def __post_init__(self) -> None:
        if self.split is not None and self.split not in BENCHMARK_SPLITS:
            raise UsageError(f"--split {self.split}: expected one of {', '.join(BENCHMARK_SPLITS)}")
        if self.resamples < 0 or self.batch_size < 1 or self.workers < 0:
            raise UsageError("--resamples and --workers must be >= 0, --batch-size >= 1")
        _check_threshold_frac(self.threshold_frac)
        if self.size is not None and self.size < 16:
            raise UsageError(f"--size {self.size}: must be at least 16 pixels")
        _check_component(self.component)


def _check_threshold_frac(frac: float) -> None:
    if not 0 < frac < 1:
        raise UsageError(f"--threshold-frac {frac}: must be in (0, 1)")


def _check_component(component: str) -> None:
    if component not in COMPONENTS:
        raise UsageError(f"--component {component}: expected 'largest' or 'peak'")


DEMO_WEIGHTS = ("none", "default")
"""What ``mura demo`` trains from: random init (the reference figures), or ImageNet weights from the Hub."""


@dataclass(frozen=True)
class DemoConfig:
    """``mura demo``: the whole job on a built-in synthetic set (generate, prepare, train, predict, localize,
    benchmark). The defaults were chosen to finish in about 2 minutes on 2 CPU cores and still learn.

    Attributes:
        out: folder for everything the demo writes (data, index, run, results, overlays, report).
        arch: backbone to train.
        weights: ``none`` (random init: deterministic, the figures shipped as the reference) or ``default``
            (ImageNet weights from the Hub when it is reachable, else random init).
        output_stride: its output stride (16: a 6x6 class activation map at 96 px instead of 3x3).
        size: input size in pixels.
        epochs: training epochs.
        batch_size: images per step.
        lr: learning rate (Adam).
        studies_per_part: synthetic studies per body part (train and valid together).
        image_size: longer side of the synthetic radiographs in pixels (drawn; the network sees ``size``).
        threads: torch threads while training, fixed so that the figures do not depend on the core count.
        seed: seed of the data and the training.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        overwrite: replace results of an earlier demo in ``out`` (the data and index are reused).
    """

    out: str = "mura-demo"
    arch: str = "resnet18"
    weights: str = "none"
    output_stride: int | None = 16
    size: int = 96
    epochs: int = 4
    batch_size: int = 32
    lr: float = 1e-3
    studies_per_part: int = 100
    image_size: int = 320
    threads: int = 2
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.size < 32 or self.studies_per_part < 10:
            raise UsageError("--epochs and --batch-size >= 1, --size >= 32, --studies-per-part >= 10")
        if self.weights not in DEMO_WEIGHTS:
            raise UsageError(f"--weights {self.weights}: expected none or default")
