"""No pickle is ever loaded: planted malicious pickles are refused and never run."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from synth import make_mura_tree, mura, one_error_line


class _Plant:
    """Unpickling this would create ``path``: the proof that a pickle ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil(path, marker) -> None:
    path.write_bytes(pickle.dumps(_Plant(str(marker))))


@pytest.mark.slow
def test_a_pickle_posing_as_run_weights_is_refused_untouched(tmp_path):
    data = make_mura_tree(tmp_path / "d", patients_per_part=1, valid_patients=0, parts=("XR_HAND",))
    marker = tmp_path / "pwned"
    run = tmp_path / "runs" / "evil"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"arch": "test_resnet"}))
    (run / "summary.json").write_text("{}")
    _evil(run / "model.safetensors", marker)
    res = mura("predict", data, "--model", run, "--out", "r.csv", "--workers", "0", cwd=tmp_path)
    assert res.returncode == 4 and "safetensors" in one_error_line(res)
    assert not marker.exists()
    (run / "model.safetensors").unlink()
    _evil(run / "pytorch_model.bin", marker)
    res = mura("predict", data, "--model", run, "--out", "r.csv", "--workers", "0", cwd=tmp_path)
    assert res.returncode == 4 and not marker.exists()
    _evil(tmp_path / "weights.pt", marker)
    train_data = make_mura_tree(tmp_path / "t", patients_per_part=6, valid_patients=0)
    res = mura("train", "--data", train_data, "--weights", tmp_path / "weights.pt", "--arch", "test_resnet",
               cwd=tmp_path)  # fmt: skip
    assert res.returncode == 4 and "pickled weights are never loaded" in one_error_line(res)
    assert not marker.exists()


@pytest.mark.slow
def test_hash_ids_replaces_dicom_study_uids_with_a_salted_hash(tmp_path):
    import csv

    import pydicom
    from pydicom.data import get_testdata_file

    from mura_cli.utils import hash_id

    src = get_testdata_file("CT_small.dcm", download=False)
    uid = str(pydicom.dcmread(src).StudyInstanceUID)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "scan.dcm").write_bytes(Path(src).read_bytes())
    run = tmp_path / "run"
    run.mkdir()
    import torch

    from mura_cli.config import TransformConfig
    from mura_cli.models.checkpoint import ModelConfig, save_run_model
    from mura_cli.models.registry import MuraNet

    torch.manual_seed(0)
    save_run_model(MuraNet("test_resnet"), run, ModelConfig(arch="test_resnet", transform=TransformConfig(size=32)))
    res = mura("predict", "in", "--model", run, "--hash-ids", "--out", "r.csv", "--workers", "0", cwd=tmp_path)
    assert res.returncode == 2 and "MURA_SALT" in one_error_line(res)
    res = mura("predict", "in", "--model", run, "--hash-ids", "--out", "r.csv", "--workers", "0", cwd=tmp_path,
               env={"MURA_SALT": "s3cret"})  # fmt: skip
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "r.csv").read_text()
    assert uid not in text
    assert next(csv.DictReader(text.splitlines()))["study"] == hash_id(uid, "s3cret")


@pytest.mark.parametrize("path", ["../../etc/passwd.png", "/abs/../../x.dcm", "a/../../..", "..", "./.hidden/.png"])
def test_overlay_names_never_leave_the_overlay_folder(tmp_path, path):
    from mura_cli.engine.serving.sinks import overlay_name

    name = overlay_name(path, 0)
    assert "/" not in name and "\\" not in name and not name.startswith(".") and name.endswith("_cam.png")
    assert (tmp_path / name).resolve().parent == tmp_path.resolve()
