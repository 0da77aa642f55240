"""The Hub through the real ``mura`` executable: one ``error:`` line and the right exit code, fast, no traceback.

Each test runs ``mura`` in a subprocess with its own ``HF_HOME`` under ``tmp_path`` and ``HF_ENDPOINT`` pointing at
either a closed local port (the Hub unreachable) or ``tests/hub_server.py``'s fake Hub (nothing mocked).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image
from safetensors.torch import save

from mura_cli.models.checkpoint import ModelConfig, save_run_model
from mura_cli.models.registry import MuraNet

from hub_server import FakeHub

pytestmark = pytest.mark.slow  # every test starts `mura` (torch import): 2-4 s each

_HF_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_VERBOSITY")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mura(tmp_path: Path, endpoint: str, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    base = {k: v for k, v in os.environ.items() if k not in _HF_VARS}
    hf_home = tmp_path / "hf_home"
    base.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(hf_home),
        HF_HUB_CACHE=str(hf_home / "hub"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_UPDATE_CHECK="1",
        HF_HUB_DISABLE_XET="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        COLUMNS="200",
        **env,
    )
    t0 = time.monotonic()
    proc = subprocess.run(["mura", *args], env=base, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    return proc, time.monotonic() - t0


def _one_error_line(stderr: str, *, allow: tuple[str, ...] = ()) -> str:
    """The single ``error:`` line of ``stderr``; nothing else but lines starting with one of ``allow``."""
    assert "Traceback" not in stderr, stderr
    assert "Retry" not in stderr and "thrown while requesting" not in stderr, stderr  # huggingface_hub's noise
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, stderr
    assert [ln for ln in lines if not ln.startswith(("error:", *allow))] == [], stderr
    return errors[0]


# `mura predict` announces which model it uses ("model: SPEC (--model)") on stderr before loading it.
_PREDICT_INFO = ("model:",)


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    save_run_model(MuraNet("test_resnet").eval(), run, ModelConfig(arch="test_resnet", threshold=0.5))
    (run / "README.md").write_text("---\nlibrary_name: mura-cli\n---\n# card\n")
    return run


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "xr.png"
    Image.linear_gradient("L").resize((64, 64)).save(path)  # not blank: a blank image is refused, never scored
    return path


def test_push_to_unreachable_hub_is_one_line(tmp_path, run_folder):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    proc, seconds = _mura(tmp_path, endpoint, "push", str(run_folder), "--repo", "org/name", "--token", "t")
    assert proc.returncode == 5, proc.stderr
    line = _one_error_line(proc.stderr)
    assert endpoint in line and "connection refused" in line
    assert "--weights" not in line
    assert seconds < 15, seconds


def test_predict_with_unreachable_hub_fails_fast_in_one_line(tmp_path, image):
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    proc, seconds = _mura(tmp_path, endpoint, "predict", str(image), "--model", "org/name")
    print(f"mura predict, Hub unreachable: {seconds:.1f} s")
    assert proc.returncode == 5, proc.stderr
    line = _one_error_line(proc.stderr, allow=_PREDICT_INFO)
    assert "connection refused" in line
    assert "--model" in line and "--weights" not in line  # predict has --model, not --weights
    assert seconds < 15, seconds  # 27 s of retries with backoff before the fix; ~3 s now (mostly importing torch)


def test_predict_with_unresolvable_hub_host_fails_fast(tmp_path, image):
    proc, seconds = _mura(tmp_path, "http://no-such-hub.invalid", "localize", str(image), "--model", "org/name")
    assert proc.returncode == 5, proc.stderr
    line = _one_error_line(proc.stderr, allow=_PREDICT_INFO)
    assert "not found" in line and "--model" in line and "--weights" not in line
    assert seconds < 15, seconds


def test_missing_local_run_folder_is_not_a_hub_repo(tmp_path, image):
    (tmp_path / "runs").mkdir()
    with FakeHub.serve() as hub:
        proc, _ = _mura(tmp_path, hub.url, "predict", str(image), "--model", "runs/nope")
        assert hub.requests == []  # the Hub was never asked for a repo "runs/nope"
    assert proc.returncode == 4, proc.stderr
    line = _one_error_line(proc.stderr, allow=_PREDICT_INFO)
    assert line.startswith("error: runs/nope: no such run folder; "), line


def test_predict_from_hub_then_from_cache_when_unreachable(tmp_path, image, run_folder):
    """The real download path (hf_hub_download over HTTP) works, and the cached copy keeps working offline."""
    with FakeHub.serve() as hub:
        for name in ("config.json", "model.safetensors"):
            hub.add_file("org/mura", name, (run_folder / name).read_bytes())
        proc, _ = _mura(tmp_path, hub.url, "predict", str(image), "--model", "org/mura", "-o", "a.csv")
        assert proc.returncode == 0, proc.stderr
        assert hub.file_requests("org/mura", "model.safetensors", method="GET")
        endpoint = hub.url
    proc, seconds = _mura(tmp_path, endpoint, "predict", str(image), "--model", "org/mura", "-o", "b.csv")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Retry" not in proc.stderr
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert seconds < 15, seconds


def test_hub_repo_with_only_a_pickle_is_refused(tmp_path, image):
    with FakeHub.serve() as hub:
        hub.add_file("org/pickled", "config.json", json.dumps({"arch": "test_resnet"}).encode())
        hub.add_file("org/pickled", "pytorch_model.bin", save({}))
        proc, _ = _mura(tmp_path, hub.url, "predict", str(image), "--model", "org/pickled")
        assert not hub.file_requests("org/pickled", "pytorch_model.bin")
    assert proc.returncode == 5, proc.stderr
    assert "safetensors" in _one_error_line(proc.stderr, allow=_PREDICT_INFO)
