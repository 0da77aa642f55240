"""Pin every direct dependency of mura-cli to its declared floor, so CI can test what pyproject promises.

    python3 .ci/lowest_constraints.py            # print a pip constraints file: name==floor, one a line
    python3 .ci/lowest_constraints.py --check    # in the environment under test: each installed version == floor

Direct dependencies are ``[project].dependencies`` plus the ``test``, ``onnx`` and ``pacs`` extras. Every one
must declare a ``>=`` floor that is a released version (``name==floor`` must install). torch and torchvision are the
exception: their floors would mean downloading an old multi-GB torch, so they are pinned to the pair installed
on this machine (the CI venv sees it through --system-site-packages) and the check skips them.
"""

from __future__ import annotations

import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
EXTRAS = ("test", "onnx", "pacs")
KEEP_INSTALLED = ("torch", "torchvision")


def floors() -> dict[str, str]:
    """``{name: floor}`` for every direct dependency; exits naming any that declares no ``>=`` floor."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in EXTRAS:
        reqs += project["optional-dependencies"][extra]
    out: dict[str, str] = {}
    missing = []
    for text in reqs:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        low = [s.version for s in req.specifier if s.operator == ">="]
        if len(low) != 1:
            missing.append(text)
            continue
        out[name] = low[0]
    if missing:
        sys.exit(f"error: no single >= floor for: {', '.join(missing)}; declare the oldest version that works")
    return out


def main() -> None:
    pins = floors()
    if "--check" in sys.argv[1:]:
        wrong = []
        for name, floor in sorted(pins.items()):
            if name in KEEP_INSTALLED:
                continue
            try:
                have = version(name)
            except PackageNotFoundError:
                have = "not installed"
            if have == "not installed" or Version(have) != Version(floor):
                wrong.append(f"{name}: {have}, floor {floor}")
        if wrong:
            sys.exit("error: not at the declared floor: " + "; ".join(wrong))
        print(
            f"ok: {len(pins) - len(KEEP_INSTALLED)} direct dependencies at their floors; torch {version('torch')}, "
            f"torchvision {version('torchvision')} as installed"
        )
        return
    for name, floor in sorted(pins.items()):
        pin = version(name) if name in KEEP_INSTALLED else floor
        print(f"{name}=={pin}")


if __name__ == "__main__":
    main()
