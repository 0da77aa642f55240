"""The real Hub code paths (huggingface_hub over HTTP) against a local server that speaks the Hub API.

Nothing is mocked on the client side: ``hf_hub_download`` and ``HfApi.upload_folder`` talk HTTP to
``tests/hub_server.py`` on 127.0.0.1, reached through HF_ENDPOINT.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save

from mura_cli.errors import HubError, ModelError
from mura_cli.models.hub import load_pretrained, push_to_hub, save_pretrained
from mura_cli.models.registry import MuraNet, create_model

from hub_server import serving_hub, set_hf_offline

REPO = "timm/test_resnet.r160_in1k"  # what timm's pretrained config names for test_resnet


@pytest.fixture
def hub(monkeypatch, tmp_path):
    yield from serving_hub(monkeypatch, tmp_path)


@pytest.fixture
def imagenet_state():
    """Tiny 'ImageNet' weights for test_resnet in timm's layout, classifier included."""
    torch.manual_seed(123)
    net = MuraNet("test_resnet")
    state = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    state["fc.weight"] = torch.randn(1000, net.num_features)
    state["fc.bias"] = torch.zeros(1000)
    return state


def _assert_backbone_equals(model, state):
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_first_download_then_cache_reuse(hub, imagenet_state):
    hub.add_file(REPO, "model.safetensors", save(imagenet_state))
    model = create_model("test_resnet", pretrained=True)
    _assert_backbone_equals(model, imagenet_state)
    assert len(hub.file_requests(REPO, "model.safetensors", method="GET")) == 1
    create_model("test_resnet", pretrained=True)
    assert len(hub.file_requests(REPO, "model.safetensors", method="GET")) == 1  # served from the HF cache


def test_offline_mode_uses_cache_and_says_what_to_do(hub, imagenet_state, monkeypatch):
    set_hf_offline(monkeypatch)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE") as exc:
        create_model("test_resnet", pretrained=True)
    assert "--weights none" in str(exc.value)
    set_hf_offline(monkeypatch, offline=False)
    hub.add_file(REPO, "model.safetensors", save(imagenet_state))
    create_model("test_resnet", pretrained=True)
    set_hf_offline(monkeypatch)
    hub.clear_log()
    model = create_model("test_resnet", pretrained=True)
    _assert_backbone_equals(model, imagenet_state)
    assert hub.requests == []


def test_missing_repo_and_file(hub):
    with pytest.raises(HubError, match="no such repo"):
        create_model("test_resnet", pretrained=True, weights="hf-hub:org/does-not-exist")
    hub.add_file("org/pickles", "pytorch_model.bin", b"not loaded")
    with pytest.raises(HubError, match="safetensors"):
        create_model("test_resnet", pretrained=True, weights="hf-hub:org/pickles")


def test_unreachable_hub_names_the_ways_out(hub):
    hub.stop()
    with pytest.raises(HubError) as exc:
        create_model("test_resnet", pretrained=True)
    msg = str(exc.value)
    for hint in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "--weights none"):
        assert hint in msg


def test_push_then_load_from_hub(hub, tmp_path, capsys):
    model = MuraNet("test_resnet").eval()
    run = tmp_path / "run"
    save_pretrained(model, run, {"arch": "test_resnet", "threshold": 0.3, "parts": ["elbow"]})
    (run / "README.md").write_text("---\nlibrary_name: mura-cli\n---\n# card\n")
    (run / "last.safetensors").write_bytes(b"private training state")
    from mura_cli.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["push", str(run), "--repo", "org/mura-test", "--token", "t"])
    assert exc.value.code == 0, capsys.readouterr().err
    files = hub.files("org/mura-test")
    assert set(files) >= {"model.safetensors", "config.json", "README.md"}
    assert "last.safetensors" not in files
    assert json.loads(files["config.json"])["threshold"] == 0.3
    back, cfg = load_pretrained("org/mura-test")
    assert cfg["parts"] == ["elbow"]
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), back(x))


def test_push_needs_a_model(hub, tmp_path):
    with pytest.raises(ModelError, match=r"model\.safetensors"):
        push_to_hub(tmp_path, "org/x", token="t")
