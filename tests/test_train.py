"""Training on a synthetic MURA tree: run folder, determinism, resume, errors, and DDP with 2 CPU processes."""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from mura_cli.config import TrainConfig, TransformConfig
from mura_cli.engine.training.train import fit
from mura_cli.engine.training.train_data import part_weights
from mura_cli.errors import DataError, UsageError
from mura_cli.models.checkpoint import ModelConfig, load_run_model

from synth import make_mura_tree

TINY = {
    "arch": "test_resnet",
    "weights": "none",
    "batch_size": 4,
    "workers": 0,
    "epochs": 1,
    "transform": TransformConfig(size=32),
}
TINY_FLAGS = shlex.split("--arch test_resnet --weights none --epochs 1 --size 32 --batch-size 4 --workers 0")


@pytest.fixture(scope="module")
def mura(tmp_path_factory):
    return make_mura_tree(tmp_path_factory.mktemp("data"), patients_per_part=8, valid_patients=1)


def _cfg(mura, tmp_path, **kw):
    return TrainConfig(**{"data": str(mura), "out": str(tmp_path / "runs"), **TINY, **kw})


def test_fit_writes_complete_run_folder(mura, tmp_path):
    res = fit(_cfg(mura, tmp_path, part="XR_ELBOW", epochs=2))
    run = res.run_dir
    assert run == tmp_path / "runs" / "test_resnet-elbow"
    for name in (
        "train_config.json",
        "model.safetensors",
        "config.json",
        "README.md",
        "metrics.csv",
        "curves.png",
        "last.safetensors",
        "last_optimizer.safetensors",
        "last_state.json",
        "summary.json",
    ):
        assert (run / name).is_file(), name
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["arch"] == "test_resnet" and cfg["part"] == "elbow" and cfg["threshold"] == 0.5
    assert cfg["input_size"] == [3, 32, 32] and cfg["mean"] == [0.5, 0.5, 0.5]  # test_resnet's pretrained config
    assert list(cfg) == [
        *("arch", "timm_name", "num_classes", "label_names", "input_size", "mean", "std", "transform", "dropout"),
        *("part", "parts", "threshold", "weights", "metrics", "library", "version", "schema"),
    ]
    assert cfg["schema"] == 1 and cfg["metrics"]["epoch"] in (1, 2)
    assert ModelConfig.from_json(run).transform == TransformConfig(size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    summary = json.loads((run / "summary.json").read_text())
    assert list(summary)[:3] == ["run", "arch", "part"] and summary["best_epoch"] == cfg["metrics"]["epoch"]
    state = json.loads((run / "last_state.json").read_text())
    assert list(state) == ["epoch", "best_loss", "best_epoch", "bad_epochs", "scheduler", "optimizer", "history"]
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "tune_loss", "tune_kappa", "tune_auroc"} <= set(rows[0])
    model, mcfg = load_run_model(run)
    assert model.arch == "test_resnet" and mcfg.parts == ("elbow",)
    assert "| epoch |" in (run / "README.md").read_text()
    # a second run with the default name does not overwrite the first
    assert fit(_cfg(mura, tmp_path, part="elbow")).run_dir.name == "test_resnet-elbow2"


def test_named_run_is_never_overwritten(mura, tmp_path):
    fit(_cfg(mura, tmp_path, name="exp"))
    with pytest.raises(UsageError, match="exist-ok"):
        fit(_cfg(mura, tmp_path, name="exp"))
    fit(_cfg(mura, tmp_path, name="exp", exist_ok=True))


def test_deterministic_runs_give_identical_weights(mura, tmp_path):
    a = fit(_cfg(mura, tmp_path, name="a", deterministic=True, epochs=2))
    b = fit(_cfg(mura, tmp_path, name="b", deterministic=True, epochs=2))
    wa, wb = load_file(a.run_dir / "last.safetensors"), load_file(b.run_dir / "last.safetensors")
    assert wa.keys() == wb.keys()
    assert all((wa[k] == wb[k]).all() for k in wa)


def test_resume_continues_where_it_stopped(mura, tmp_path):
    full = fit(_cfg(mura, tmp_path, name="full", deterministic=True, epochs=2))
    part1 = fit(_cfg(mura, tmp_path, name="part", deterministic=True, epochs=1))
    part2 = fit(TrainConfig(), resume=part1.run_dir, epochs=2)
    assert [e.epoch for e in part2.epochs] == [1, 2]
    wf, wp = load_file(full.run_dir / "last.safetensors"), load_file(part2.run_dir / "last.safetensors")
    assert all((wf[k] == wp[k]).all() for k in wf)


def test_part_and_data_errors(mura, tmp_path):
    with pytest.raises(UsageError, match="elbow, wrist"):
        fit(_cfg(mura, tmp_path, part="hip"))
    with pytest.raises(DataError):
        fit(_cfg(mura, tmp_path, data=str(tmp_path / "nothing")))


def test_part_weights_follow_the_paper():
    from mura_cli.data.index import IndexRow

    rows = [IndexRow(f"{i}", "train", "hand", "p", "s", int(i < 3)) for i in range(10)]
    w_normal, w_abnormal = part_weights(rows, weighted=True)["hand"]
    assert (w_normal, w_abnormal) == pytest.approx((0.3, 0.7))  # A/(A+N), N/(A+N)
    assert part_weights(rows, weighted=False)["hand"] == (0.5, 0.5)


def test_cli_train_end_to_end(mura, tmp_path, capsys):
    from mura_cli.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(mura), *TINY_FLAGS, "--part", "wrist", "--out", str(tmp_path / "r")])
    out = capsys.readouterr()
    assert exc.value.code == 0, out.err
    assert "random initialization" in out.err
    assert "best epoch 1" in out.out and (tmp_path / "r" / "test_resnet-wrist" / "model.safetensors").is_file()


@pytest.mark.slow
def test_ddp_two_cpu_processes(mura, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--standalone",
        "-m",
        "mura_cli",
        "train",
        "--data",
        str(mura),
        *TINY_FLAGS,
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "runs"),
        "--name",
        "ddp",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    assert (run / "model.safetensors").is_file() and (run / "metrics.csv").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert len(summary["samples_per_rank"]) == 2 and min(summary["samples_per_rank"]) > 0
    assert summary["rank_overlap"] == 0  # the two ranks saw different images
    assert not list(Path(tmp_path / "runs").glob("ddp?*"))  # only rank 0 wrote
