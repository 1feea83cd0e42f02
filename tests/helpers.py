"""Helpers the test modules share (plain functions, not fixtures)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile


def run_kws(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m kws ARGS`` in a subprocess, as a user runs it; its status, stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "kws", *args], capture_output=True, text=True, env=env, check=False
    )


def make_tar_gz(files: dict[str, bytes]) -> bytes:
    """A gzip-compressed tar holding ``files`` (name to content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
