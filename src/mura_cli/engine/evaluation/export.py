"""``mura export RUN``: the model as ONNX (fp32, or int8 when it keeps its accuracy) for other runtimes.

The export is :func:`~mura_cli.engine.serving.onnx.export_onnx`'s graph (``images`` -> ``logits``, ``cams``; dynamic
batch). ``--int8`` quantizes it statically with ONNX Runtime (QDQ, per-channel int8 weights, uint8
activations), calibrated on images of the run's own training split, then scores the run's tune split with both:
the int8 model is kept only when its study AUROC is within :data:`MAX_AUROC_DROP` of fp32's; otherwise the
export stays fp32 and the result says why. ``preprocessing.json`` beside the model says how to make its
inputs (size, resize mode, crop, mean/std, grey to three channels) and how to read its outputs.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mura_cli.engine.evaluation.evaluate import evaluate, rows_loader
from mura_cli.engine.serving.onnx import OnnxBackend, export_onnx
from mura_cli.engine.serving.runtimes import ONNX, ONNX_INSTALL, RUNTIMES
from mura_cli.errors import DataError, UsageError
from mura_cli.models.checkpoint import ModelConfig, load_run_model
from mura_cli.models.run_folder import (
    CONFIG_NAME,
    EXPORT_DIR,
    EXPORT_INT8,
    EXPORT_MODEL,
    EXPORT_SIDECAR,
    TRAIN_CONFIG,
    WEIGHTS_NAME,
    RunFolder,
)
from mura_cli.utils import atomic_path, ensure_new, sha256_files, write_json

MAX_AUROC_DROP = 0.005
SIDECAR = EXPORT_SIDECAR


@dataclass(frozen=True)
class ExportResult:
    """What ``mura export`` wrote and, with ``--int8``, how the quantized model scored against fp32."""

    model: Path
    sidecar: Path
    precision: str
    auroc: dict[str, float] = field(default_factory=dict)
    note: str = ""


def run_export(
    run: str | Path, *, out: str | Path | None, int8: bool, calibration: int, overwrite: bool
) -> ExportResult:
    """Export the run folder ``run``; see the module docstring.

    Raises:
        UsageError: not a run folder (an ensemble: export one fold), outputs exist without ``overwrite``, or
            ONNX Runtime is missing.
        DataError: ``int8`` and the run's data cannot be found to calibrate and check on.
    """
    folder = Path(run)
    if RunFolder(folder).is_ensemble:
        raise UsageError(f"{folder}: a --folds ensemble; export each member (mura export {RunFolder(folder).fold(1)})")
    if not RunFolder(folder).has_model:
        raise UsageError(f"{folder}: not a run folder (needs {CONFIG_NAME} and {WEIGHTS_NAME}); pass runs/NAME")
    if not RUNTIMES[ONNX].available():
        raise UsageError(ONNX_INSTALL)
    model, cfg = load_run_model(folder)
    target = Path(out) if out else folder / EXPORT_DIR
    name = EXPORT_INT8 if int8 else EXPORT_MODEL
    for path in (target / name, target / SIDECAR):
        ensure_new(path, overwrite)
    target.mkdir(parents=True, exist_ok=True)
    size = cfg.transform.output_size
    fp32 = export_onnx(model, size, target / EXPORT_MODEL)
    result = ExportResult(fp32, target / SIDECAR, "fp32")
    if int8:
        result = _quantize(folder, cfg, fp32, target / name, calibration)
        if result.precision == "int8":
            shutil.copyfile(result.model, _mkparent(RunFolder(folder).int8_export(size)))
    write_json(result.sidecar, sidecar(cfg, result, sha256_files([RunFolder(folder).weights])))
    return result


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def sidecar(cfg: ModelConfig, result: ExportResult, weights_sha: str) -> dict[str, Any]:
    """The JSON that lets another runtime reproduce the inputs and read the outputs."""
    t = cfg.transform
    return {
        "model": result.model.name,
        "precision": result.precision,
        "arch": cfg.arch,
        "weights_sha256": weights_sha,
        "inputs": {"images": {"shape": ["batch", 3, t.output_size, t.output_size], "dtype": "float32"}},
        "outputs": {
            "logits": "abnormal logit per image (probability = sigmoid)",
            "cams": "class activation map per image on the feature grid (upsample to the input, then undo resize)",
        },
        "preprocessing": {
            "pixels": "grey in [0, 1] after DICOM rescale and windowing (MONOCHROME1 inverted)",
            "resize": t.resize,
            "size": t.size,
            "center_crop": t.center_crop,
            "grey_to_channels": 3,
            "mean": list(t.mean),
            "std": list(t.std),
        },
        "threshold": cfg.threshold,
        "tta": cfg.tta,
        "temperature": cfg.temperature,
        "operating_points": dict(cfg.operating_points),
        "study_probability": "mean of its images' probabilities, each sigmoid(logit / temperature) (flips averaged "
        "first when tta)",
        "int8_check": {"study_auroc": result.auroc, "max_drop": MAX_AUROC_DROP, "note": result.note}
        if result.auroc
        else None,
    }


def _quantize(folder: Path, cfg: ModelConfig, fp32: Path, target: Path, calibration: int) -> ExportResult:
    """Static int8 quantization calibrated on training images; kept only if tune AUROC holds."""
    train, tune, root, cache = run_rows(folder)
    rng = np.random.default_rng(0)
    picks = [train[i] for i in rng.permutation(len(train))[:calibration]]
    quantize_onnx(fp32, target, _batches(picks, root, cache, cfg))
    auroc = {
        name: _study_auroc(OnnxBackend(path), tune, root, cache, cfg)
        for name, path in (("fp32", fp32), ("int8", target))
    }
    sidecar_path = target.parent / SIDECAR
    if not np.isfinite(auroc["int8"]) or auroc["fp32"] - auroc["int8"] > MAX_AUROC_DROP:
        target.unlink(missing_ok=True)
        note = (f"int8 study AUROC {auroc['int8']:.4f} vs fp32 {auroc['fp32']:.4f} on the tune split: more than "
                f"{MAX_AUROC_DROP} lower, so the export stays fp32")  # fmt: skip
        return ExportResult(fp32, sidecar_path, "fp32", auroc, note)
    note = f"int8 study AUROC {auroc['int8']:.4f} vs fp32 {auroc['fp32']:.4f} on the tune split"
    return ExportResult(target, sidecar_path, "int8", auroc, note)


def quantize_onnx(fp32: Path, target: Path, batches: list[np.ndarray]) -> Path:
    """ONNX Runtime static int8 quantization of ``fp32`` into ``target`` (atomically): QDQ, per-channel int8
    weights, uint8 activations calibrated on ``batches`` (preprocessed images, N x 3 x size x size)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.it, None)
            return None if x is None else {"images": x}

    with atomic_path(target) as tmp, _quiet_root_logger():
        source = _preprocessed(fp32, tmp.with_name(tmp.name + ".pre.onnx"))
        quantize_static(
            str(source),
            str(tmp),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        if source != fp32:
            source.unlink(missing_ok=True)
    return target


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantization tools log advice on the root logger; keep it out of the terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _preprocessed(fp32: Path, out: Path) -> Path:
    """ONNX Runtime's recommended pre-processing (shape inference, graph optimisation) before quantizing;
    the fp32 model itself when it cannot be applied."""
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(fp32), str(out), skip_symbolic_shape=True)
        return out
    except Exception:  # an older ONNX Runtime or a graph it cannot pre-process: quantize the model as it is
        return fp32


def run_rows(folder: Path) -> tuple[list[Any], list[Any], Path, Path | None]:
    """The run's train and tune rows (as its training saw them), the dataset root and its cache."""
    from mura_cli.config import TrainConfig, from_dict
    from mura_cli.engine.training.train_data import find_cache, resolve_index, select_rows
    from mura_cli.utils import read_json

    if not (folder / TRAIN_CONFIG).is_file():
        raise DataError(f"{folder}: no {TRAIN_CONFIG}, so its data is unknown; --int8 needs the run's images")
    tcfg = from_dict(TrainConfig, read_json(folder / TRAIN_CONFIG, "train config"))
    index, index_dir = resolve_index(tcfg.data)
    _, train, tune = select_rows(index, tcfg)
    return train, tune, Path(index.root), find_cache(index_dir, tcfg)


def _batches(rows: list[Any], root: Path, cache: Path | None, cfg: ModelConfig) -> list[np.ndarray]:
    return [b["image"].numpy() for b in rows_loader(rows, root, cfg.transform, cache, 16)]


def _study_auroc(backend: OnnxBackend, rows: list[Any], root: Path, cache: Path | None, cfg: ModelConfig) -> float:
    from mura_cli.metrics import aggregate_by_study, roc_auc

    res = evaluate(backend, rows_loader(rows, root, cfg.transform, cache, 16))
    keep = res.indices[res.valid]
    probs = res.probabilities[res.valid]
    _, labels, scores = aggregate_by_study([rows[i].study for i in keep], [rows[i].label for i in keep], probs)
    return roc_auc(labels, scores)


__all__ = [
    "MAX_AUROC_DROP",
    "SIDECAR",
    "ExportResult",
    "quantize_onnx",
    "run_export",
    "run_rows",
    "sidecar",
]
