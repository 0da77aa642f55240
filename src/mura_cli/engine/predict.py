"""Batch inference over files and folders: image probabilities, study grouping, class activation maps.

:func:`predict` is a generator of :class:`ImagePrediction`: files are decoded by loader workers while the
model works on the previous batch, and memory does not grow with the number of inputs. Studies are formed
afterwards by :func:`group_studies`.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mura_cli.cam import Box, cam_box, cam_peak, cam_to_original
from mura_cli.config import TransformConfig, from_dict
from mura_cli.data.index import part_from_name
from mura_cli.data.readers import RASTER_SUFFIXES, is_dicom, read_images
from mura_cli.data.transforms import build_transforms, eval_geometry
from mura_cli.engine.evaluate import autocast_for
from mura_cli.errors import DataError, ModelError, MuraError, UsageError
from mura_cli.metrics import aggregate_by_study

log = logging.getLogger(__name__)
_MURA_STUDY = re.compile(r"(?:^|/)(XR_[A-Z]+)/(patient\d+)/(study\d+_(?:positive|negative|\w+))(?:/|$)")


# ============================================================================================ models


@dataclass
class LoadedModel:
    """One model ready for inference: the network, its config and its eval transform."""

    name: str
    model: torch.nn.Module
    config: dict[str, Any]
    transform: TransformConfig

    @property
    def threshold(self) -> float:
        return float(self.config.get("threshold", 0.5))

    @property
    def part(self) -> str:
        return str(self.config.get("part", "all"))

    @property
    def parts(self) -> tuple[str, ...]:
        """The body parts the model saw in training."""
        return tuple(self.config.get("parts") or [self.part])

    @property
    def short_name(self) -> str:
        return Path(self.name).name if Path(self.name).exists() else self.name


MODEL_ENV = "MURA_MODEL"
"""Environment variable naming the model to use when ``--model`` is not given."""


@dataclass(frozen=True)
class ModelChoice:
    """Which model specs predict/localize use, and why (shown to the user)."""

    specs: tuple[str, ...]
    reason: str


def resolve_model_specs(
    specs: Sequence[str], env: Mapping[str, str] | None = None, runs_dir: str | Path = "runs"
) -> ModelChoice:
    """Pick the model: ``--model`` specs, else ``$MURA_MODEL``, else the newest complete run under ``runs_dir``.

    A complete run is a folder that ``mura train`` finished (``config.json``, ``model.safetensors`` and
    ``summary.json``), the newest by the time its summary was written.

    Raises:
        ModelError: none of the three gives a model; the message says how to get one.
    """
    from mura_cli.models.hub import CONFIG_NAME, WEIGHTS_NAME

    if specs:
        return ModelChoice(tuple(specs), "--model")
    value = (os.environ if env is None else env).get(MODEL_ENV, "").strip()
    if value:
        return ModelChoice((value,), f"from ${MODEL_ENV}")
    root = Path(runs_dir)
    done = [
        d
        for d in (root.iterdir() if root.is_dir() else [])
        if all((d / f).is_file() for f in (CONFIG_NAME, WEIGHTS_NAME, "summary.json"))
    ]
    if done:
        newest = max(done, key=lambda d: ((d / "summary.json").stat().st_mtime, d.name))
        return ModelChoice((str(newest),), f"newest complete run under {root}/")
    raise ModelError(
        f"no model given and no finished run under {root}/; pass --model RUN_FOLDER (or org/name on the Hub), "
        f"set {MODEL_ENV}, or train one first with `mura train`"
    )


def load_models(specs: Sequence[str], device: str = "cpu") -> list[LoadedModel]:
    """Load ``--model`` specs: run folders, Hub repos, or a folder holding one run per body part.

    Several specs form an ensemble (mean of probabilities); a folder of per-part runs routes by part.
    """
    from mura_cli.models.hub import CONFIG_NAME, load_pretrained

    if not specs:
        raise UsageError("no model given; pass --model RUN_FOLDER or --model org/name (train one with `mura train`)")
    out: list[LoadedModel] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir() and not (p / CONFIG_NAME).is_file():
            runs = sorted(d for d in p.iterdir() if (d / CONFIG_NAME).is_file())
            if not runs:
                raise UsageError(f"{p}: no config.json here nor in its subfolders; pass a run folder from mura train")
            for d in runs:
                out.append(_loaded(str(d), *load_pretrained(d, device)))
        else:
            out.append(_loaded(spec, *load_pretrained(spec, device)))
    return out


def _loaded(name: str, model: torch.nn.Module, cfg: dict[str, Any]) -> LoadedModel:
    tcfg = from_dict(TransformConfig, cfg.get("transform", {}))
    return LoadedModel(name=name, model=model, config=cfg, transform=tcfg)


def models_for_part(models: list[LoadedModel], part: str | None) -> list[LoadedModel]:
    """The models that serve ``part``: those trained on it, else those trained on all parts, else all."""
    if part:
        own = [m for m in models if m.part == part]
        if own:
            return own
    general = [m for m in models if m.part == "all"]
    return general or models


# ============================================================================================ inputs


def discover_inputs(paths: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """Expand files, folders (recursive) and globs into image files; returns ``(images, skipped non-images)``.

    Raster files are found by suffix, DICOM by content (with or without ``.dcm``).
    """
    images: list[Path] = []
    skipped: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        s = str(raw)
        candidates: list[Path]
        if any(ch in s for ch in "*?[") and not Path(s).exists():
            candidates = [Path(m) for m in sorted(glob.glob(s, recursive=True))]
            if not candidates:
                raise DataError(f"{s}: the pattern matches no file")
        else:
            p = Path(s)
            if not p.exists():
                raise DataError(f"{p}: no such file or folder")
            candidates = [p]
        for c in candidates:
            # hidden files and dot-folders are skipped only below a folder the user passed, never on the path typed
            files = sorted(f for f in c.rglob("*") if f.is_file() and not _hidden_below(f, c)) if c.is_dir() else [c]
            for f in files:
                if f in seen:
                    continue
                seen.add(f)
                if f.suffix.lower() in RASTER_SUFFIXES or is_dicom(f):
                    images.append(f)
                else:
                    skipped.append(f)
    return images, skipped


def _hidden_below(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


@dataclass(frozen=True)
class MuraStudy:
    """Where a file sits in the MURA layout ``<split>/XR_<PART>/patientNNNNN/studyN_<label>/``.

    Unpacks and indexes as the triple ``(part, patient, study)`` that :func:`mura_study_of` used to return.

    Attributes:
        part: body part, lower case (``elbow``).
        patient: ``patientNNNNN``.
        study: the study path as the official CSVs spell it: ``MURA-v1.1/valid/XR_ELBOW/patient11186/study1_positive/``.
        split: ``train`` or ``valid``.
        assumed: True when the path does not hold ``MURA-v1.1/<split>/`` above ``XR_<PART>`` (a renamed or
            copied folder): the prefix of ``study`` was then assumed, and the split too when the folder above
            ``XR_<PART>`` is not ``train``/``valid`` (taken from the patient number: MURA-v1.1 train patients
            are 00001-11184, valid ones 11185 on).
    """

    part: str
    patient: str
    study: str
    split: str = "valid"
    assumed: bool = False

    def __iter__(self) -> Iterator[str]:
        return iter((self.part, self.patient, self.study))

    def __getitem__(self, i: int) -> str:
        return (self.part, self.patient, self.study)[i]

    def __len__(self) -> int:
        return 3


_MURA_FIRST_VALID_PATIENT = 11185


def mura_study_of(path: str | Path) -> MuraStudy | None:
    """Where ``path`` sits in the MURA layout (``part, patient, study = ...`` still unpacks), else ``None``.

    The study path is always ``MURA-v1.1/<split>/XR_<PART>/patientNNNNN/studyN_<label>/`` as in the official
    CSVs, whatever the folders above ``<split>`` are called; ``assumed`` says when the path did not show it.
    """
    posix = Path(os.path.abspath(path)).as_posix()  # absolute, symlinks kept: the layout the user sees
    m = _MURA_STUDY.search(posix)
    if not m:
        return None
    above = posix[: m.start(1)].rstrip("/").split("/")  # folders above XR_<PART>
    split_dir = above[-1] if above else ""
    if split_dir.lower() in ("train", "valid"):
        split = split_dir.lower()
        assumed = not (split_dir == split and len(above) >= 2 and above[-2] == "MURA-v1.1")
    else:
        number = int(m.group(2)[len("patient") :])
        split = "train" if number < _MURA_FIRST_VALID_PATIENT else "valid"
        assumed = True
    study_path = f"MURA-v1.1/{split}/{m.group(1)}/{m.group(2)}/{m.group(3)}/"
    return MuraStudy(
        part=part_from_name(m.group(1)) or "unknown",
        patient=m.group(2),
        study=study_path,
        split=split,
        assumed=assumed,
    )


# ============================================================================================ inference


@dataclass(frozen=True)
class ImagePrediction:
    """One image (one frame) through the model(s)."""

    path: str
    frame: int
    study: str
    part: str
    probability: float
    model: str
    width: int
    height: int
    threshold: float = 0.5
    cam: np.ndarray | None = field(default=None, repr=False)
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_row(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "frame": self.frame,
            "study": self.study,
            "part": self.part,
            "probability": round(self.probability, 6),
            "model": self.model,
        }


@dataclass(frozen=True)
class Failure:
    """A file that could not be read, and why."""

    path: str
    reason: str


class _FileDataset(Dataset):
    """One item per file: every frame through each distinct eval transform, or the failure."""

    def __init__(
        self, files: Sequence[Path], transforms: Sequence[TransformConfig], max_pixels: int, keep_pixels: bool
    ) -> None:
        self.files = list(files)
        self.keep_pixels = keep_pixels
        self.tcfgs = list(transforms)
        self.tfs = [build_transforms(t, train=False) for t in self.tcfgs]
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path = self.files[i]
        try:
            frames = read_images(path, max_pixels=self.max_pixels)
        except MuraError as exc:
            return {"path": str(path), "error": str(exc)}
        out = []
        for img in frames:
            h, w = img.shape
            meta = {
                k: v
                for k, v in img.meta.items()
                if k in ("StudyInstanceUID", "BodyPartExamined", "frame", "format", "PhotometricInterpretation")
            }
            tensors = [tf(img.pixels) for tf in self.tfs]
            out.append(
                {
                    "tensors": tensors,
                    "height": h,
                    "width": w,
                    "meta": meta,
                    "pixels": img.pixels if self.keep_pixels else None,
                }
            )
        return {"path": str(path), "frames": out}


def predict(
    files: Sequence[Path],
    models: list[LoadedModel],
    *,
    part: str | None = None,
    per_image: bool = False,
    device: str = "cpu",
    batch_size: int = 16,
    workers: int = 0,
    with_cam: bool = False,
    keep_pixels: bool = False,
    max_pixels: int = 100_000_000,
    on_failure: Callable[[Failure], None] | None = None,
) -> Iterator[ImagePrediction]:
    """Yield one :class:`ImagePrediction` per image frame, in input order.

    Args:
        files: image files (see :func:`discover_inputs`).
        models: loaded models; several serving one part are averaged (ensemble).
        part: force the body part (else MURA path, DICOM BodyPartExamined, then the model's).
        per_image: every image is its own study.
        device: torch device.
        batch_size: images per forward pass.
        workers: decoding processes (0 = in this process).
        with_cam: also compute each image's class activation map on the original pixel grid (mean over models).
        keep_pixels: keep the decoded image in ``meta["pixels"]`` (for overlays).
        max_pixels: decompression-bomb limit per frame.
        on_failure: called for each file that cannot be read; the batch goes on.
    """
    tcfgs: list[TransformConfig] = []
    for m in models:
        if m.transform not in tcfgs:
            tcfgs.append(m.transform)
    for m in models:
        m.model.to(device).eval()
    ds = _FileDataset(files, tcfgs, max_pixels, keep_pixels)
    loader = DataLoader(
        ds, batch_size=None, shuffle=False, num_workers=workers, prefetch_factor=4 if workers > 0 else None
    )
    pending: list[dict[str, Any]] = []

    def flush() -> Iterator[ImagePrediction]:
        yield from _run_batch(pending, models, tcfgs, device, with_cam)
        pending.clear()

    for item in loader:
        if "error" in item:
            if on_failure:
                on_failure(Failure(item["path"], item["error"]))
            continue
        for fr in item["frames"]:
            p_part, study = _study_and_part(item["path"], fr["meta"], part, per_image, models)
            pending.append({**fr, "path": item["path"], "part": p_part, "study": study})
            if len(pending) >= batch_size:
                yield from flush()
    if pending:
        yield from flush()


def _study_and_part(
    path: str, meta: dict[str, Any], part: str | None, per_image: bool, models: list[LoadedModel]
) -> tuple[str, str]:
    mura = mura_study_of(path)
    frame = int(meta.get("frame", 0))
    image_id = path if frame == 0 else f"{path}#frame{frame}"
    if per_image:
        study = image_id
    elif mura:
        study = mura[2]
    elif meta.get("StudyInstanceUID"):
        study = str(meta["StudyInstanceUID"])
    else:
        study = str(Path(path).parent)
    p = part_from_name(part) if part else None
    if not p and mura:
        p = mura[0]
    if not p and meta.get("BodyPartExamined"):
        p = part_from_name(str(meta["BodyPartExamined"]))
    if not p:
        parts = {m.part for m in models}
        p = parts.pop() if len(parts) == 1 else "unknown"
    return p, study


@torch.inference_mode()
def _run_batch(
    items: list[dict[str, Any]], models: list[LoadedModel], tcfgs: list[TransformConfig], device: str, with_cam: bool
) -> Iterator[ImagePrediction]:
    probs = np.zeros((len(items),), dtype=np.float64)
    counts = np.zeros((len(items),), dtype=np.float64)
    cams: list[np.ndarray | None] = [None] * len(items)
    names: list[list[str]] = [[] for _ in items]
    thresholds = np.zeros((len(items),), dtype=np.float64)
    for m in models:
        serve = [i for i, it in enumerate(items) if m in models_for_part(models, it["part"])]
        if not serve:
            continue
        k = tcfgs.index(m.transform)
        x = torch.stack([items[i]["tensors"][k] for i in serve]).to(device)
        with autocast_for(device, True):
            if with_cam:
                logits, cam = m.model.forward_with_cam(x)
            else:
                logits, cam = m.model(x), None
        p = torch.sigmoid(logits.float()).cpu().numpy()
        for j, i in enumerate(serve):
            probs[i] += p[j]
            counts[i] += 1
            names[i].append(m.short_name)
            thresholds[i] += m.threshold
            if cam is not None:
                it = items[i]
                g = eval_geometry(it["height"], it["width"], m.transform)
                full = cam_to_original(cam[j].float().cpu().numpy(), g, it["height"], it["width"])
                cams[i] = full if cams[i] is None else cams[i] + full
    for i, it in enumerate(items):
        n = max(counts[i], 1)
        meta = dict(it["meta"])
        if it.get("pixels") is not None:
            meta["pixels"] = it["pixels"]
        yield ImagePrediction(
            path=it["path"],
            frame=int(meta.get("frame", 0)),
            study=it["study"],
            part=it["part"],
            probability=float(probs[i] / n),
            model="+".join(names[i]),
            width=it["width"],
            height=it["height"],
            threshold=float(thresholds[i] / n) if counts[i] else 0.5,
            cam=None if cams[i] is None else cams[i] / n,
            meta=meta,
        )


# ============================================================================================ studies


@dataclass(frozen=True)
class StudyPrediction:
    """A study: its images' probabilities aggregated, and the label at the threshold."""

    study: str
    part: str
    images: int
    probability: float
    prediction: int
    model: str
    threshold: float = 0.5

    def to_row(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "part": self.part,
            "images": self.images,
            "probability": round(self.probability, 6),
            "prediction": self.prediction,
            "threshold": round(self.threshold, 6),
            "model": self.model,
        }


def group_studies(
    preds: Sequence[ImagePrediction], threshold: float | None = None, how: str = "mean"
) -> list[StudyPrediction]:
    """Aggregate image predictions by study (``mean`` as in the MURA paper, or ``max``).

    Each study is labelled at ``threshold`` when given, else at the threshold of the model(s) that scored it
    (an ensemble: the mean of its members' stored thresholds), so a folder of per-part runs labels every
    study at its own part model's operating point.
    """
    if not preds:
        return []
    ids, _, scores = aggregate_by_study(
        [p.study for p in preds], [0] * len(preds), [p.probability for p in preds], how=how
    )
    first: dict[str, ImagePrediction] = {}
    n: dict[str, int] = {}
    thr_sum: dict[str, float] = {}
    for p in preds:
        first.setdefault(p.study, p)
        n[p.study] = n.get(p.study, 0) + 1
        thr_sum[p.study] = thr_sum.get(p.study, 0.0) + p.threshold
    out = []
    for s, sc in zip(ids, scores, strict=True):
        thr = threshold if threshold is not None else thr_sum[s] / n[s]
        out.append(
            StudyPrediction(
                study=s,
                part=first[s].part,
                images=n[s],
                probability=float(sc),
                prediction=int(sc >= thr),
                model=first[s].model,
                threshold=thr,
            )
        )
    return out


def part_mismatches(preds: Sequence[ImagePrediction], models: Sequence[LoadedModel]) -> dict[tuple[str, str], int]:
    """``{(body part, model): images}`` for images scored by a model that never saw their body part.

    Images of unknown part are not counted: nothing says they differ.
    """
    parts_of = {m.short_name: set(m.parts) for m in models}
    out: dict[tuple[str, str], int] = {}
    for p in preds:
        if p.part == "unknown":
            continue
        for name in p.model.split("+"):
            if name in parts_of and p.part not in parts_of[name]:
                out[(p.part, name)] = out.get((p.part, name), 0) + 1
    return out


# ============================================================================================ localization


@dataclass(frozen=True)
class Localization:
    """The CAM box of one image, in original pixels."""

    path: str
    frame: int
    study: str
    probability: float
    box: Box | None
    cam_max: float
    threshold: float
    peak: tuple[int, int]

    def to_row(self) -> dict[str, Any]:
        b = self.box
        return {
            "image": self.path,
            "frame": self.frame,
            "study": self.study,
            "probability": round(self.probability, 6),
            "x0": b.x0 if b else None,
            "y0": b.y0 if b else None,
            "x1": b.x1 if b else None,
            "y1": b.y1 if b else None,
            "cam_max": round(self.cam_max, 6),
            "threshold": round(self.threshold, 6) if np.isfinite(self.threshold) else None,
            "peak_x": self.peak[0] if b else None,  # cam_peak says (0, 0) for a map with no positive evidence
            "peak_y": self.peak[1] if b else None,
        }


def localize(pred: ImagePrediction, threshold_frac: float = 0.2) -> Localization:
    """Box the largest component of ``pred.cam`` above ``threshold_frac`` of its maximum."""
    if pred.cam is None:
        raise UsageError("localize needs predictions made with with_cam=True")
    box, thr = cam_box(pred.cam, threshold_frac)
    return Localization(
        path=pred.path,
        frame=pred.frame,
        study=pred.study,
        probability=pred.probability,
        box=box,
        cam_max=float(pred.cam.max()),
        threshold=thr,
        peak=cam_peak(pred.cam),
    )
