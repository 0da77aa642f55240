"""No pickle is ever loaded: planted malicious pickles are refused and never run."""

from __future__ import annotations

import json
import pickle

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
