"""Small helpers (files, JSON/CSV, devices, hashing); of the rest of the package they import only its errors."""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import random
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mura_cli.errors import MuraError, UsageError


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (when imported) torch with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.manual_seed(seed)


def resolve_device(spec: str = "auto") -> str:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N``/``mps`` into a device string that exists on this machine.

    ``cpu``, and ``auto`` on a machine without a GPU driver, are answered without importing torch (which takes
    seconds), so ONNX Runtime can serve without it.
    """
    spec = (spec or "auto").lower()
    if spec == "cpu" or (spec == "auto" and not _gpu_driver_present()):
        return "cpu"
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {spec}: no CUDA device is visible here; use --device cpu")
    if spec == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: MPS is not available here; use --device cpu")
    if spec not in {"cpu", "mps"} and not spec.startswith("cuda"):
        raise UsageError(f"--device {spec}: expected auto, cpu, cuda, cuda:N or mps")
    return spec


def _gpu_driver_present() -> bool:
    """False only where no CUDA or ROCm device can exist: Linux without the NVIDIA or AMD kernel driver, or macOS
    (``auto`` never picks MPS). Elsewhere torch is asked."""
    if sys.platform == "darwin":
        return False
    if not sys.platform.startswith("linux"):
        return True
    driver = Path("/proc/driver/nvidia/version").exists() or Path("/dev/kfd").exists()
    return driver or bool(glob.glob("/dev/nvidia[0-9]*"))


def default_workers() -> int:
    """Worker processes to use by default: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def is_writable_dir(path: Path) -> bool:
    """True if ``path`` (or its nearest existing parent) accepts new files and is not marked read-only.

    A folder with no write bit for anyone counts as read-only even for root (shared data mounts).
    """
    p = Path(path)
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    return os.access(p, os.W_OK) and bool(p.stat().st_mode & 0o222)


def sha256_files(paths: Sequence[str | Path]) -> str:
    """One SHA-256 over the bytes of ``paths`` in order, read in 1 MiB chunks."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def hash_id(value: str, salt: str) -> str:
    """A salted SHA-256 of an identifier (``sha256:`` + 24 hex digits): stable for one salt, not reversible."""
    import hashlib

    return "sha256:" + hashlib.sha256(f"{salt}\x00{value}".encode()).hexdigest()[:24]


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 image"``, ``"2 images"``, ``"1,234 studies"`` (pass ``plural_form`` when it is not noun + s)."""
    return f"{n:,} {noun if n == 1 else plural_form or noun + 's'}"


STDOUT = "-"
"""The output name that means standard output (``--out -``)."""


def is_stdout(path: str | Path | None) -> bool:
    """Whether an output path is :data:`STDOUT`."""
    return path is not None and str(path) == STDOUT


def ensure_new(path: str | Path | None, overwrite: bool) -> None:
    """Refuse to replace an existing output unless ``overwrite``; nothing the user had is lost silently."""
    if path is not None and not is_stdout(path) and Path(path).exists() and not overwrite:
        raise UsageError(f"{path}: exists; choose another name or pass --overwrite")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write to; renamed onto ``path`` when the block ends without error.

    An interrupted write never leaves a half-written file under the final name: the temporary one (a hidden
    ``.NAME.XXXX.tmp.SUFFIX``, so format sniffing by suffix still works) is removed on any exception.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=f".tmp{out.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp makes it private; outputs are ordinary files
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, or to standard output when ``path`` is ``-``."""
    if is_stdout(path):
        sys.stdout.write(text)
        sys.stdout.flush()
        return Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data: Any, *, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON (non-JSON values through ``str``) to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=indent, default=str) + "\n")


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], header: bool = True) -> Path:
    """Write dict rows as CSV with ``\\n`` line endings (columns from the first row), atomically, or to standard
    output when ``path`` is ``-``; an empty list gives an empty file."""
    buffer = io.StringIO()
    if rows:
        w = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        if header:
            w.writeheader()
        w.writerows(rows)
    if is_stdout(path):
        return write_text(path, buffer.getvalue())
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        f.write(buffer.getvalue())
    return Path(path)


def read_json(
    path: str | Path,
    what: str,
    *,
    error: type[MuraError] = UsageError,
    missing: str = "{path}: {what} not found",
    invalid: str = "{path}: not valid JSON ({msg} at line {line}); fix the file",
    not_object: str = "{path}: expected a JSON object of {what}",
) -> dict[str, Any]:
    """Read a JSON object from ``path``, raising ``error`` with a message that names the file.

    The messages are templates with the fields ``path``, ``folder`` (its parent), ``what``, and for ``invalid``
    the parser's ``msg`` and ``line``.
    """
    p = Path(path)
    fields = {"path": p, "folder": p.parent, "what": what}
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise error(missing.format(**fields)) from None
    except json.JSONDecodeError as exc:
        raise error(invalid.format(**fields, msg=exc.msg, line=exc.lineno)) from None
    if not isinstance(data, dict):
        raise error(not_object.format(**fields))
    return data


def short_error(exc: BaseException, limit: int = 200) -> str:
    """An exception as one line of at most ``limit`` characters, without ``[Errno N]`` prefixes."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    msg = re.sub(r"\[Errno -?\d+\]\s*", "", msg)  # "[Errno 111] Connection refused" -> "Connection refused"
    return msg[:limit] + ("..." if len(msg) > limit else "")


CACHE_ENV = "MURA_CACHE"
"""Where mura keeps what it can rebuild (the demo set and model of the bare ``mura benchmark``)."""


def cache_dir() -> Path:
    """``$MURA_CACHE``, else ``$XDG_CACHE_HOME/mura-cli``, else ``~/.cache/mura-cli``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mura-cli"
