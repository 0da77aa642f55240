"""Shared fixtures: where the real radiographs live (``../shared/data`` next to the repository)."""

from __future__ import annotations

from pathlib import Path

import pytest

from synth import SHARED_DATA


@pytest.fixture
def shared_data() -> Path:
    """The shared real-data folder; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (../shared/data next to the repository)")
    return SHARED_DATA
