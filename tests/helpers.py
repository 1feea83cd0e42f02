"""Helpers the test modules share (plain functions, not fixtures)."""

from __future__ import annotations

import ctypes.util
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import pytest


def run_kws(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m kws ARGS`` in a subprocess, as a user runs it; its status, stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "kws", *args], capture_output=True, text=True, env=env, check=False
    )


def interruptible() -> None:
    """``preexec_fn`` of a process a test sends SIGINT: a suite started in the background (no
    job control) passes SIGINT on ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sleep_in_worker(sources: object, seconds: float) -> None:
    """A feature worker's task that takes ``seconds`` (:meth:`kws.inputs.Workers.run`'s form)."""
    time.sleep(seconds)


def make_tar_gz(files: dict[str, bytes]) -> bytes:
    """A gzip-compressed tar holding ``files`` (name to content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def need(
    package: str, *, program: str | None = None, library: str | None = None, path: str | None = None
) -> None:
    """Skip a test whose Debian ``package`` is missing, with a one-line reason naming it.

    ``program`` (on PATH), ``library`` (as ``ctypes.util.find_library`` names it) or
    ``path`` (a file the package installs) shows whether it is installed. ``.ci/run``
    installs every such package and sets ``KWS_REQUIRE_SYSTEM_PACKAGES=1``, which turns the
    skip into a failure there (:func:`skip_or_fail`).
    """
    if program is not None:
        what, found = program, shutil.which(program) is not None
    elif library is not None:
        what, found = f"lib{library}", ctypes.util.find_library(library) is not None
    else:
        what, found = str(path), path is not None and os.path.exists(path)
    if not found:
        skip_or_fail(f"needs Debian's {package} ({what} not found; .ci/run installs it)")


def skip_or_fail(message: str) -> None:
    """Skip on a developer's machine; fail where CI runs (``CI=true`` or .ci/run's
    ``KWS_REQUIRE_SYSTEM_PACKAGES=1``), where everything the tests need is installed."""
    if os.environ.get("KWS_REQUIRE_SYSTEM_PACKAGES") == "1" or os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
