"""The bf16 check: does a run's model keep its accuracy when the CPU runs it in bf16?

As the int8 export is checked (:mod:`mura_cli.engine.evaluation.export`), the run's own held-out images (its tune
split; for a fold of ``--folds``, the fold's held-out patients when it trains on all the others) are scored twice by
torch: fp32, and bf16 as ``--engine torch-bf16`` runs it (bf16 weights, channels-last, the head and the map in
fp32). The check passes when the study AUROC is at most int8's ``MAX_AUROC_DROP`` (0.005) lower in bf16 and no
image's probability moves by more than :data:`MAX_PROBABILITY_DIFF`. The verdict is written once to
``bf16_check.json`` in the run folder, keyed by the weights' hash; ``--engine auto`` serves the run in bf16 only on
a CPU with native bf16 and a passed check.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mura_cli.errors import MuraError
from mura_cli.hardware import cpu_info
from mura_cli.models.run_folder import BF16_CHECK, WEIGHTS_NAME
from mura_cli.utils import read_json, sha256_files, write_json

CHECK_NAME = BF16_CHECK
MAX_PROBABILITY_DIFF = 0.02
"""The largest change of any image's probability that bf16 may make (fp32 -> bf16, absolute)."""


@dataclass(frozen=True)
class Bf16Check:
    """fp32 against bf16 on the run's held-out images: study AUROC of both and how far probabilities moved."""

    weights_sha256: str
    images: int
    studies: int
    auroc_fp32: float
    auroc_bf16: float
    max_probability_diff: float
    mean_probability_diff: float
    cpu: str
    max_auroc_drop: float
    max_allowed_diff: float = MAX_PROBABILITY_DIFF

    @property
    def passed(self) -> bool:
        auroc_ok = math.isnan(self.auroc_fp32) or self.auroc_fp32 - self.auroc_bf16 <= self.max_auroc_drop
        return bool(auroc_ok and self.max_probability_diff <= self.max_allowed_diff and self.images > 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: an undefined AUROC (one class only) is ``null``."""
        data = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(self).items()}
        return {**data, "passed": self.passed}

    def describe(self) -> str:
        verdict = "passed" if self.passed else "failed: auto keeps fp32"
        return (f"bf16 check {verdict}: study AUROC {self.auroc_bf16:.4f} vs fp32 {self.auroc_fp32:.4f}, "
                f"probabilities within {self.max_probability_diff:.4f} (max {self.max_allowed_diff}) "
                f"on {self.images} held-out images")  # fmt: skip


def check_bf16(model: Any, folder: Path, rows: list[Any], root: Path, cache: Path | None, transform: Any) -> Bf16Check:
    """Score ``rows`` with ``model`` in fp32 and bf16 on the CPU, write ``folder/bf16_check.json``, return it."""
    from mura_cli.engine.backends import TorchBackend
    from mura_cli.engine.evaluation.evaluate import evaluate, rows_loader
    from mura_cli.engine.evaluation.export import MAX_AUROC_DROP
    from mura_cli.metrics import aggregate_by_study, roc_auc

    probs, keep = {}, None
    for precision in ("fp32", "bf16"):
        backend = TorchBackend(model, "cpu", precision=precision, channels_last=True)
        res = evaluate(backend, rows_loader(rows, root, transform, cache, 16))
        keep = res.indices[res.valid]
        probs[precision] = res.probabilities[res.valid]
    assert keep is not None
    studies, labels = [rows[i].study for i in keep], [rows[i].label for i in keep]
    auroc = {p: roc_auc(*aggregate_by_study(studies, labels, v)[1:]) for p, v in probs.items()}
    diff = np.abs(probs["bf16"] - probs["fp32"])
    check = Bf16Check(
        weights_sha256=sha256_files([folder / WEIGHTS_NAME]),
        images=len(keep),
        studies=len(set(studies)),
        auroc_fp32=float(auroc["fp32"]),
        auroc_bf16=float(auroc["bf16"]),
        max_probability_diff=float(diff.max()) if len(diff) else math.nan,
        mean_probability_diff=float(diff.mean()) if len(diff) else math.nan,
        cpu=cpu_info().describe(),
        max_auroc_drop=MAX_AUROC_DROP,
    )
    write_json(folder / CHECK_NAME, check.to_dict())
    return check


def load_bf16_check(folder: Path) -> Bf16Check | None:
    """The run's stored check, or ``None`` when there is none or it speaks of other weights."""
    path = folder / CHECK_NAME
    if not path.is_file() or not (folder / WEIGHTS_NAME).is_file():
        return None
    try:
        data = read_json(path, "bf16 check")
        data.pop("passed", None)
        values: dict[str, Any] = {k: math.nan if v is None else v for k, v in data.items()}
        check = Bf16Check(**values)
    except (MuraError, TypeError):  # damaged or from another version: as if never checked
        return None
    return check if check.weights_sha256 == sha256_files([folder / WEIGHTS_NAME]) else None


def bf16_passed(folder: Path | None) -> bool:
    """True when ``folder`` holds a passed bf16 check of its current weights."""
    check = None if folder is None else load_bf16_check(folder)
    return check is not None and check.passed


def check_run(folder: Path) -> Bf16Check:
    """:func:`check_bf16` of the run in ``folder`` on its own tune split (as its training saw it).

    Raises:
        DataError: the run's data cannot be found.
    """
    from mura_cli.engine.evaluation.export import run_rows
    from mura_cli.models.checkpoint import load_run_model

    model, cfg = load_run_model(folder, "cpu")
    _, tune, root, cache = run_rows(folder)
    return check_bf16(model, folder, tune, root, cache, cfg.transform)


def check_after_training(folder: Path, device: str) -> Bf16Check | None:
    """The check of a run that training just finished, where it matters: on a CPU with native bf16."""
    return check_run(folder) if device == "cpu" and cpu_info().native_bf16 else None


__all__ = [
    "CHECK_NAME",
    "MAX_PROBABILITY_DIFF",
    "Bf16Check",
    "bf16_passed",
    "check_after_training",
    "check_bf16",
    "check_run",
    "load_bf16_check",
]
