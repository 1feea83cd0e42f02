"""Helpers the test modules share (plain functions, not fixtures)."""

from __future__ import annotations

import subprocess
import sys


def run_kws(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m kws ARGS`` in a subprocess, as a user runs it; its status, stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "kws", *args], capture_output=True, text=True, env=env, check=False
    )
