"""``mura pretrain``: the contrastive loss, the views, reading real radiographs, and the run folder that
``mura train --weights`` and ``mura push`` take (through the real executable, and the Hub through the fake Hub
server in tests/hub_server.py, nothing mocked)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mura_cli.config_pretrain import PretrainConfig
from mura_cli.engine.training.pretrain import load_radiographs, nt_xent, view_transform
from mura_cli.errors import DataError, ModelError, UsageError
from mura_cli.models.checkpoint import ModelConfig, read_weights
from mura_cli.models.registry import MuraNet
from mura_cli.models.run_folder import RunFolder

from hub_server import serving_hub
from synth import mura, one_error_line


def test_nt_xent_rewards_matching_views():
    torch.manual_seed(0)
    z = torch.randn(16, 64)
    matched = nt_xent(z, z + 0.01 * torch.randn(16, 64), temperature=0.2)
    shuffled = nt_xent(z, z[torch.randperm(16)], temperature=0.2)
    assert float(matched) < 0.1 * float(shuffled)
    assert torch.allclose(nt_xent(z, z.flip(0), 0.2), nt_xent(z.flip(0), z, 0.2))  # symmetric in the two views


def test_nt_xent_of_one_pair_is_zero():
    # one image, two views: each view's only candidate is its twin
    assert float(nt_xent(torch.randn(1, 4), torch.randn(1, 4), 0.5)) == pytest.approx(0.0, abs=1e-6)


def test_views_are_random_and_shaped_for_the_backbone():
    view = view_transform(PretrainConfig(arch="test_resnet", size=32))
    grey = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    torch.manual_seed(0)
    a, b = view(grey), view(grey)
    assert a.shape == b.shape == (3, 32, 32)
    assert not torch.equal(a, b)
    assert torch.equal(a[0], a[1])  # grey stays grey: no colour augmentation


def test_config_refuses_bad_settings():
    with pytest.raises(UsageError, match="--batch-size"):
        PretrainConfig(batch_size=1)
    with pytest.raises(UsageError, match="--crop-scale"):
        PretrainConfig(crop_scale=0)
    assert PretrainConfig(arch="timm/resnet18").run_name == "pretrain-timm-resnet18"


@pytest.mark.slow
def test_reads_real_dicoms_and_names_the_unreadable(shared_data, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(shared_data / "dicom", src)
    (src / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    images, failed, _ = load_radiographs([str(src)], size=32, workers=2)
    n_real = len([p for p in (shared_data / "dicom").rglob("*") if p.is_file() and p.suffix.lower() == ".dcm"])
    assert images.dtype == np.uint8 and images.shape[1:] == (32, 32)
    assert len(images) >= min(n_real, 2)
    assert [Path(f).name for f, _ in failed] == ["broken.dcm"]
    assert images.std() > 0  # real anatomy, not blank frames


def test_too_few_images_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="at least two"):
        load_radiographs([str(tmp_path)], size=32, workers=1)


def _pngs(folder: Path, n: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((40, 36)) * 255).astype(np.uint8)).save(folder / f"xr{i}.png")
    return folder


@pytest.mark.slow
def test_pretrain_then_fine_tune_push_and_refuse_to_predict(tmp_path):
    data = _pngs(tmp_path / "xrays", 6)
    (data / "notes.txt").write_text("not an image")
    common = ("--arch", "test_resnet", "--size", "32", "--epochs", "2", "--batch-size", "4", "--out", "runs")
    res = mura("pretrain", "--data", data, *common, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    run = tmp_path / "runs" / "pretrain-test_resnet"
    assert "saved" in res.stdout and "mura train --weights" in res.stdout
    assert RunFolder(run).is_backbone and not RunFolder(run).finished
    assert json.loads((run / "config.json").read_text())["kind"] == "backbone"
    weights = read_weights(run / "model.safetensors")
    assert not any(k.startswith(("backbone.", "fc.", "head.")) for k in weights)  # timm's names, backbone only
    assert len(MuraNet("test_resnet").backbone.state_dict()) == len(weights)
    assert (run / "metrics.csv").read_text().count("\n") == 3  # header + 2 epochs
    from mura_cli.config import RANDOM_INIT_RECIPE, train_config

    cfg = train_config({}, {"weights": str(run), "epochs": 3})  # fine-tuning a pretrain folder: the random-init recipe
    assert (cfg.lr, cfg.schedule, cfg.epochs) == (RANDOM_INIT_RECIPE["lr"], "cosine", 3)

    # a second run into the same folder is refused; nothing is touched
    before = (run / "model.safetensors").read_bytes()
    again = mura("pretrain", data, *common, cwd=tmp_path)
    assert again.returncode == 2 and "--exist-ok" in one_error_line(again)
    assert (run / "model.safetensors").read_bytes() == before

    # serving refuses a backbone by name
    img = data / "xr0.png"
    res = mura("predict", img, "--model", run, cwd=tmp_path)
    assert res.returncode == 4
    assert "mura train --weights" in one_error_line(res)
    with pytest.raises(ModelError, match="mura pretrain"):
        ModelConfig.from_json(run)

    # mura train starts from it
    tree = tmp_path / "tree"
    from synth import make_mura_tree

    make_mura_tree(tree, patients_per_part=3, valid_patients=1, size=(40, 36))
    res = mura(
        "train", "--data", tree, "--arch", "test_resnet", "--part", "all", "--weights", run, "--size", "32",
        "--epochs", "1", "--out", "runs", "--name", "ft", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"weights: {run / 'model.safetensors'}" in res.stdout.replace("\n", "")

    # bare `mura predict` uses the fine-tuned run, never the backbone
    res = mura("predict", img, "-o", "p.csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "runs/ft" in res.stderr


@pytest.fixture
def hub(monkeypatch, tmp_path):
    yield from serving_hub(monkeypatch, tmp_path)


def test_push_and_train_from_the_hub(tmp_path, hub):
    """The pushed backbone serves `--weights hf-hub:org/name` (real HTTP against the fake Hub)."""
    from mura_cli.cli import main
    from mura_cli.engine.training.pretrain import pretrain
    from mura_cli.models.hub import load_backbone_weights

    data = _pngs(tmp_path / "xrays", 4)
    cfg = PretrainConfig(data=(str(data),), arch="test_resnet", size=32, epochs=1, batch_size=4, out=str(tmp_path))
    result = pretrain(cfg)
    with pytest.raises(SystemExit) as exc:
        main(["push", str(result.folder), "--repo", "org/xr-backbone", "--token", "t"])
    assert exc.value.code == 0
    assert {"model.safetensors", "config.json", "README.md", "metrics.csv"} <= set(hub.files("org/xr-backbone"))
    model = MuraNet("test_resnet")
    report = load_backbone_weights(model, "hf-hub:org/xr-backbone")
    assert report.loaded == len(model.backbone.state_dict()) and not report.missing
    ours = read_weights(result.folder / "model.safetensors")
    assert all(torch.equal(model.backbone.state_dict()[k], v) for k, v in ours.items())
