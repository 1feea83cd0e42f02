"""``kws export`` and ``kws firmware``: a model as C for a microcontroller, and that C measured
on an emulated Cortex-M4F."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from kws.board import BOARD, BoardError, format_report, measure, missing_tools, tflm_tree
from kws.cli.options import Subcommands, defaults, positive, quiet_option, streaming_arguments
from kws.stream import FIRMWARE_COPIES, FIRMWARE_RESET_EVERY


def add_export(sub: Subcommands) -> None:
    exp = sub.add_parser("export", help="write the model, C front-end and TFLM glue for a microcontroller")
    exp.add_argument(
        "--model",
        type=Path,
        help="int8 .tflite from kws train: a step model streams stateful, a clip model windowed "
        "(default: the bundled LSTM step model)",
    )
    exp.add_argument("--out", type=Path, required=True, help="folder to write into")
    streaming_arguments(exp, copies=FIRMWARE_COPIES, reset_every=FIRMWARE_RESET_EVERY)
    exp.set_defaults(func=cmd_export)


def add_firmware(sub: Subcommands) -> None:
    default = defaults(measure)
    fw = sub.add_parser(
        "firmware",
        help="build the export for an emulated Cortex-M4F (QEMU mps2-an386), run it, count instructions",
        description="Export a model, build it with TFLM and CMSIS-NN for QEMU's mps2-an386 board and for "
        "this host, run both on clips and a stream, and report instructions per frame and per invoke, "
        "flash, RAM and arena, and whether the board matches the host build and kws in Python. Needs "
        "gcc-arm-none-eabi, libnewlib-arm-none-eabi, libstdc++-arm-none-eabi-newlib and qemu-system-arm; "
        "TFLM's objects are cached in $KWS_CACHE_DIR (default ~/.cache/kws).",
    )
    fw.add_argument("--model", type=Path, help="int8 .tflite (default: the bundled LSTM step model)")
    fw.add_argument(
        "--tflm", help="TFLM source tree with its make downloads, or its .tar.gz (default: $KWS_TFLM)"
    )
    fw.add_argument("--data", type=Path, required=True, help="Speech Commands folder or 12-class test set")
    fw.add_argument(
        "--clips", type=positive(int), default=default["clips"], help="test clips classified on the board"
    )
    fw.add_argument(
        "--minutes", type=positive(float), default=default["minutes"], help="length of the test stream"
    )
    fw.add_argument("--json", action="store_true", help="one JSON object with every figure")
    streaming_arguments(fw, copies=FIRMWARE_COPIES, reset_every=FIRMWARE_RESET_EVERY)
    quiet_option(fw)
    fw.set_defaults(func=cmd_firmware)


def cmd_export(args: argparse.Namespace) -> int:
    from kws.bundled import STREAMING_VARIANT, bundled_model
    from kws.export import export, format_summary

    model = args.model or bundled_model(variant=STREAMING_VARIANT)
    print(format_summary(export(model, args.out, copies=args.copies, reset_every=args.reset_every)))
    return 0


def cmd_firmware(args: argparse.Namespace) -> int:
    from kws.bundled import STREAMING_VARIANT, bundled_model

    tflm = args.tflm or os.environ.get("KWS_TFLM")
    if not tflm:
        raise BoardError("kws firmware needs TFLM's sources: --tflm DIR_OR_ARCHIVE (or $KWS_TFLM)")
    missing = missing_tools(BOARD, qemu=True)
    if missing:
        raise BoardError(f"kws firmware needs the Cortex-M toolchain and QEMU: install {' '.join(missing)}")
    model = args.model or bundled_model(variant=STREAMING_VARIANT)
    with tempfile.TemporaryDirectory(prefix="kws-firmware-") as work:
        report = measure(
            model,
            tflm_tree(tflm),
            args.data,
            Path(work),
            clips=args.clips,
            minutes=args.minutes,
            copies=args.copies,
            reset_every=args.reset_every,
            progress=not args.quiet,
        )
    print(json.dumps(report.to_dict()) if args.json else format_report(report))
    ok = report.board_equals_host and report.events_match and report.top1_agreement >= 0.99
    if not ok:
        print("kws firmware: the firmware does not match kws in Python (see above)", file=sys.stderr)
    return 0 if ok else 1
