"""Atomic file writing (a reader sees the old file or the complete new one, never half) and JSON reading."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kws.errors import KwsError

# The process's umask, read once: os.umask() can only read it by setting it, which is not
# safe while other threads create files.
UMASK = os.umask(0o022)
os.umask(UMASK)


def cache_dir() -> Path:
    """Where kws keeps what it builds or decodes once (TFLM objects, extracted trees, decoded
    images): ``$KWS_CACHE_DIR`` or ``~/.cache/kws``."""
    return Path(os.environ.get("KWS_CACHE_DIR") or Path.home() / ".cache" / "kws")


def writable_file(target: str | os.PathLike[str]) -> Path:
    """``target`` as a Path, its folder created: a :class:`KwsError` (one line) if it is
    a folder or its folder cannot be made. Call it before long work whose result goes there."""
    target = Path(target)
    if target.is_dir():
        raise KwsError(f"{target}: is a folder; give a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise KwsError(f"{target}: cannot write there (a file stands where its folder should be)") from None
    except OSError as e:
        raise KwsError(f"{target}: cannot write there ({e.strerror})") from None
    return target


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` on success.

    Parameters
    ----------
    target : path
        The file to create or replace.
    suffix : str
        Ending of the temporary name, for writers that choose the format by extension
        (Keras saves HDF5 only to a name ending in ``.h5``).

    The temporary file lives in the same folder, so the final ``os.replace`` is an
    atomic rename on the same file system. On any exception it is removed and
    ``target`` is left untouched.
    """
    target = writable_file(target)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + suffix, dir=target.parent)
    except OSError as e:
        raise KwsError(f"{target}: cannot write there ({e.strerror})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        tmp.chmod(0o666 & ~UMASK)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    write_bytes_atomic(target, text.encode("utf-8"))


def parse_json_object(text: str, what: str, error: type[KwsError]) -> dict[str, Any]:
    """Parse ``text`` as a JSON object, raising ``error`` with a one-line message naming ``what``."""
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{what} is not valid JSON: {e}") from None
    if not isinstance(d, dict):
        raise error(f"{what} must be a JSON object")
    return d
