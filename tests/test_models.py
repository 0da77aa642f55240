"""Backbone registry, the pool-then-linear head, and weight loading from local safetensors files."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from mura_cli.errors import ModelError
from mura_cli.models.checkpoint import ModelConfig, load_run_model, save_run_model
from mura_cli.models.hub import (
    load_backbone_weights,
    load_model,
    resolve_weights_file,
)
from mura_cli.models.registry import ALIASES, LISTED, MuraNet, create_model, list_backbones, resolve_arch


@pytest.mark.parametrize(
    "name",
    [
        "vgg16",
        "resnet50",
        "densenet169",
        "inception_v3",
        "mobilenet",
        "mobilenetv2",
        "nasnet",
        "efficientnet_b0",
        "convnext_tiny",
    ],
)
def test_plain_names_resolve(name):
    assert resolve_arch(name) == ALIASES[name]


def test_unknown_arch_is_model_error():
    with pytest.raises(ModelError, match="mura archs"):
        resolve_arch("densenet9000")


def test_list_backbones_meta_device():
    infos = list_backbones()
    assert [i.name for i in infos] == list(LISTED)
    d = {i.name: i for i in infos}
    assert d["densenet169"].hub_repo == "timm/densenet169.tv_in1k"
    assert d["inception_v3"].input_size == (3, 299, 299)
    assert 10e6 < d["densenet169"].params < 15e6
    assert d["vgg16"].params < 20e6  # fc6/fc7 dropped: conv features + our linear head


@pytest.mark.parametrize("arch", ["test_resnet", "test_efficientnet", "resnet18"])
def test_head_is_pool_then_linear(arch):
    model = MuraNet(arch).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, cam = model.forward_with_cam(x)
        feats = model.forward_features(x)
    assert logits.shape == (2,)
    assert torch.allclose(model(x), logits, atol=1e-5)
    # the logit is the spatial mean of the CAM (exactness of the class activation map)
    assert torch.allclose(cam.mean(dim=(1, 2)) + model.fc.bias, logits, atol=1e-4)
    assert cam.shape == (2, *feats.shape[2:])


def test_weights_file_rules(tmp_path):
    assert resolve_weights_file("none", "test_resnet") is None
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"x")
    with pytest.raises(ModelError, match="pickled"):
        resolve_weights_file(str(bad), "test_resnet")
    with pytest.raises(ModelError, match="hf-hub:org/name"):
        resolve_weights_file("org/name", "test_resnet")
    with pytest.raises(ModelError):
        resolve_weights_file(str(tmp_path / "nothing"), "test_resnet")


def test_load_backbone_weights_from_local_file(tmp_path):
    src = MuraNet("test_resnet")
    state = {k: v.clone() for k, v in src.backbone.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 8)  # an ImageNet classifier that must be ignored
    save_file(state, str(tmp_path / "model.safetensors"))
    dst = create_model("test_resnet")
    report = load_backbone_weights(dst, str(tmp_path))
    assert report.loaded == len(src.backbone.state_dict()) and not report.missing
    assert "fc.weight" in report.unexpected
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(v, dst.backbone.state_dict()[k])
    with pytest.raises(ModelError, match="another arch"):
        load_backbone_weights(MuraNet("test_efficientnet"), str(tmp_path / "model.safetensors"))


def test_save_and_load_run_model_roundtrip(tmp_path):
    model = MuraNet("test_resnet", dropout=0.1).eval()
    save_run_model(model, tmp_path, ModelConfig(arch="test_resnet", dropout=0.1, threshold=0.4))
    back, cfg = load_run_model(tmp_path)
    assert cfg.threshold == 0.4 and cfg.dropout == 0.1 and back.dropout.p == 0.1
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), back(x))
    assert load_model(str(tmp_path))[1] == cfg  # the front door that also takes Hub repos
    with pytest.raises(ModelError, match="run folder"):
        load_model(tmp_path / "missing")


def test_registry_builds_random_weights_without_the_hub():
    """create_model never downloads: ImageNet weights are load_backbone_weights' job (models.hub)."""
    a, b = create_model("test_resnet"), create_model("test_resnet", dropout=0.2)
    assert isinstance(a, MuraNet) and b.dropout.p == 0.2


def test_output_stride_gives_a_finer_map_and_survives_save_and_load(tmp_path):
    from mura_cli.config import TransformConfig
    from mura_cli.models.checkpoint import ModelConfig, load_run_model, save_run_model

    x = torch.randn(1, 3, 64, 64)
    assert MuraNet("resnet18").forward_features(x).shape[-1] == 2
    net = MuraNet("resnet18", output_stride=16).eval()
    assert net.forward_features(x).shape[-1] == 4
    save_run_model(net, tmp_path, ModelConfig(arch="resnet18", output_stride=16, transform=TransformConfig(size=64)))
    back, cfg = load_run_model(tmp_path)
    assert cfg.output_stride == 16
    with torch.no_grad():
        assert torch.allclose(net(x), back(x))
