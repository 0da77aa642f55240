"""Backbones over timm, by the plain names of the MURA paper and the seed report.

Every model is ``timm backbone features -> global average pooling -> dropout -> one linear logit``
(:class:`MuraNet`). With that head the class activation map is exact: the logit is the spatial mean of
``fc.weight . features + fc.bias``, so the map ``fc.weight . features`` says where the logit came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mura_cli.errors import ModelError

ALIASES: dict[str, str] = {
    "vgg16": "vgg16",
    "vgg19": "vgg19",
    "resnet50": "resnet50",
    "densenet121": "densenet121",
    "densenet169": "densenet169",
    "inception_v3": "inception_v3",
    "inceptionv3": "inception_v3",
    "mobilenet": "mobilenetv3_large_100",
    "mobilenetv2": "mobilenetv2_100",
    "mobilenetv3": "mobilenetv3_large_100",
    "nasnet": "nasnetalarge",
    "nasnetalarge": "nasnetalarge",
    "efficientnet_b0": "efficientnet_b0",
    "convnext_tiny": "convnext_tiny",
}
"""Plain names accepted by ``--arch``; any other timm model name works too."""

LISTED = (
    "vgg16",
    "resnet50",
    "densenet169",
    "inception_v3",
    "mobilenetv2",
    "mobilenetv3",
    "nasnetalarge",
    "efficientnet_b0",
    "convnext_tiny",
)
"""The architectures ``mura archs`` lists (the paper's, the seed report's, and two modern ones)."""

DEFAULT_ARCH = "densenet169"


@dataclass(frozen=True)
class BackboneInfo:
    """What ``mura archs`` shows for one architecture."""

    name: str
    timm_name: str
    params: int
    input_size: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    hub_repo: str | None


def resolve_arch(name: str) -> str:
    """A plain name (``densenet169``, ``mobilenet``) or any timm name -> the timm model name (with tag if given).

    Raises:
        ModelError: unknown to timm, with close matches.
    """
    import timm

    key = name.strip()
    base = ALIASES.get(key.lower(), key)
    arch = base.split(".", 1)[0]
    if not timm.is_model(arch):
        close = [m for m in timm.list_models(f"*{arch.split('_')[0]}*")][:8]
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ModelError(f"unknown architecture {name!r}{hint}; see `mura archs` for the supported names")
    return base


def pretrained_cfg(arch: str) -> dict:
    """timm's pretrained config of ``arch`` (default tag when none is given) as a dict; no network."""
    from timm.models import get_pretrained_cfg

    timm_name = resolve_arch(arch)
    cfg = get_pretrained_cfg(timm_name, allow_unregistered=False)
    if cfg is None:
        return {
            "hf_hub_id": None,
            "input_size": (3, 224, 224),
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
            "tag": None,
        }
    out = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg.__dict__)
    out["tag"] = getattr(cfg, "tag", None)
    return out


def list_backbones(names: tuple[str, ...] = LISTED) -> list[BackboneInfo]:
    """Describe ``names`` (parameter counts from a meta-device build, so nothing is allocated)."""
    out = []
    for name in names:
        timm_name = resolve_arch(name)
        with torch.device("meta"):
            model = create_model(name)
        params = sum(p.numel() for p in model.parameters())
        cfg = pretrained_cfg(name)
        out.append(
            BackboneInfo(
                name=name,
                timm_name=timm_name,
                params=params,
                input_size=tuple(cfg["input_size"]),
                mean=tuple(cfg["mean"]),
                std=tuple(cfg["std"]),
                hub_repo=cfg.get("hf_hub_id"),
            )
        )
    return out


def _timm_backbone(arch: str, timm_name: str, output_stride: int | None) -> Any:
    """The timm model without head or pooling. Typed ``Any``: timm backbones share ``forward_features`` and
    ``num_features`` by convention, not through a typed base class."""
    import timm

    kwargs: dict[str, Any] = {} if output_stride is None else {"output_stride": output_stride}
    try:
        return timm.create_model(timm_name.split(".", 1)[0], pretrained=False, num_classes=0, global_pool="", **kwargs)
    except (RuntimeError, TypeError, ValueError, AssertionError) as exc:
        extra = f" with output stride {output_stride}" if output_stride else ""
        raise ModelError(f"cannot build {arch!r}{extra} with timm: {exc}") from None


class MuraNet(nn.Module):
    """A timm backbone's last feature map, global average pooling, dropout and one abnormality logit.

    Args:
        arch: plain or timm architecture name.
        dropout: dropout before the linear head.
        output_stride: input pixels per feature-map cell (timm's ``output_stride``: 8 or 16 dilate the last
            stages of archs that support it, for a finer class activation map; ``None``: the arch's own, 32).
    """

    def __init__(self, arch: str, dropout: float = 0.0, output_stride: int | None = None) -> None:
        super().__init__()
        self.arch = arch
        self.timm_name = resolve_arch(arch)
        self.backbone = _timm_backbone(arch, self.timm_name, output_stride)
        if type(getattr(self.backbone, "pre_logits", None)).__name__ == "ConvMlp":  # VGG fc6/fc7: unused by our head
            self.backbone.pre_logits = nn.Identity()
        self.num_features = int(self.backbone.num_features)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Bx3xHxW -> BxCxhxw, the last feature map (timm's ``forward_features``)."""
        return self.backbone.forward_features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """BxCxhxw -> B logits (pool, dropout, linear), in fp32 even under bf16 autocast (a few thousand
        multiply-adds: rounding the logit to bf16 would cost more agreement than it saves time)."""
        with _fp32(features):
            pooled = features.float().mean(dim=(2, 3))
            return self.fc(self.dropout(pooled)).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bx3xHxW normalized images -> B abnormality logits."""
        return self.forward_head(self.forward_features(x))

    def forward_with_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and class activation maps (Bxhxw) from one forward pass.

        The map is ``sum_c fc.weight[c] * features[c]`` (no bias), so ``cam.mean((1, 2)) + fc.bias == logit``.
        """
        feats = self.forward_features(x)
        logits = self.forward_head(feats)
        with _fp32(feats):  # the map in fp32 from the (possibly bf16) features, as the logit
            cam = torch.einsum("bchw,c->bhw", feats.float(), self.fc.weight[0].float())
        return logits, cam


def _fp32(x: torch.Tensor) -> torch.autocast:
    """Autocast switched off on ``x``'s device: what runs inside computes in the dtype of its inputs."""
    return torch.autocast(x.device.type, enabled=False)


def create_model(arch: str = DEFAULT_ARCH, *, dropout: float = 0.0) -> MuraNet:
    """Build a :class:`MuraNet` with random weights.

    ImageNet weights: :func:`mura_cli.models.hub.load_backbone_weights`; a fine-tuned model:
    :func:`mura_cli.models.hub.load_model`.

    Example:
        >>> from mura_cli.models.hub import load_backbone_weights
        >>> model = create_model("densenet169")
        >>> load_backbone_weights(model, "default")  # timm/densenet169.tv_in1k from the Hub
    """
    return MuraNet(arch, dropout=dropout)
