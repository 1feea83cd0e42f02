"""The ``kws`` command line: parses arguments and wires the pipeline modules together.

Problems the user can fix (a bad file, a missing folder) come out as one line on
stderr and exit status 1, never a traceback.

One module per group of commands, each with its options and handlers; :mod:`kws.cli.options`
holds what they share. Options take their defaults from the code that owns them (the typed
configs, named constants, function signatures); what needs TensorFlow is imported only when
its command runs, so ``kws --help`` and the runtime commands load none.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from types import FrameType

from kws import __version__
from kws.cli import data, detect, evaluate, firmware, train
from kws.cli.options import INTERRUPTED, TERMINATED
from kws.errors import KwsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kws", description="Keyword spotting for microcontrollers.")
    parser.add_argument("--version", action="version", version=f"kws {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # In the order `kws --help` lists them: the workflow's, not the modules'.
    for add in (
        data.add_data,
        data.add_features,
        train.add_train,
        evaluate.add_eval,
        detect.add_stream,
        detect.add_listen,
        evaluate.add_bench,
        firmware.add_export,
        firmware.add_firmware,
        detect.add_demo,
        train.add_tune,
    ):
        add(sub)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    print(f"kws: warning: {message}", file=sys.stderr)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so every command cleans up the same way."""


_terminated: list[int] = []  # set once SIGTERM arrives (a command may handle the interrupt itself)


def _terminate(signum: int, frame: FrameType | None) -> None:
    _terminated.append(signum)
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kws`` command; returns the exit status.

    Errors the user can fix print one line and give 1 (argument errors: 2); Ctrl-C gives
    130 and SIGTERM 143, after the same clean-up (temporary files removed, training's last
    checkpoint kept); a closed output pipe (``kws ... | head``) ends quietly with 141.
    """
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    _terminated.clear()
    try:
        with warnings.catch_warnings():  # restores the warning display when main() returns
            warnings.showwarning = _show_warning
            status = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return TERMINATED if _terminated else status
    except KwsError as e:
        print(f"kws: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if _terminated:
            print("kws: terminated", file=sys.stderr)
            return TERMINATED
        print("kws: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # Whoever read our output has gone: say nothing more, and stop Python's own complaint at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        # A file or folder the system refuses (permissions, a full disk...): one line naming it.
        print(f"kws: error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
