"""Self-tests of the fake Hub (tests/hub_server.py): the real huggingface_hub client talks HTTP to it."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.numpy import load, save

from hub_server import FakeHub, serving_hub, set_hf_offline

REPO = "org/tiny"


@pytest.fixture
def hub(request, monkeypatch, tmp_path):
    yield from serving_hub(monkeypatch, tmp_path, disable_xet=getattr(request, "param", True))


@pytest.fixture
def weights() -> bytes:
    return save({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, dtype=np.float32)})


def test_hf_hub_download_into_cache(hub: FakeHub, weights: bytes, tmp_path: Path):
    commit = hub.add_file(REPO, "model.safetensors", weights)

    path = Path(hf_hub_download(REPO, "model.safetensors"))

    snapshot = tmp_path / "hf_home" / "hub" / "models--org--tiny" / "snapshots" / commit
    assert path == snapshot / "model.safetensors"
    assert path.read_bytes() == weights
    np.testing.assert_array_equal(load(path.read_bytes())["w"], np.arange(6, dtype=np.float32).reshape(2, 3))
    # *.safetensors is served like an LFS file: the cached blob is named after its sha256
    assert path.resolve().name == hashlib.sha256(weights).hexdigest()
    assert (tmp_path / "hf_home" / "hub" / "models--org--tiny" / "refs" / "main").read_text() == commit
    assert hub.requests == [
        ("HEAD", "/org/tiny/resolve/main/model.safetensors"),
        ("GET", "/org/tiny/resolve/main/model.safetensors"),
    ]


def test_second_download_is_served_from_cache(hub: FakeHub, weights: bytes):
    hub.add_file(REPO, "model.safetensors", weights)
    first = hf_hub_download(REPO, "model.safetensors")
    second = hf_hub_download(REPO, "model.safetensors")

    assert first == second
    assert len(hub.file_requests(REPO, "model.safetensors", method="GET")) == 1
    assert len(hub.file_requests(REPO, "model.safetensors", method="HEAD")) == 2  # "main" is re-checked

    hub.clear_log()
    assert hf_hub_download(REPO, "model.safetensors", revision=hub.head(REPO)) == first  # pinned: no request
    assert hub.requests == []


def test_new_commit_is_downloaded_again(hub: FakeHub):
    hub.add_file(REPO, "config.json", b'{"v": 1}')
    assert Path(hf_hub_download(REPO, "config.json")).read_bytes() == b'{"v": 1}'
    hub.add_file(REPO, "config.json", b'{"v": 2}')
    assert Path(hf_hub_download(REPO, "config.json")).read_bytes() == b'{"v": 2}'
    assert len(hub.file_requests(REPO, "config.json", method="GET")) == 2


def test_offline_mode_uses_cache_without_requests(hub: FakeHub, weights: bytes, monkeypatch):
    hub.add_file(REPO, "model.safetensors", weights)
    online = hf_hub_download(REPO, "model.safetensors")
    hub.clear_log()

    set_hf_offline(monkeypatch)
    assert hf_hub_download(REPO, "model.safetensors") == online
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(REPO, "not-cached.json")
    assert hub.requests == []


def test_missing_repo_file_revision(hub: FakeHub):
    hub.add_file(REPO, "config.json", b"{}")

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/does-not-exist", "config.json")
    with pytest.raises(EntryNotFoundError) as excinfo:  # RemoteEntryNotFoundError in huggingface_hub >= 1.0
        hf_hub_download(REPO, "missing.json")
    assert isinstance(excinfo.value, HfHubHTTPError) and excinfo.value.response.status_code == 404
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        HfApi().model_info("org/does-not-exist")


def test_private_and_gated_repos_need_a_token(hub: FakeHub):
    hub.create_repo("org/private", private=True)
    hub.add_file("org/private", "config.json", b"{}")
    hub.create_repo("org/gated", gated=True)
    hub.add_file("org/gated", "config.json", b"{}")

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/private", "config.json")
    with pytest.raises(GatedRepoError):
        hf_hub_download("org/gated", "config.json")
    assert Path(hf_hub_download("org/private", "config.json", token="hf_x")).read_bytes() == b"{}"
    assert Path(hf_hub_download("org/gated", "config.json", token="hf_x")).read_bytes() == b"{}"


@pytest.mark.parametrize(
    "hub",
    [
        pytest.param(True, id="xet-disabled"),
        pytest.param(
            False,
            id="xet-enabled",
            marks=pytest.mark.skipif(importlib.util.find_spec("hf_xet") is None, reason="hf_xet not installed"),
        ),
    ],
    indirect=True,
)
def test_create_repo_and_upload_folder(hub: FakeHub, weights: bytes, tmp_path: Path):
    folder = tmp_path / "export"
    folder.mkdir()
    expected = {
        "README.md": b"---\nlicense: apache-2.0\n---\n# tiny\n",
        "config.json": json.dumps({"arch": "densenet121"}).encode(),
        "model.safetensors": weights,
    }
    for name, data in expected.items():
        (folder / name).write_bytes(data)
    api = HfApi(endpoint=hub.url, token="x")

    repo_url = api.create_repo("org/name", exist_ok=True)
    assert repo_url.repo_id == "org/name"
    assert api.create_repo("org/name", exist_ok=True).repo_id == "org/name"
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.create_repo("org/name")
    assert excinfo.value.response.status_code == 409

    info = api.upload_folder(repo_id="org/name", folder_path=folder, commit_message="export")
    assert info.oid == hub.head("org/name")
    assert hub.files("org/name") == expected
    for name, data in expected.items():
        assert Path(hf_hub_download("org/name", name)).read_bytes() == data

    # unchanged files are detected through the preupload oids: no new commit
    api.upload_folder(repo_id="org/name", folder_path=folder)
    assert hub.head("org/name") == info.oid
    assert not hub.unhandled


def test_snapshot_download(hub: FakeHub, weights: bytes):
    files = {"model.safetensors": weights, "config.json": b'{"a": 1}', "sub/notes.txt": b"hello"}
    commit = hub.add_files(REPO, files)

    folder = Path(snapshot_download(REPO))
    assert folder.name == commit
    assert {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == files

    hub.clear_log()
    assert Path(snapshot_download(REPO)) == folder
    assert not [r for r in hub.requests if r[0] == "GET" and "/resolve/" in r[1]]  # nothing downloaded again

    only_json = Path(snapshot_download(REPO, allow_patterns="*.json", local_dir=folder.parent.parent / "local"))
    assert sorted(p.name for p in only_json.iterdir() if p.is_file()) == ["config.json"]


def test_module_level_api_uses_fake_endpoint(hub: FakeHub):
    import huggingface_hub

    commit = hub.add_file(REPO, "config.json", b"{}")
    assert huggingface_hub.hf_hub_url(REPO, "config.json").startswith(hub.url)
    assert huggingface_hub.model_info(REPO).sha == commit
    assert [f.path for f in huggingface_hub.list_repo_tree(REPO)] == ["config.json"]
    huggingface_hub.upload_file(path_or_fileobj=b"x", path_in_repo="a/b.txt", repo_id=REPO, token="x")
    assert hub.file(REPO, "a/b.txt") == b"x"
    assert huggingface_hub.file_exists(REPO, "a/b.txt") and not huggingface_hub.file_exists(REPO, "nope")
