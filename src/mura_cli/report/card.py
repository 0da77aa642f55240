"""The model card (README.md in the Hub layout) written next to a run's model."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mura_cli.metrics import format_metric
from mura_cli.models.run_folder import CARD
from mura_cli.report.document import format_interval
from mura_cli.utils import write_text

if TYPE_CHECKING:
    from mura_cli.config import TrainConfig
    from mura_cli.engine.results import EpochResult
    from mura_cli.models.checkpoint import ModelConfig


def write_model_card(
    run: Path,
    cfg: TrainConfig,
    model: ModelConfig,
    history: Sequence[EpochResult],
    best_epoch: int,
    *,
    weights: str,
    images: tuple[int, int],
    studies: tuple[int, int],
) -> Path:
    """Write ``run/README.md``: the model (``model``), its training (``cfg``) and the tune metrics per epoch.

    Args:
        run: the run folder.
        cfg: the training configuration (data, recipe).
        model: the model's ``config.json`` (architecture, body part, input, threshold).
        history: the epochs trained.
        best_epoch: the epoch whose weights were saved.
        weights: where the initial weights came from.
        images: train and tune image counts.
        studies: train and tune study counts.
    """
    from mura_cli.config import to_dict

    t = model.transform
    rows = "\n".join(
        "| "
        + " | ".join(
            [f"{e.epoch}{' (best)' if e.epoch == best_epoch else ''}"]
            + [format_metric(v) for v in (e.train_loss, e.tune_loss, e.tune_kappa, e.tune_auroc, e.tune_image_auroc)]
            + [f"{e.lr:.1e}"]
        )
        + " |"
        for e in history
    )
    text = f"""---
library_name: mura-cli
tags:
- radiology
- x-ray
- musculoskeletal
- mura
- image-classification
---

# {run.name}: abnormality classifier for musculoskeletal radiographs ({model.part})

Fine-tuned with [mura-cli](https://pypi.org/project/mura-cli/) (`mura train`). Output: one logit, probability
of **abnormal**; the study probability is the mean of its images' probabilities, labelled abnormal at
threshold {model.threshold}.

| | |
| --- | --- |
| architecture | `{model.arch}` (timm backbone, global average pooling, dropout {model.dropout}, one linear logit) |
| initial weights | {weights} |
| body part(s) | {model.part} |
| data | `{cfg.data}`: {images[0]} train images ({studies[0]} studies), \
{images[1]} tune images ({studies[1]} studies), split by patient |
| input | {t.output_size} px ({t.resize}), grey replicated to 3 channels, mean {list(t.mean)}, std {list(t.std)} |
| augmentation | horizontal flip {t.hflip}, vertical flip {t.vflip}, rotation +/-{t.rotation} degrees |
| recipe | weighted BCE per body part, Adam lr {cfg.lr} betas ({cfg.beta1}, {cfg.beta2}), lr x{cfg.lr_factor} \
on tune-loss plateau (patience {cfg.lr_patience}), early stopping patience {cfg.early_stop}, batch {cfg.batch_size}, \
seed {cfg.seed} |

## Tune-split metrics per epoch (kappa and AUROC at study level)

| epoch | train loss | tune loss | kappa | AUROC | image AUROC | lr |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

These are tune-split figures from training, not a held-out test: use `mura benchmark` on a test split.

## Use

```bash
mura predict ./xrays --model {run} --out results.csv
mura localize scan.dcm --model {run} --overlay
```

Not a medical device; for research use.

<details><summary>Full training configuration</summary>

```json
{json.dumps(to_dict(cfg), indent=2)}
```
</details>
"""
    return write_text(run / CARD, text)


def write_ensemble_card(run: Path, cfg: TrainConfig, info: Mapping[str, Any]) -> Path:
    """Write ``run/README.md`` of a ``--folds`` ensemble: its choices and its figures, each labelled with what
    it is (``info`` is the ``ensemble.json`` content: ``oof`` and, with ``--nested``, ``nested``)."""
    ops = ", ".join(f"{k} at {v:.3f}" for k, v in info["operating_points"].items() if v is not None) or "none"
    lines = [
        f"# {run.name}: {cfg.folds}-fold ensemble ({cfg.arch}, {cfg.part})",
        "",
        f"The mean of {cfg.folds} models, each trained on the other folds' patients (`{cfg.folds_by}` folds). "
        f"Chosen on the out-of-fold predictions: test-time flips {'on' if info['tta'] else 'off'}, "
        f"temperature {info['temperature']}, threshold {info['threshold']:.3f} (max kappa); operating points "
        f"{ops} (`mura predict --threshold sens:0.9`).",
        "",
        _estimate_lines("Out-of-fold (the data the choices were fitted to)", info["oof"]),
    ]
    if "nested" in info:
        lines.append(_estimate_lines("Nested cross-validation (the estimate)", info["nested"]["table"], info["nested"]))
        if "ensemble" in info["nested"]:
            ens = info["nested"]["ensemble"]
            lines.append(_estimate_lines("Nested cross-validation of the ensemble", ens["table"], ens))
    else:
        lines.append("No nested estimate was computed (`mura train --folds K --nested` computes one).")
    lines.append("\nAll figures are on the training data's own patients and source; not a medical device.\n")
    return write_text(run / CARD, "\n".join(lines))


def _estimate_lines(title: str, table: Mapping[str, Any], labelled: Mapping[str, Any] | None = None) -> str:
    label = (labelled or table).get("label", "")
    out = [f"## {title}", "", label, "", "| scope | studies | AUROC | kappa | sensitivity | specificity |"]
    out.append("| --- | --- | --- | --- | --- | --- |")
    for scope, e in table["parts"].items():
        m = e["metrics"]
        cells = [_interval(m[k]) for k in ("auroc", "kappa", "sensitivity", "specificity")]
        out.append(f"| {scope} | {e['studies']} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _interval(e: Mapping[str, Any] | None) -> str:
    e = e or {}
    return format_interval(e.get("value"), e.get("low"), e.get("high"))
