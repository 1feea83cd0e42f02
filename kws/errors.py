"""Errors that the CLI reports as one line, without a traceback, and the install hint they give."""

from __future__ import annotations

import shlex
from pathlib import Path


class KwsError(Exception):
    """Base class: a problem the user can fix (bad file, bad option, bad model)."""


class AudioError(KwsError):
    """An audio file that cannot be read: missing, empty, truncated, not audio."""


class DataError(KwsError):
    """A data set folder that does not have a layout kws can read."""


class DownloadError(KwsError):
    """A download that failed, did not match its checksum, or held an unsafe archive."""


def install_command(extra: str) -> str:
    """The pip command that adds ``extra`` (``"train"``, ``"dev"``) to this kws, the way it was
    installed: from a clone (``pip install -e '.[train]'``), a local folder or wheel file, or
    an index (``pip install 'kws[train]'``). A hint that names the index fails a clone's user."""
    import json
    from importlib import metadata
    from urllib.parse import unquote, urlparse

    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file():  # this package is a source tree's (editable or run in place)
        return pip_install(extra, root, editable=True)
    try:
        recorded = metadata.distribution("kws").read_text("direct_url.json")  # PEP 610
    except metadata.PackageNotFoundError:
        recorded = None
    url = urlparse(json.loads(recorded).get("url", "")) if recorded else None
    return pip_install(extra, Path(unquote(url.path)) if url and url.scheme == "file" else None)


def pip_install(extra: str, source: Path | None, *, editable: bool = False) -> str:
    """``pip install`` of kws with ``extra`` from ``source`` (a folder or a wheel file, written
    relative to the working folder when inside it; None: the package index)."""
    if source is None:
        return f"pip install {shlex.quote(f'kws[{extra}]')}"
    cwd = Path.cwd()
    where = str(source)
    if source.is_relative_to(cwd):
        inside = source.relative_to(cwd)
        where = "." if inside == Path() else f"./{inside}"  # "./": pip looks a bare word up on the index

    return f"pip install {'-e ' if editable else ''}{shlex.quote(f'{where}[{extra}]')}"
