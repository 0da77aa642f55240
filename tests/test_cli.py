"""The ``mura`` command line, driven through its real entry point (errors mapped to exit codes there)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mura_cli import __version__
from mura_cli.cli import main

from synth import SHARED_DATA as SHARED
from synth import make_fracatlas, make_mura_tree


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_help_lists_commands(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "prepare" in out
    code, out2, _ = run(capsys, "-h")
    assert code == 0 and out2 == out


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and __version__ in out


def test_module_entry_point():
    res = subprocess.run([sys.executable, "-m", "mura_cli", "--version"], capture_output=True, text=True, check=False)
    assert res.returncode == 0 and __version__ in res.stdout


def test_prepare_mura_tree(capsys, tmp_path):
    make_mura_tree(tmp_path)
    code, out, err = run(capsys, "prepare", tmp_path, "--out", tmp_path / "ix")
    assert code == 0, err
    assert "elbow" in out and "wrist" in out and "total" in out
    assert (tmp_path / "ix" / "index.csv").is_file() and (tmp_path / "ix" / "summary.json").is_file()


def test_prepare_default_out_next_to_data(capsys, tmp_path, monkeypatch):
    """The default index goes to ./.mura/<name> in the working folder, never inside a writable dataset."""
    mura = make_mura_tree(tmp_path / "ds")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, out, err = run(capsys, "prepare", mura)
    assert code == 0, err
    assert not (mura / ".mura").exists()
    assert (work / ".mura" / "ds-MURA-v1.1" / "index.csv").is_file()
    assert ".mura/ds-MURA-v1.1/index.csv" in out


def test_prepare_read_only_data_falls_back_to_cwd(capsys, tmp_path, monkeypatch):
    mura = make_mura_tree(tmp_path / "ro")
    mura.chmod(0o555)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    try:
        code, _, err = run(capsys, "prepare", mura)
    finally:
        mura.chmod(0o755)
    assert code == 0, err
    assert not (mura / ".mura").exists()
    assert (work / ".mura" / "ro-MURA-v1.1" / "index.csv").is_file()


def test_prepare_fracatlas_reports_defects(capsys, tmp_path):
    root = make_fracatlas(tmp_path / "fa")
    code, out, err = run(capsys, "prepare", root, "--out", tmp_path / "ix", "--cache", "32")
    assert code == 0, err
    for kind in ("truncated", "exif_rotated", "label_disagrees", "missing_file"):
        assert kind in out
    assert "written 10" in out


def test_prepare_bad_root_is_one_line_error(capsys, tmp_path):
    code, out, err = run(capsys, "prepare", tmp_path / "nowhere")
    assert code == 3
    assert "nowhere" in err and "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_prepare_bad_option_is_usage_error(capsys, tmp_path):
    make_mura_tree(tmp_path)
    code, _, err = run(capsys, "prepare", tmp_path, "--tune-fraction", "2")
    assert code == 2 and "tune-fraction" in err


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")
@pytest.mark.parametrize(
    ("folder", "studies", "images"),
    [
        ("mura-sample/MURA-v1.1", "10 studies", "10 images"),
        ("mura-humerus-64/MURA-v1.1", "558 studies", "1,132 images"),
    ],
)
def test_prepare_real_mura(capsys, tmp_path, folder, studies, images):
    code, out, err = run(capsys, "prepare", SHARED / folder, "--out", tmp_path / "ix")
    assert code == 0, err
    assert studies in out and images in out
