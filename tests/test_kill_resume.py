"""Runs get killed: ``mura train`` SIGKILLed mid-run and resumed ends where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from synth import MURA, make_mura_tree, mura

TRAIN = ("--arch", "test_resnet", "--weights", "none", "--size", "32", "--batch-size", "4", "--workers", "0",
         "--deterministic", "--early-stop", "0", "--epochs", "4")  # fmt: skip


def _epochs_done(run: Path) -> int:
    metrics = run / "metrics.csv"
    return max(0, len(metrics.read_text().splitlines()) - 1) if metrics.is_file() else 0


def _kill_after(args: list[str], cwd: Path, run: Path, epochs: int) -> None:
    """Start ``mura train``, SIGKILL it as soon as ``epochs`` epochs are saved (the next one is under way)."""
    env = {k: v for k, v in os.environ.items() if k != "MURA_MODEL"}
    proc = subprocess.Popen([MURA, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while _epochs_done(run) < epochs:
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "training too slow"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize(("killed_after", "precision"), [(1, "fp32"), (2, "fp32"), (2, "bf16")])
def test_sigkill_then_resume_ends_with_the_uninterrupted_weights(tmp_path, killed_after, precision):
    data = make_mura_tree(tmp_path / "data", patients_per_part=10, valid_patients=0)
    train = (*TRAIN, "--precision", precision)
    full = mura("train", "--data", data, *train, "--name", "full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    run = tmp_path / "runs" / "cut"
    _kill_after(["train", "--data", str(data), *train, "--name", "cut"], tmp_path, run, killed_after)
    assert _epochs_done(run) in (killed_after, killed_after + 1)  # the kill may land just after a save
    res = mura("train", "--resume", run, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert _epochs_done(run) == 4
    # --weights none trains with the random-init recipe: cosine schedule and a weight average, both resumed
    for name in ("last.safetensors", "last_average.safetensors", "model.safetensors"):
        a = load_file(str(tmp_path / "runs" / "full" / name))
        b = load_file(str(run / name))
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), name


@pytest.mark.slow
def test_predict_killed_midway_resumes_to_the_same_csv(tmp_path):
    """A real SIGKILL during ``mura predict``; ``--resume`` skips what the journal holds and ends with the CSV
    of an uninterrupted run (and the same errors CSV)."""
    from test_cli_usage import make_run

    from synth import make_studies

    data = make_studies(tmp_path / "xrays", 240)
    (data / "study000" / "broken.png").write_bytes(b"not a png" * 9)
    run = make_run(tmp_path / "run")
    args = ("predict", data, "--model", run, "--batch-size", "1", "--workers", "0")
    ref = mura(*args, "--out", tmp_path / "ref.csv", cwd=tmp_path)
    assert ref.returncode == 6, ref.stderr
    out = tmp_path / "out.csv"
    journal = tmp_path / "out.csv.partial.jsonl"
    proc = subprocess.Popen([MURA, *map(str, args), "--out", str(out)], cwd=tmp_path, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.is_file() and journal.read_text().count("\n") > 60:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "predict finished before it could be killed; give it more images"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    scored_before = journal.read_text().count('"kind": "frame"')
    assert 0 < scored_before < 240 and not out.exists()
    again = mura(*args, "--out", out, cwd=tmp_path)  # without --resume: one line saying what to do
    assert again.returncode == 2 and "--resume" in again.stderr.strip().splitlines()[-1]
    res = mura(*args, "--out", out, "--resume", cwd=tmp_path)
    assert res.returncode == 6, res.stderr
    assert "already scored" in res.stderr
    assert out.read_text() == (tmp_path / "ref.csv").read_text()
    assert (tmp_path / "out.errors.csv").read_text() == (tmp_path / "ref.errors.csv").read_text()
    assert not journal.exists()
