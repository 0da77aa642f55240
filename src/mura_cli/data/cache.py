"""A resized 8-bit image cache, so training does not decode full-size radiographs every epoch.

Layout: ``<out>/cache/<mode>-<size>/<image path>.png`` plus ``manifest.json`` mapping each image path to
the source file's ``[mtime_ns, size]``. A later run rewrites only images whose source changed or whose cached
file is gone. ``mode`` is ``shorter`` (shorter side = size, aspect kept; never enlarged) or ``square``
(stretched to size x size, the MURA paper's input shape).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mura_cli.errors import DataError, MuraError
from mura_cli.utils import write_json

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class CacheResult:
    """What a cache build did: folder, images written and reused, and failures as (path, reason)."""

    folder: Path
    written: int
    reused: int
    failed: tuple[tuple[str, str], ...]


def cache_folder(out_dir: str | Path, size: int, mode: str) -> Path:
    return Path(out_dir) / "cache" / f"{mode}-{size}"


def cached_path(folder: Path, rel: str) -> Path:
    """Where the cached copy of image ``rel`` lives."""
    return folder / (rel + ".png")


def resize_for_cache(pixels: np.ndarray, size: int, mode: str) -> np.ndarray:
    """HxW float [0, 1] -> uint8 HxW: shorter side to ``size`` (never enlarged) or ``size`` x ``size``."""
    from PIL import Image as PILImage

    h, w = pixels.shape
    if mode == "square":
        new = (size, size)
    else:
        s = min(1.0, size / min(h, w))
        new = (max(1, round(w * s)), max(1, round(h * s)))
    im = PILImage.fromarray(pixels.astype(np.float32), mode="F")
    if new != (w, h):
        im = im.resize(new, PILImage.Resampling.LANCZOS)
    return np.clip(np.rint(np.asarray(im) * 255.0), 0, 255).astype(np.uint8)


def _cache_one(args: tuple[str, str, int, str]) -> tuple[str, str | None]:
    src, dst, size, mode = args
    from PIL import Image as PILImage

    from mura_cli.data.readers import read_image

    try:
        arr = resize_for_cache(read_image(src).pixels, size, mode)
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        tmp = dst + ".tmp.png"
        PILImage.fromarray(arr, mode="L").save(tmp, optimize=False, compress_level=1)
        os.replace(tmp, dst)
    except MuraError as exc:
        return src, str(exc)
    except OSError as exc:
        return src, f"{dst}: cannot write the cached image ({exc.strerror})"
    return src, None


def _stamp(p: Path) -> list[int]:
    st = p.stat()
    return [st.st_mtime_ns, st.st_size]


def build_cache(
    root: str | Path,
    paths: Sequence[str],
    out_dir: str | Path,
    *,
    size: int,
    mode: str = "shorter",
    workers: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
) -> CacheResult:
    """Write (or refresh) the cache for ``paths`` (relative to ``root``), with ``workers`` processes.

    Args:
        root: dataset root the paths are relative to.
        paths: image paths relative to ``root``.
        out_dir: the prepare output folder; the cache goes under ``cache/<mode>-<size>/``.
        size: target size in pixels.
        mode: ``shorter`` or ``square``.
        workers: processes to decode with.
        on_progress: called as ``on_progress(done, total)`` after each image.
    """
    root = Path(root)
    folder = cache_folder(out_dir, size, mode)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the cache folder ({exc.strerror}); choose --out elsewhere") from None
    manifest = load_manifest(folder)
    todo: list[tuple[str, str, int, str]] = []
    stamps: dict[str, list[int]] = {}
    failed: list[tuple[str, str]] = []
    for rel in paths:
        src = root / rel
        try:
            stamps[rel] = _stamp(src)
        except OSError:
            failed.append((rel, f"{src}: missing or unreadable"))
            continue
        if manifest.get(rel) != stamps[rel] or not cached_path(folder, rel).is_file():
            todo.append((str(src), str(cached_path(folder, rel)), size, mode))
    total = len(paths)
    reused = total - len(todo) - len(failed)
    done = reused + len(failed)
    if on_progress:
        on_progress(done, total)
    src_to_rel = {str(root / rel): rel for rel in paths}
    results: list[tuple[str, str | None]] = []
    if todo:
        if workers > 1 and len(todo) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for res in pool.map(_cache_one, todo, chunksize=max(1, min(64, len(todo) // (workers * 8) or 1))):
                    results.append(res)
                    done += 1
                    if on_progress:
                        on_progress(done, total)
        else:
            for item in todo:
                results.append(_cache_one(item))
                done += 1
                if on_progress:
                    on_progress(done, total)
    written = 0
    for src_key, err in results:
        rel = src_to_rel[src_key]
        if err is None:
            manifest[rel] = stamps[rel]
            written += 1
        else:
            manifest.pop(rel, None)
            failed.append((rel, err))
    write_json(folder / MANIFEST, manifest, indent=None)
    return CacheResult(folder=folder, written=written, reused=reused, failed=tuple(failed))


def load_manifest(folder: Path) -> dict[str, list[int]]:
    """The cache's manifest (empty when there is none)."""
    p = folder / MANIFEST
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except json.JSONDecodeError:
        return {}
