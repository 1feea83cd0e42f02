"""Shared fixtures: the public speech data beside the project (never copied into it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("KWS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        # Fail, not skip: CI always has the data, and a skipped suite would pass silently.
        pytest.fail(f"shared data not found at {path}; set KWS_SHARED_DATA to the folder holding it")
    return path


@pytest.fixture(scope="session")
def speech_commands() -> Path:
    """The Speech Commands v0.02 subset in the official layout."""
    return _shared("speech_commands")


@pytest.fixture(scope="session")
def test12() -> Path:
    """The same test speakers in the canonical 12-class layout."""
    return _shared("speech_commands_test12")


@pytest.fixture(scope="session")
def fsdd() -> Path:
    """Free Spoken Digit Dataset recordings (8 kHz)."""
    return _shared("fsdd") / "recordings"
