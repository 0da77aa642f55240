"""The resized 8-bit cache: written once, reused, rebuilt only for changed images, failures reported."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from mura_cli.data.cache import build_cache, cached_path, resize_for_cache
from mura_cli.data.index import build_index

from synth import make_mura_tree


def test_resize_for_cache_modes():
    px = np.linspace(0, 1, 200 * 100, dtype=np.float32).reshape(200, 100)
    assert resize_for_cache(px, 50, "shorter").shape == (100, 50)
    assert resize_for_cache(px, 50, "square").shape == (50, 50)
    assert resize_for_cache(px, 400, "shorter").shape == (200, 100)  # never enlarged
    assert resize_for_cache(px, 50, "shorter").dtype == np.uint8


def test_cache_reuse_and_rebuild(tmp_path):
    mura = make_mura_tree(tmp_path, patients_per_part=2, valid_patients=1)
    index = build_index(mura)
    paths = [r.path for r in index.rows]
    out = tmp_path / "out"
    calls = []
    first = build_cache(mura, paths, out, size=24, workers=2, on_progress=lambda d, t: calls.append((d, t)))
    assert first.written == len(paths) and first.reused == 0 and not first.failed
    assert calls[-1] == (len(paths), len(paths))
    im = Image.open(cached_path(first.folder, paths[0]))
    assert im.mode == "L" and min(im.size) == 24
    second = build_cache(mura, paths, out, size=24, workers=1)
    assert second.written == 0 and second.reused == len(paths)
    # change one source image: only that one is rebuilt
    src = mura / paths[0]
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(src)
    os.utime(src, ns=(1, 1))
    third = build_cache(mura, paths, out, size=24, workers=1)
    assert third.written == 1 and third.reused == len(paths) - 1


def test_cache_reports_bad_files_and_goes_on(tmp_path):
    mura = make_mura_tree(tmp_path, patients_per_part=2, valid_patients=1)
    paths = [r.path for r in build_index(mura).rows]
    (mura / paths[0]).write_bytes(b"not an image")
    res = build_cache(mura, paths, tmp_path / "out", size=24, workers=1)
    assert res.written == len(paths) - 1
    assert len(res.failed) == 1 and paths[0] in res.failed[0][0] and "Pillow" in res.failed[0][1]
