"""Every file the tool writes goes through a temporary file in the same folder and a rename."""

from __future__ import annotations

import pytest

from mura_cli.utils import atomic_path, write_csv, write_json


def test_an_interrupted_write_leaves_neither_a_half_file_nor_debris(tmp_path):
    target = tmp_path / "results.csv"
    target.write_text("what the user had\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half a fi")
        raise KeyboardInterrupt
    assert target.read_text() == "what the user had\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_writes_land_whole_with_ordinary_permissions(tmp_path):
    out = write_csv(tmp_path / "sub" / "r.csv", [{"a": 1, "b": "x,y"}])
    assert out.read_text() == 'a,b\n1,"x,y"\n'
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert write_json(tmp_path / "c.json", {"k": float("nan")}).read_text().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "sub"]


def test_the_temporary_file_keeps_the_suffix_for_format_sniffing(tmp_path):
    with atomic_path(tmp_path / "overlay.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.name.startswith(".overlay.png.")
        tmp.write_bytes(b"x")
    assert (tmp_path / "overlay.png").read_bytes() == b"x"
