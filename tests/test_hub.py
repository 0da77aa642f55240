"""The real Hub code paths (huggingface_hub over HTTP) against a local server that speaks the Hub API.

Nothing is mocked on the client side: ``hf_hub_download`` and ``HfApi.upload_folder`` talk HTTP to
``tests/hub_server.py`` on 127.0.0.1, reached through HF_ENDPOINT.
"""

from __future__ import annotations

import json
import socket
import time

import pytest
import torch
from safetensors.torch import save

from mura_cli.errors import HubError, ModelError
from mura_cli.models import hub_errors
from mura_cli.models.checkpoint import ModelConfig, save_run_model
from mura_cli.models.hub import hub_unreachable, load_backbone_weights, load_model, push_to_hub
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


def pretrained(arch="test_resnet", weights="default"):
    """A model with its ImageNet weights, the way `mura train` builds one."""
    model = create_model(arch)
    load_backbone_weights(model, weights)
    return model


def _assert_backbone_equals(model, state):
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_first_download_then_cache_reuse(hub, imagenet_state):
    hub.add_file(REPO, "model.safetensors", save(imagenet_state))
    model = pretrained("test_resnet")
    _assert_backbone_equals(model, imagenet_state)
    assert len(hub.file_requests(REPO, "model.safetensors", method="GET")) == 1
    pretrained("test_resnet")
    assert len(hub.file_requests(REPO, "model.safetensors", method="GET")) == 1  # served from the HF cache


def test_offline_mode_uses_cache_and_says_what_to_do(hub, imagenet_state, monkeypatch):
    set_hf_offline(monkeypatch)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE") as exc:
        pretrained("test_resnet")
    assert "--weights none" in str(exc.value)
    set_hf_offline(monkeypatch, offline=False)
    hub.add_file(REPO, "model.safetensors", save(imagenet_state))
    pretrained("test_resnet")
    set_hf_offline(monkeypatch)
    hub.clear_log()
    model = pretrained("test_resnet")
    _assert_backbone_equals(model, imagenet_state)
    assert hub.requests == []


def test_missing_repo_and_file(hub):
    with pytest.raises(HubError, match="no such repo"):
        pretrained("test_resnet", weights="hf-hub:org/does-not-exist")
    hub.add_file("org/pickles", "pytorch_model.bin", b"not loaded")
    with pytest.raises(HubError, match="safetensors"):
        pretrained("test_resnet", weights="hf-hub:org/pickles")


def test_unreachable_hub_names_the_ways_out(hub, capfd):
    hub.stop()
    t0 = time.monotonic()
    with pytest.raises(HubError) as exc:
        pretrained("test_resnet")
    assert time.monotonic() - t0 < 10  # no five retries with backoff (23 s before)
    msg = str(exc.value)
    assert "connection refused" in msg
    for hint in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "--weights none"):
        assert hint in msg
    assert "Retry" not in capfd.readouterr().err  # huggingface_hub's retry warnings are not shown


def _model_repo(hub, repo="org/mura-model"):
    model = MuraNet("test_resnet").eval()
    hub.add_file(repo, "config.json", json.dumps({"arch": "test_resnet", "threshold": 0.3}).encode())
    hub.add_file(repo, "model.safetensors", save({k: v.contiguous() for k, v in model.state_dict().items()}))
    return model


def test_unreachable_hub_for_a_model_names_model_options(hub, monkeypatch):
    hub.stop()
    t0 = time.monotonic()
    with pytest.raises(HubError) as exc:
        load_model("org/mura-model")
    assert time.monotonic() - t0 < 10
    msg = str(exc.value)
    for hint in ("--model", "HF_HUB_OFFLINE", "HF_ENDPOINT"):
        assert hint in msg
    assert "--weights" not in msg  # predict/localize have no --weights
    set_hf_offline(monkeypatch)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE") as exc:
        load_model("org/mura-model")
    assert "--model" in str(exc.value) and "--weights" not in str(exc.value)


def test_unreachable_hub_still_serves_cached_model(hub):
    model = _model_repo(hub)
    load_model("org/mura-model")
    hub.stop()
    t0 = time.monotonic()
    back, cfg = load_model("org/mura-model")
    assert time.monotonic() - t0 < 10
    assert cfg.threshold == 0.3
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), back(x))


def test_push_to_unreachable_hub_is_one_hub_error(hub, tmp_path):
    save_run_model(MuraNet("test_resnet"), tmp_path / "run", ModelConfig(arch="test_resnet"))
    hub.stop()
    with pytest.raises(HubError, match=r"could not reach the Hub .*connection refused.*push again") as exc:
        push_to_hub(tmp_path / "run", "org/x", token="t")
    assert "--weights" not in str(exc.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_preflight_says_why_the_hub_cannot_be_reached(hub, monkeypatch):
    assert hub_unreachable(hub.url) is None
    assert hub_unreachable(f"http://127.0.0.1:{_closed_port()}") == "connection refused"
    assert "not found" in hub_unreachable("http://no-such-host.invalid", timeout=5)
    # through a proxy, it is the proxy that must answer; NO_PROXY hosts are reached directly
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{_closed_port()}")
    assert "proxy" in hub_unreachable("https://huggingface.co")
    monkeypatch.setenv("NO_PROXY", "huggingface.co")
    assert "proxy" not in (hub_unreachable("https://huggingface.co", timeout=0.5) or "")


def _exc(module: str, name: str, *bases: type) -> type[Exception]:
    return type(name, bases or (Exception,), {"__module__": module})


def test_network_errors_are_recognised_whatever_the_http_library():
    network = [
        ConnectionRefusedError(111, "Connection refused"),
        socket.gaierror(-2, "Name or service not known"),
        TimeoutError("timed out"),
        _exc("httpx", "ConnectError")("[Errno 111] Connection refused"),
        _exc("httpx2._exceptions", "ConnectTimeout")("timed out"),
        _exc("requests.exceptions", "ConnectionError", OSError)("Max retries exceeded"),
        _exc("aiohttp.client_exceptions", "ClientConnectorError")("Cannot connect"),
        _exc("httpx3", "ProxyError", _exc("httpcore", "NetworkError"))("proxy said no"),
    ]
    for e in network:
        assert hub_errors._is_network_error(e), e
    try:  # a library error that wraps a socket error
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise RuntimeError("request failed") from inner
    except RuntimeError as wrapped:
        assert hub_errors._is_network_error(wrapped)
        assert hub_errors._network_reason(wrapped) == "connection refused"
    for e in (ValueError("bad"), KeyError("x"), _exc("httpx", "DecodingError")("gzip"), FileNotFoundError("f")):
        assert not hub_errors._is_network_error(e), e
    assert hub_errors._network_reason(network[3]) == "connection refused"
    assert hub_errors._network_reason(network[1]) == "host name not found"


def test_model_source_rules(hub, tmp_path, monkeypatch):
    """A --model value is a Hub repo only if it cannot be a local path; a mistyped run folder says so at once."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for src in ("runs/nope", "./runs/nope", str(tmp_path / "nope"), "~/no-such-mura-run", "nope", "a/b/c"):
        with pytest.raises(ModelError, match="no such run folder") as exc:
            load_model(src)
        assert str(exc.value).startswith(f"{src}: no such run folder; ")
    assert hub.requests == []  # none of them went to the Hub
    with pytest.raises(HubError, match="no such repo"):
        load_model("hf-hub:runs/nope")  # an explicit hf-hub: prefix always means the Hub
    with pytest.raises(HubError, match="no such repo"):
        load_model("org/nope")  # org/name form, no ./org folder: the Hub
    assert hub.requests
    _model_repo(hub, "runs/good")
    _, cfg = load_model("hf-hub:runs/good")
    assert cfg.arch == "test_resnet" and cfg.schema == 0  # a config without "schema" is version 0


def test_pickles_are_never_loaded(hub, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"arch": "test_resnet"}))
    (run / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelError, match=r"model\.safetensors: missing"):
        load_model(run)
    for name in ("model.pt", "model.bin", "model.pth"):
        (tmp_path / name).write_bytes(b"pickle")
        with pytest.raises(ModelError, match="pickled weights are never loaded"):
            load_model(tmp_path / name)
    hub.add_file("org/pickled", "config.json", b'{"arch": "test_resnet"}')
    hub.add_file("org/pickled", "pytorch_model.bin", b"pickle")
    with pytest.raises(HubError, match="safetensors"):
        load_model("org/pickled")
    assert not hub.file_requests("org/pickled", "pytorch_model.bin")


def test_push_then_load_from_hub(hub, tmp_path, capsys):
    model = MuraNet("test_resnet").eval()
    run = tmp_path / "run"
    save_run_model(model, run, ModelConfig(arch="test_resnet", threshold=0.3, part="elbow", parts=("elbow",)))
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
    back, cfg = load_model("org/mura-test")
    assert cfg.parts == ("elbow",) and cfg.schema == 1
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), back(x))


def test_push_needs_a_model(hub, tmp_path):
    with pytest.raises(ModelError, match=r"model\.safetensors"):
        push_to_hub(tmp_path, "org/x", token="t")
