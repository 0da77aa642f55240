"""Batch inference over files and folders: image probabilities and study grouping.

:func:`predict` is a generator of :class:`ImagePrediction`: files are decoded by worker processes while the
backend works on the previous batch, and memory does not grow with the number of inputs; each batch goes
through :func:`~mura_cli.engine.backends.infer`. :func:`group_studies` forms studies afterwards. The jobs built
on it are in :mod:`mura_cli.engine.serving.screen` (:func:`~mura_cli.engine.serving.screen.run_inference`,
what predict and localize share, and :func:`~mura_cli.engine.serving.screen.run_predict`, the whole
``mura predict`` job).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mura_cli.cam import Box, cam_on_grid
from mura_cli.config import InferConfig, TransformConfig
from mura_cli.data.image import BlankImageError, check_not_blank
from mura_cli.data.inputs import resolve_study_and_part
from mura_cli.data.preprocess import eval_geometry, eval_input
from mura_cli.data.sources import Input, read_input
from mura_cli.engine.backends import infer
from mura_cli.engine.hooks import Failure, Hooks
from mura_cli.engine.serving.load import LoadedModel, models_for_part
from mura_cli.engine.serving.parallel import ordered_map
from mura_cli.errors import MuraError
from mura_cli.metrics import aggregate_by_study
from mura_cli.utils import hash_id, plural

log = logging.getLogger(__name__)


# ============================================================================================ inference


@dataclass(frozen=True)
class ImagePrediction:
    """One image (one frame) through the model(s); ``cam``, when asked for, is the class activation map on the
    grid :func:`~mura_cli.cam.cam_grid_shape` gives for ``height`` x ``width`` (the original pixels for images
    up to 512 px, proportionally coarser above)."""

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


class _FileDataset:
    """One item per file: every frame through each distinct eval transform, or the failure; a blank frame is
    a ``sanity`` failure (:func:`~mura_cli.data.image.check_not_blank`), never scored.

    Unless the pixels are kept (overlays), files are read at no more than the largest transform needs: a grey
    DICOM frame may be read at a reduced resolution (:func:`~mura_cli.data.dicom.read_dicom`); sizes, maps and
    boxes stay in the original's pixels."""

    def __init__(
        self, files: Sequence[Input], transforms: Sequence[TransformConfig], max_pixels: int, keep_pixels: bool
    ) -> None:
        self.files = list(files)
        self.keep_pixels = keep_pixels
        self.tcfgs = list(transforms)
        self.max_pixels = max_pixels
        self.min_side = None if keep_pixels else max(t.size for t in self.tcfgs)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path = self.files[i]
        try:
            frames = read_input(path, max_pixels=self.max_pixels, min_side=self.min_side)
        except MuraError as exc:
            return {"path": str(path), "error": str(exc), "stage": "decode"}
        out, blank = [], []
        for raw in frames:
            try:
                img = check_not_blank(raw)
            except BlankImageError as exc:
                blank.append(str(exc))
                continue
            h, w = img.size
            meta = {
                k: v
                for k, v in img.meta.items()
                if k in ("StudyInstanceUID", "BodyPartExamined", "frame", "format", "PhotometricInterpretation")
            }
            inputs = [eval_input(img.pixels, t) for t in self.tcfgs]
            out.append(
                {
                    "inputs": inputs,
                    "height": h,
                    "width": w,
                    "meta": meta,
                    "pixels": img.pixels if self.keep_pixels else None,
                }
            )
        return {"path": str(path), "frames": out, "blank": blank}


def predict(
    files: Sequence[Input],
    models: list[LoadedModel],
    cfg: InferConfig = InferConfig(workers=0),
    *,
    per_image: bool = False,
    with_cam: bool = False,
    keep_pixels: bool = False,
    hooks: Hooks = Hooks(),
) -> Iterator[ImagePrediction]:
    """Yield one :class:`ImagePrediction` per image frame, in input order.

    Args:
        files: image files (see :func:`discover_inputs`).
        models: loaded models; several serving one part are averaged (ensemble).
        cfg: ``part`` (force the body part, else MURA path, then DICOM BodyPartExamined; unknown: empty),
            ``batch_size``, ``workers`` (decoding processes, 0 = in this process) and ``max_pixels``
            (decompression-bomb limit per frame); its paths and model are not used here.
        per_image: every image is its own study.
        with_cam: also compute each image's class activation map (mean over models) on the grid of
            :func:`~mura_cli.cam.cam_grid_shape`, the original's proportions at most 512 px a side.
        keep_pixels: keep the decoded image in ``meta["pixels"]`` (for overlays).
        hooks: ``on_failure`` for each file that cannot be read (stage ``decode``) and each blank frame
            (stage ``sanity``), the batch going on; ``on_progress`` per file.
    """
    tcfgs: list[TransformConfig] = []
    for m in models:
        if m.transform not in tcfgs:
            tcfgs.append(m.transform)
    ds = _FileDataset(files, tcfgs, cfg.max_pixels, keep_pixels)
    # a whole next batch decodes while the model runs on this one (read-ahead below a batch stalls the model)
    ahead = cfg.batch_size + 2 * cfg.workers
    loader = ordered_map(ds.__getitem__, len(ds), cfg.workers, ahead, name=lambda i: str(ds.files[i]))
    pending: list[dict[str, Any]] = []
    for done, item in enumerate(loader, 1):
        if "error" in item:
            hooks.on_failure(Failure(item["path"], item["error"], item["stage"]))
        for message in item.get("blank", ()):
            hooks.on_failure(Failure(item["path"], message, "sanity"))
        for fr in item.get("frames", ()):
            p_part, study = resolve_study_and_part(item["path"], fr["meta"], cfg.part, per_image)
            if cfg.hash_ids and cfg.salt and study == str(fr["meta"].get("StudyInstanceUID")):
                study = hash_id(study, cfg.salt)
            pending.append({**fr, "path": item["path"], "part": p_part, "study": study})
            if len(pending) >= cfg.batch_size:
                yield from _run_batch(pending, models, tcfgs, with_cam)
                pending = []
        hooks.on_progress(done, len(ds))
    if pending:
        yield from _run_batch(pending, models, tcfgs, with_cam)


def _run_batch(
    items: list[dict[str, Any]], models: list[LoadedModel], tcfgs: list[TransformConfig], with_cam: bool
) -> Iterator[ImagePrediction]:
    probs = np.zeros((len(items),), dtype=np.float64)
    counts = np.zeros((len(items),), dtype=np.float64)
    thresholds = np.zeros((len(items),), dtype=np.float64)
    cams: list[np.ndarray | None] = [None] * len(items)
    names: list[list[str]] = [[] for _ in items]
    for m in models:
        serve = [i for i, it in enumerate(items) if m in models_for_part(models, it["part"])]
        if not serve:
            continue
        k = tcfgs.index(m.transform)
        out = infer(m.backend, np.stack([items[i]["inputs"][k] for i in serve]), with_cam)
        for j, i in enumerate(serve):
            probs[i] += out.probabilities[j]
            counts[i] += 1
            names[i].append(m.short_name)
            thresholds[i] += m.threshold
            if out.cams is not None:
                it = items[i]
                g = eval_geometry(it["height"], it["width"], m.transform)
                full = cam_on_grid(out.cams[j], g, it["height"], it["width"])
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
            model="+".join(dict.fromkeys(names[i])),  # the members of one ensemble are named once
            width=it["width"],
            height=it["height"],
            threshold=float(thresholds[i] / n) if counts[i] else 0.5,
            cam=None if cams[i] is None else cams[i] / n,
            meta=meta,
        )


@dataclass(frozen=True)
class Localization:
    """The CAM box of one image, in original pixels (:func:`~mura_cli.engine.serving.localize.localize`)."""

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


def part_mismatch_warnings(preds: Sequence[ImagePrediction], models: Sequence[LoadedModel]) -> list[str]:
    """One warning for the images of unknown body part (written with an empty part), then one per (body part,
    model) pair of :func:`part_mismatches`, counting the images."""
    unknown = sum(1 for p in preds if not p.part)
    out = [f"part unknown for {plural(unknown, 'image')}: pass --part (written as an empty part)"] if unknown else []
    for (part, name), n in sorted(part_mismatches(preds, models).items()):
        trained = ", ".join(next(m.parts for m in models if m.short_name == name))
        out.append(
            f"{plural(n, 'image')} of {part} scored by {name}, trained on {trained} only: its output there is not "
            "validated"
        )
    return out


def part_mismatches(preds: Sequence[ImagePrediction], models: Sequence[LoadedModel]) -> dict[tuple[str, str], int]:
    """``{(body part, model): images}`` for images scored by a model that never saw their body part.

    Images of unknown part (``""``) are not counted: nothing says they differ; nor are models whose parts are
    only ``all`` (a config that does not say which parts it saw).
    """
    parts_of = {m.short_name: set(m.parts) for m in models if set(m.parts) != {"all"}}
    out: dict[tuple[str, str], int] = {}
    for p in preds:
        if not p.part:
            continue
        for name in p.model.split("+"):
            if name in parts_of and p.part not in parts_of[name]:
                out[(p.part, name)] = out.get((p.part, name), 0) + 1
    return out
