"""Progress of the long stages of ``kws`` commands, on stderr so that stdout keeps the result
(``--json`` stays parseable): a bar on a terminal, one line a stage anywhere else (a log, CI,
a pipe), where a redrawn bar would leave a trail of ``\\r``.

Every bar and progress line of the package goes through here (no other module imports
tqdm), so that every command behaves alike and ``enabled=False`` (``--quiet``) silences it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sized
from typing import Any, TypeAlias

from tqdm import tqdm

# What bar() returns, for annotations elsewhere.
Bar: TypeAlias = tqdm


def on_terminal() -> bool:
    """Whether stderr is a terminal, asked at each call: stderr may be replaced meanwhile
    (pytest's capture, a caller's redirection)."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def stage(desc: str, enabled: bool = True) -> None:
    """One line on stderr for a stage with nothing to count, written by tqdm so that it lands
    above an active bar instead of through it."""
    if enabled:
        tqdm.write(desc, file=sys.stderr)


def bar(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    total: int | None = None,
    enabled: bool = True,
    **tqdm_options: Any,
) -> Bar:
    """A tqdm bar on stderr where stderr is a terminal. Elsewhere, when ``enabled``, one line for
    the stage (``desc`` and the count, when known) and a disabled bar, so that callers iterate,
    ``update``, ``set_postfix`` and ``with`` it the same way either way."""
    terminal = enabled and on_terminal()
    if enabled and not terminal:
        stage(_line(desc, iterable, total, tqdm_options))
    return tqdm(iterable, desc=desc, total=total, disable=not terminal, file=sys.stderr, **tqdm_options)


def _line(desc: str, iterable: Iterable[Any] | None, total: int | None, options: dict[str, Any]) -> str:
    """``desc: <count> <unit>``, the count in tqdm's units (scaled as its bar would show it)."""
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    if total is None:
        return desc
    unit = str(options.get("unit", "it")).strip()
    if options.get("unit_scale") is True:
        return f"{desc}: {tqdm.format_sizeof(total, unit, options.get('unit_divisor', 1000))}"
    return f"{desc}: {total} {unit}"
