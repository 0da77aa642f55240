"""The model card (README.md in the Hub layout) written next to a run's model."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _fmt(v: float) -> str:
    return f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else "n/a"


def write_model_card(
    run: Path, cfg: Any, part: str, history: Sequence[Any], best_epoch: int, info: dict[str, Any]
) -> Path:
    """Write ``run/README.md``: arch, parts, data, recipe and the tune metrics table."""
    from mura_cli.config import to_dict

    t = cfg.transform
    rows = "\n".join(
        f"| {e.epoch}{' (best)' if e.epoch == best_epoch else ''} | {_fmt(e.train_loss)} | {_fmt(e.tune_loss)} | "
        f"{_fmt(e.tune_kappa)} | {_fmt(e.tune_auroc)} | {_fmt(e.tune_image_auroc)} | {e.lr:.1e} |"
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

# {run.name}: abnormality classifier for musculoskeletal radiographs ({part})

Fine-tuned with [mura-cli](https://pypi.org/project/mura-cli/) (`mura train`). Output: one logit, probability
of **abnormal**; the study probability is the mean of its images' probabilities, labelled abnormal at
threshold {cfg.threshold}.

| | |
| --- | --- |
| architecture | `{cfg.arch}` (timm backbone, global average pooling, dropout {cfg.dropout}, one linear logit) |
| initial weights | {info.get("weights")} |
| body part(s) | {part} |
| data | `{cfg.data}`: {info.get("train_images")} train images ({info.get("train_studies")} studies), \
{info.get("tune_images")} tune images ({info.get("tune_studies")} studies), split by patient |
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
    out = run / "README.md"
    out.write_text(text)
    return out
