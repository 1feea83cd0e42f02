"""What the command groups share: argparse value types, the options of the streaming
detector and of the front-end, and :func:`defaults`, which reads the options' defaults from
the code that owns them so that each default is written once."""

from __future__ import annotations

import argparse
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

from kws.artifact import DetectorConfig
from kws.features import FRONTENDS
from kws.runtime import load_runner
from kws.training.config import TrainConfig

# Exit statuses of a command stopped by Ctrl-C (SIGINT) and by SIGTERM, as a shell reports them.
INTERRUPTED = 128 + 2
TERMINATED = 128 + 15

# What each command group adds its commands to (a string: argparse's class is generic for mypy only).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def defaults(owner: Callable[..., object]) -> dict[str, Any]:
    """The defaults of ``owner``'s parameters: a function's, or a dataclass's fields'."""
    return {
        name: p.default for name, p in inspect.signature(owner).parameters.items() if p.default is not p.empty
    }


# The name of the front-end a training run has unless told (FRONTENDS holds the very object).
DEFAULT_FRONTEND = next(name for name, c in FRONTENDS.items() if c is defaults(TrainConfig)["frontend"])


def keywords(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated words."""
    return tuple(w.strip() for w in text.split(",") if w.strip())


def finite(text: str, kind: type[int] | type[float] = float) -> int | float:
    """An argparse type: a finite number (any sign)."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def positive(kind: type[int] | type[float], allow_zero: bool = False) -> Callable[[str], int | float]:
    """An argparse type: a number above zero (or zero too)."""

    def parse(text: str) -> int | float:
        value = finite(text, kind)
        if value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(
                f"must be above zero{' or zero' if allow_zero else ''}, not {text}"
            )
        return value

    return parse


def probability(text: str) -> float:
    """An argparse type: a probability above 0 and at most 1."""
    value = positive(float)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be at most 1, not {text}")
    return float(value)


def dropout(text: str) -> float:
    """An argparse type: a dropout rate, from 0 to below 1."""
    value = positive(float, allow_zero=True)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be below 1, not {text}")
    return float(value)


def device(text: str) -> int | str:
    """An argparse type: an audio device's index, else part of its name."""
    return int(text) if text.isdigit() else text


def quiet_option(parser: argparse.ArgumentParser, help: str = "no progress on stderr") -> None:
    """``--quiet``: no progress (:mod:`kws.progress`), which otherwise goes to stderr even with
    ``--json`` (stdout keeps the result alone)."""
    parser.add_argument("--quiet", action="store_true", help=help)


def sources_option(parser: argparse.ArgumentParser, flag: str, help: str, metavar: str | None = None) -> None:
    """A repeatable option naming sources of recordings (folders or list files): [] unless given."""
    parser.add_argument(flag, type=Path, action="append", default=[], metavar=metavar, help=help)


def val_negatives_option(parser: argparse.ArgumentParser, instead: str) -> None:
    """``--val-negatives``: fixed validation negatives (train, tune); ``instead`` says what they
    replace for the command."""
    sources_option(
        parser,
        "--val-negatives",
        "a folder or .txt list of non-keyword speech that validates and tunes the thresholds, never "
        f"trained on (repeatable); {instead}",
        metavar="SOURCE",
    )


def frontend_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--frontend", choices=sorted(FRONTENDS), default=DEFAULT_FRONTEND, help=help)


def detector_options(parser: argparse.ArgumentParser) -> None:
    """The streaming detector's options (stream, listen): what is not given is the model's."""
    detector = DetectorConfig()
    parser.add_argument(
        "--model",
        type=Path,
        help="int8_step.tflite (stateful) or int8.tflite (windowed); default: the bundled LSTM step model",
    )
    parser.add_argument("--runtime", choices=["litert", "tflm"], default=defaults(load_runner)["runtime"])
    parser.add_argument(
        "--threshold",
        type=probability,
        help="smoothed probability a keyword must reach (default: the model's)",
    )
    parser.add_argument(
        "--smoothing",
        type=positive(float),
        help=f"seconds of posteriors averaged (default: the model's, else {detector.smoothing:g})",
    )
    parser.add_argument(
        "--refractory",
        type=positive(float, allow_zero=True),
        help=f"seconds of quiet after a detection (default: the model's, else {detector.refractory:g})",
    )
    streaming_arguments(parser, copies=detector.copies, reset_every=detector.reset_every, model_default=True)


def streaming_arguments(
    parser: argparse.ArgumentParser, *, copies: int, reset_every: int, model_default: bool = False
) -> None:
    """A step model's stateful streaming: how many copies, reset how often (``model_default``:
    left None unless given, the model's stored settings apply, else these)."""
    default = "the model's, else " if model_default else ""
    parser.add_argument(
        "--reset-every",
        type=positive(int, allow_zero=True),
        default=None if model_default else reset_every,
        help=f"stateful mode: reset each step-model copy every N frames (0: one copy, never reset; default {default}{reset_every})",
    )
    parser.add_argument(
        "--copies",
        type=int,
        choices=(1, 2),
        default=None if model_default else copies,
        help=f"stateful mode: 2 staggered copies (no word cut by a reset) or 1 (half the work; default {default}{copies})",
    )
