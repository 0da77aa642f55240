"""The run folder: the contract between training (which writes it) and serving (which reads it).

Every file name of a run folder is spelled here and nowhere else (``tests/test_layout.py`` greps for them).

A single run (``mura train``)::

    RUN/train_config.json            the resolved TrainConfig (written first)
    RUN/model.safetensors            the kept epoch's weights   } the Hub layout: what predict, localize,
    RUN/config.json                  its ModelConfig            } benchmark and export read
    RUN/last.safetensors             last epoch's weights       }
    RUN/last_average.safetensors     and their average (EMA/SWA) } what --resume reads
    RUN/last_optimizer.safetensors   optimizer tensors           }
    RUN/last_state.json              scheduler, history          }
    RUN/metrics.csv, RUN/curves.png  one row / one point per epoch
    RUN/README.md                    the model card
    RUN/summary.json                 written last: its presence marks a finished run
    RUN/bf16_check.json              fp32 vs bf16 on the tune split, keyed by the weights' hash
    RUN/onnx/model-<sha>-<size>px-opset<N>[-int8].onnx   the ONNX Runtime exports (cache: read-only runs)
    RUN/export/model[-int8].onnx + preprocessing.json     ``mura export``'s default output

A ``mura train --folds K`` ensemble: ``train_config.json``, ``RUN/fold-k/`` (single runs, the members),
``RUN/nested/inner-j-k/`` (``--nested`` pair models, not members), ``oof.csv``, ``inner.csv``,
``ensemble.json`` (marks the ensemble), ``summary.json`` and ``README.md``.

A ``mura pretrain`` backbone: ``pretrain_config.json`` (marks it: not an abnormality model), ``model.safetensors``
(the backbone alone, timm's names: what ``mura train --weights RUN`` loads), ``config.json`` (``kind: backbone``),
``metrics.csv`` (loss per epoch), ``README.md`` and ``summary.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mura_cli.utils import cache_dir, is_writable_dir, sha256_files

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
ENSEMBLE_NAME = "ensemble.json"
"""Marks a ``mura train --folds`` run folder: its ``fold-k`` subfolders are one ensemble model."""
TRAIN_CONFIG = "train_config.json"
LAST_WEIGHTS = "last.safetensors"
LAST_OPTIM = "last_optimizer.safetensors"
LAST_STATE = "last_state.json"
LAST_AVERAGE = "last_average.safetensors"
METRICS = "metrics.csv"
CURVES = "curves.png"
CARD = "README.md"
SUMMARY = "summary.json"
BF16_CHECK = "bf16_check.json"
OOF = "oof.csv"
INNER = "inner.csv"
PRETRAIN_CONFIG = "pretrain_config.json"
"""Marks a ``mura pretrain`` folder: a backbone for ``mura train --weights``, not a model to predict with."""
BACKBONE_KIND = "backbone"
"""``config.json`` ``kind`` of a ``mura pretrain`` backbone (a model config that serving refuses by name)."""
NESTED_DIR = "nested"
ONNX_DIR = "onnx"
EXPORT_DIR = "export"
EXPORT_MODEL = "model.onnx"
EXPORT_INT8 = "model-int8.onnx"
EXPORT_SIDECAR = "preprocessing.json"
ONNX_OPSET = 17
"""The ONNX opset of the exports (part of the cached file's name, so a new opset never serves a stale file)."""
HUB_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD, METRICS, CURVES)
"""What a run folder uploads to (and downloads from) the Hub."""


def fold_name(k: int) -> str:
    """The member folder of fold ``k`` (1-based) in a ``--folds`` ensemble."""
    return f"fold-{k}"


def inner_name(j: int, k: int) -> str:
    """The ``--nested`` pair model trained without folds ``j`` and ``k``."""
    return f"inner-{j}-{k}"


@dataclass(frozen=True)
class RunFolder:
    """A run folder on disk (it need not exist yet): its files and what they say about the run."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_NAME

    @property
    def config(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def train_config(self) -> Path:
        return self.path / TRAIN_CONFIG

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def has_model(self) -> bool:
        """Whether it holds a loadable model (``config.json`` and ``model.safetensors``)."""
        return self.config.is_file() and self.weights.is_file()

    @property
    def is_ensemble(self) -> bool:
        """Whether it is a finished ``mura train --folds`` ensemble (it holds ``ensemble.json``)."""
        return (self.path / ENSEMBLE_NAME).is_file()

    @property
    def is_backbone(self) -> bool:
        """Whether it is a ``mura pretrain`` folder (a backbone for ``--weights``, never served)."""
        return (self.path / PRETRAIN_CONFIG).is_file()

    @property
    def finished(self) -> bool:
        """A run ``mura train`` finished: one model (config, weights, summary) or a ``--folds`` ensemble (summary)."""
        if not self.summary.is_file() or self.is_backbone:
            return False
        return self.is_ensemble or self.has_model

    @property
    def resumable(self) -> bool:
        """A single run with its train config and a saved epoch (``mura train --resume`` continues it)."""
        return self.train_config.is_file() and (self.path / LAST_STATE).is_file()

    @property
    def is_folds(self) -> bool:
        """A ``--folds`` ensemble folder, finished or not: its train config has folds and it has no last state of
        its own."""
        try:
            folds = json.loads(self.train_config.read_text()).get("folds")
        except (OSError, ValueError, AttributeError):
            return False
        return bool(folds) and not (self.path / LAST_STATE).exists()

    def fold(self, k: int) -> RunFolder:
        """Member ``k`` (1-based) of a ``--folds`` ensemble."""
        return RunFolder(self.path / fold_name(k))

    @property
    def nested_home(self) -> Path:
        """Where a ``--nested`` ensemble keeps its pair models (not members: predict never loads them)."""
        return self.path / NESTED_DIR

    def inner(self, j: int, k: int) -> RunFolder:
        """The ``--nested`` pair model trained without folds ``j`` and ``k``."""
        return RunFolder(self.nested_home / inner_name(j, k))

    def onnx_export(self, size: int, opset: int = ONNX_OPSET) -> Path:
        """Where the ONNX export of the current weights at ``size`` lives: ``RUN/onnx/`` or, for a read-only run,
        the user cache; keyed by the weights' hash, the size and the opset."""
        name = f"model-{sha256_files([self.weights])[:16]}-{size}px-opset{opset}.onnx"
        base = self.path / ONNX_DIR if is_writable_dir(self.path) else cache_dir() / ONNX_DIR
        return base / name

    def int8_export(self, size: int) -> Path:
        """Where ``--engine onnx-int8`` finds the run's int8 export (next to the fp32 one)."""
        fp32 = self.onnx_export(size)
        return fp32.with_name(fp32.stem + "-int8.onnx")

    def unstarted(self) -> bool:
        """Whether it holds nothing but its train config (stopped before the first epoch was saved)."""
        return self.path.is_dir() and [p.name for p in self.path.iterdir()] == [TRAIN_CONFIG]

    def remove_if_unstarted(self) -> bool:
        """Remove the folder when :meth:`unstarted`; whether it did."""
        if not self.unstarted():
            return False
        self.train_config.unlink()
        self.path.rmdir()
        return True

    @staticmethod
    def newest(runs_dir: str | Path) -> RunFolder | None:
        """The newest :attr:`finished` run directly under ``runs_dir`` (by the time its summary was written, then
        by name), or ``None``."""
        root = Path(runs_dir)
        done = [RunFolder(d) for d in (root.iterdir() if root.is_dir() else []) if RunFolder(d).finished]
        if not done:
            return None
        return max(done, key=lambda r: (r.summary.stat().st_mtime, r.path.name))


def is_ensemble(folder: str | Path) -> bool:
    """Whether ``folder`` is a ``mura train --folds`` ensemble (it holds ``ensemble.json``)."""
    return RunFolder(folder).is_ensemble


__all__ = [
    "BACKBONE_KIND",
    "BF16_CHECK",
    "CARD",
    "CONFIG_NAME",
    "CURVES",
    "ENSEMBLE_NAME",
    "EXPORT_DIR",
    "EXPORT_INT8",
    "EXPORT_MODEL",
    "EXPORT_SIDECAR",
    "HUB_FILES",
    "INNER",
    "LAST_AVERAGE",
    "LAST_OPTIM",
    "LAST_STATE",
    "LAST_WEIGHTS",
    "METRICS",
    "NESTED_DIR",
    "ONNX_DIR",
    "ONNX_OPSET",
    "OOF",
    "PRETRAIN_CONFIG",
    "SUMMARY",
    "TRAIN_CONFIG",
    "WEIGHTS_NAME",
    "RunFolder",
    "fold_name",
    "inner_name",
    "is_ensemble",
]
