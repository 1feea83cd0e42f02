"""C text for ``kws export``: literals that read back exactly, and the file templates filled in.

The fixed text of every generated file lives in ``kws/export/templates/`` with
``$name`` placeholders (:class:`string.Template`); this module writes what goes into them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib.resources import files
from string import Template

import numpy as np

TEMPLATES = files("kws.export") / "templates"


def c_float(value: float) -> str:
    """A float32 literal that reads back to exactly ``np.float32(value)`` (9 significant digits;
    ``INFINITY`` for infinity)."""
    if math.isinf(value):
        return "INFINITY" if value > 0 else "-INFINITY"
    text = f"{float(np.float32(value)):.9g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text + "f"


def c_double(value: float) -> str:
    """A double literal that reads back to exactly ``value`` (``INFINITY`` for infinity)."""
    if math.isinf(value):
        return "INFINITY" if value > 0 else "-INFINITY"
    return repr(float(value))


def c_int(value: int) -> str:
    """An integer for a macro: parenthesised when negative, so ``x - MACRO`` stays right."""
    return f"({value})" if value < 0 else str(value)


def c_string(text: str) -> str:
    """A C string literal of ``text`` (UTF-8; anything but printable ASCII as octal escapes)."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def c_items(items: Sequence[str], per_line: int = 8) -> str:
    """Array initialiser items, ``per_line`` a line, indented."""
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "    " + ",\n    ".join(lines)


def render(name: str, **fields: object) -> str:
    """The template ``templates/<name>`` with every placeholder filled (a missing one is a KeyError)."""
    return Template((TEMPLATES / name).read_text(encoding="utf-8")).substitute(fields)
