"""Shared fixtures: where the real radiographs live (``../shared/data`` next to the repository)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mura_cli.errors import diagnose

from synth import SHARED_DATA


def pytest_exception_interact(node: pytest.Item | pytest.Collector, call: pytest.CallInfo[None], report: object):
    """A broken install (torch and torchvision that do not match) stops the session with one line naming the fix,
    instead of one collection traceback per test module."""
    problem = diagnose(call.excinfo.value) if call.excinfo is not None else None
    if problem is not None:
        pytest.exit(f"error: {problem}", returncode=problem.exit_code)


@pytest.fixture
def shared_data() -> Path:
    """The shared real-data folder; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (../shared/data next to the repository)")
    return SHARED_DATA
