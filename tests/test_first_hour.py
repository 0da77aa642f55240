"""What a new user meets in the first hour, through the real ``mura`` executable: a broken install or a bug is one
line with its own exit code, Ctrl-C says how to go on, and the outputs left behind are consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synth import MURA, _radiograph, make_mura_tree, make_studies, mura, one_error_line

SRC = Path(__file__).resolve().parents[1] / "src"


def _shim(tmp_path: Path, message: str, exc: str = "RuntimeError") -> dict[str, str]:
    """An environment where ``import torchvision`` raises ``exc(message)``, as a torchvision built for another
    torch does (a package ahead of the real one on PYTHONPATH; mura's own code is the real one)."""
    shim = tmp_path / "shim" / "torchvision"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(f"raise {exc}({message!r})\n")
    path = os.pathsep.join([str(shim.parent), str(SRC), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path}


# ------------------------------------------------------------------------------------------ broken installs, bugs


@pytest.mark.slow
@pytest.mark.parametrize("args", [["archs"], ["train", "--data", "nowhere"]])
def test_torch_torchvision_mismatch_is_one_line_naming_the_fix(tmp_path, args):
    env = _shim(tmp_path, "operator torchvision::nms does not exist")
    res = mura(*args, cwd=tmp_path, env=env)
    line = one_error_line(res)
    assert res.returncode == 7, res.stderr
    assert "torchvision" in line and "do not match" in line and "operator torchvision::nms does not exist" in line
    assert "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu" in line


@pytest.mark.slow
def test_an_internal_error_is_one_line_with_its_own_exit_code_and_the_traceback_on_request(tmp_path):
    env = _shim(tmp_path, "something\nunexpected", exc="ValueError")
    res = mura("archs", cwd=tmp_path, env=env)
    assert res.returncode == 70, res.stderr
    assert one_error_line(res) == (
        "error: internal error: ValueError: something unexpected; rerun with MURA_DEBUG=1 for the traceback, "
        "and report it"
    )
    for extra_env, args in (({"MURA_DEBUG": "1"}, ["archs"]), ({}, ["--debug", "archs"])):
        res = mura(*args, cwd=tmp_path, env={**env, **extra_env})
        assert res.returncode == 70, res.stderr
        assert "Traceback (most recent call last)" in res.stderr and 'shim/torchvision/__init__.py"' in res.stderr
        assert res.stderr.strip().splitlines()[-1].startswith("error: internal error: ValueError: something")


@pytest.mark.slow
def test_pytest_collection_with_a_broken_torchvision_stops_with_one_line(tmp_path):
    env = {**os.environ, **_shim(tmp_path, "operator torchvision::nms does not exist")}
    tests = Path(__file__).parent
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests / "test_train.py")],
        cwd=tests.parent, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 7, res.stdout + res.stderr
    assert "do not match" in res.stdout and "pip install torch torchvision" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


# ------------------------------------------------------------------------------------------ Ctrl-C


def _interrupt_when(args: list[str], cwd: Path, ready) -> subprocess.CompletedProcess[str]:
    """Start ``mura args`` in its own process group, send SIGINT to the group (as Ctrl-C in a terminal does) once
    ``ready()`` holds, and return the finished process. The child gets SIGINT's default disposition back: a
    suite started in the background by a shell without job control (``.ci/run &``) inherits SIGINT ignored,
    and Python would keep ignoring it, as a terminal's Ctrl-C never reaches such a job either."""
    env = {k: v for k, v in os.environ.items() if k != "MURA_MODEL"}
    proc = subprocess.Popen(
        [MURA, *args], cwd=cwd, env={**env, "COLUMNS": "200"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 240
    try:
        while not ready():
            assert proc.poll() is None, f"ended before it could be interrupted: {proc.communicate()[1]}"
            assert time.monotonic() < deadline, "too slow to reach the point of interruption"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


TRAIN = ["--arch", "test_resnet", "--weights", "none", "--size", "32", "--batch-size", "2", "--workers", "0",
         "--early-stop", "0", "--epochs", "50"]  # fmt: skip


@pytest.mark.slow
def test_ctrl_c_in_train_after_an_epoch_names_the_resume_command_that_works(tmp_path):
    data = make_mura_tree(tmp_path / "data", patients_per_part=10, valid_patients=0)
    run = tmp_path / "runs" / "cut"
    res = _interrupt_when(
        ["train", "--data", str(data), *TRAIN, "--name", "cut"], tmp_path, lambda: (run / "metrics.csv").is_file()
    )
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == f"interrupted; resume with mura train --resume {Path('runs/cut')}"
    again = mura("train", "--resume", "runs/cut", "--epochs", "2", cwd=tmp_path)  # as typed, fewer epochs to end
    assert again.returncode == 0, again.stderr
    assert (run / "model.safetensors").is_file() and (run / "summary.json").is_file()


@pytest.mark.slow
def test_ctrl_c_in_train_before_any_epoch_leaves_no_half_run(tmp_path):
    data = make_mura_tree(tmp_path / "data", patients_per_part=10, valid_patients=0)
    run = tmp_path / "runs" / "early"
    args = ["train", "--data", str(data), *TRAIN, "--name", "early"]
    res = _interrupt_when(args, tmp_path, lambda: (run / "train_config.json").exists())
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    if (run / "metrics.csv").is_file():  # the first epoch was quicker than the signal: resumable
        assert last.startswith("interrupted; resume with mura train --resume")
    else:
        assert last == f"interrupted before the first epoch was saved; removed {Path('runs/early')}; nothing to resume"
        assert not run.exists()


@pytest.mark.slow
def test_ctrl_c_in_predict_names_the_same_command_with_resume(tmp_path):
    from test_cli_usage import make_run

    make_studies(tmp_path / "xrays", 300)
    make_run(tmp_path / "run")
    journal = tmp_path / "out.csv.partial.jsonl"
    args = ["predict", "xrays", "--model", "run", "--batch-size", "1", "--workers", "0", "--out", "out.csv"]
    res = _interrupt_when(args, tmp_path, lambda: journal.is_file() and journal.read_text().count("\n") > 30)
    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr
    hint = res.stderr.strip().splitlines()[-1]
    assert hint == "interrupted; resume with mura " + " ".join(args) + " --resume"
    assert not (tmp_path / "out.csv").exists()  # no half-written CSV
    again = mura(*hint.removeprefix("interrupted; resume with mura ").split(), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 101 and not journal.exists()


# ------------------------------------------------------------------------------------------ parts, localize


def _pngs(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(_radiograph(rng)).save(folder / f"scan{i}.png")
    return folder


@pytest.mark.slow
def test_unknown_part_is_said_once_and_written_empty_without_a_false_part_warning(tmp_path):
    from test_cli_usage import make_run

    make_run(tmp_path / "run", part="all", parts=["forearm", "hand", "humerus"])
    _pngs(tmp_path / "xrays", 4)
    res = mura("predict", "xrays", "--model", "run", "--workers", "0", "--images", "images.csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning:")]
    assert warnings == ["warning: part unknown for 4 images: pass --part (written as an empty part)"]
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[0].startswith("study,part,") and rows[1].split(",")[1] == ""
    assert all(r.split(",")[3] == "" for r in (tmp_path / "images.csv").read_text().splitlines()[1:])
    forced = mura("predict", "xrays", "--model", "run", "--part", "hand", "--out", "hand.csv", cwd=tmp_path)
    assert forced.returncode == 0 and "warning:" not in forced.stderr, forced.stderr


@pytest.mark.slow
def test_localize_on_one_bad_file_writes_nothing_and_says_so(tmp_path):
    from test_cli_usage import make_run

    make_run(tmp_path / "run")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    res = mura("localize", "bad.png", "--model", "run", "--overlay", "--workers", "0", cwd=tmp_path)
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        "error: no image could be scored: 1 input failed, listed with reasons in boxes.errors.csv; "
        "boxes.json not written"
    )
    assert not (tmp_path / "boxes.json").exists() and (tmp_path / "boxes.errors.csv").is_file()
    res = mura("predict", "bad.png", "--model", "run", "--workers", "0", cwd=tmp_path)
    assert res.returncode == 3 and not (tmp_path / "results.csv").exists(), res.stderr
    assert not (tmp_path / "results.csv.partial.jsonl").exists()


@pytest.mark.slow
def test_localize_gives_the_real_study_and_says_where_the_overlays_went(tmp_path):
    import json

    from test_cli_usage import make_run

    make_run(tmp_path / "run")
    data = make_mura_tree(tmp_path / "d", patients_per_part=1, valid_patients=0)
    res = mura("localize", data, "--model", "run", "--overlay", "--workers", "0", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "in overlays" in res.stdout
    boxes = json.loads((tmp_path / "boxes.json").read_text())["boxes"]
    pred = mura("predict", data, "--model", "run", "--workers", "0", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    studies = {ln.split(",")[0] for ln in (tmp_path / "results.csv").read_text().splitlines()[1:]}
    assert {b["study"] for b in boxes} == studies and len(studies) < len(boxes)
    assert all(Path(b["image"]).parent.name.startswith("study") and b["study"] != b["image"] for b in boxes)


# ------------------------------------------------------------------------------------------ after the demo


@pytest.mark.slow
def test_predict_right_after_the_demo_finds_the_demo_model(tmp_path):
    from test_cli_usage import make_run

    _pngs(tmp_path / "xrays", 2)
    res = mura("predict", "xrays", "--out", "results.csv", cwd=tmp_path)  # before any demo: says how to get one
    assert res.returncode == 4 and "mura demo" in one_error_line(res)
    make_run(tmp_path / "mura-demo" / "runs" / "demo")  # where `mura demo` leaves its model
    res = mura("predict", "xrays", "--out", "results.csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines()[0].startswith(f"model: {Path('mura-demo/runs/demo')} (trained by `mura demo`")
    make_run(tmp_path / "runs" / "mine")  # a run of one's own comes first
    res = mura("predict", "xrays", "--out", "again.csv", cwd=tmp_path)
    assert res.returncode == 0 and f"model: {Path('runs/mine')}" in res.stderr, res.stderr


@pytest.mark.slow
def test_the_default_demo_matches_its_reference_and_predict_then_works_as_typed(tmp_path):
    """The README's first two commands: `mura demo` (about 2 minutes on 2 cores) ends by matching the shipped
    reference, and `mura predict` in the same folder finds the demo's model."""
    res = mura("demo", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    assert "matches the reference" in res.stdout, res.stdout[-2000:]
    res = mura("predict", "mura-demo/data/MURA-v1.1/valid", "--out", "results.csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "model: mura-demo/runs/demo (trained by `mura demo`" in res.stderr
    assert len((tmp_path / "results.csv").read_text().splitlines()) > 1
