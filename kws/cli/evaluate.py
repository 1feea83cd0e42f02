"""``kws eval`` and ``kws bench``: the figures of models on labelled clips and long streams."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from kws.bench import bench, format_table, plot
from kws.cli.options import Subcommands, defaults, finite, positive, quiet_option
from kws.data import SPLITS
from kws.errors import KwsError
from kws.runtime import RUNTIMES, load_runner
from kws.streameval import NEGATIVE_SNRS


def add_eval(sub: Subcommands) -> None:
    ev = sub.add_parser("eval", help="accuracy, per-class recall and confusion matrix of a model")
    ev.add_argument(
        "--model",
        type=Path,
        help="a .tflite or .h5 model written by kws train (default: the bundled int8 LSTM)",
    )
    ev.add_argument("--data", type=Path, help="Speech Commands folder or 12-class test folder")
    ev.add_argument(
        "--negatives",
        type=Path,
        help="a folder or .txt list of speech without keywords: the share of 1-s windows (every 0.5 s) "
        "named a keyword",
    )
    ev.add_argument("--split", choices=SPLITS, default="test")
    ev.add_argument("--runtime", choices=RUNTIMES, default=defaults(load_runner)["runtime"])
    ev.add_argument("--json", action="store_true", help="one JSON object on stdout, nothing else")
    quiet_option(ev)
    ev.set_defaults(func=cmd_eval)


def add_bench(sub: Subcommands) -> None:
    default = defaults(bench)
    parser = sub.add_parser(
        "bench", help="accuracy, size, latency and long-stream figures of models, side by side"
    )
    parser.add_argument(
        "--model",
        type=Path,
        nargs="+",
        help="whole-clip int8 .tflite files (float and step siblings found by name); "
        "default: the bundled LSTM and DS-CNN",
    )
    parser.add_argument(
        "--data", type=Path, help="Speech Commands folder or 12-class test set (its test clips)"
    )
    parser.add_argument(
        "--minutes", type=positive(float), default=default["minutes"], help="length of the long test stream"
    )
    parser.add_argument(
        "--negatives",
        type=Path,
        help="a folder or .txt list of speech without keywords: the share of its 1-s windows named a keyword, and "
        "the false alarms per hour on a stream of every recording once (at each --snr)",
    )
    parser.add_argument(
        "--snr",
        type=finite,
        action="append",
        help="background level (speech over noise, dB) of the negative and keyword streams "
        f"(repeatable; default: {' and '.join(f'{snr:g}' for snr in NEGATIVE_SNRS)})",
    )
    parser.add_argument(
        "--repeats", type=positive(int), default=default["repeats"], help="invokes timed per latency figure"
    )
    parser.add_argument(
        "--tflm",
        help="TFLM's sources (tree or .tar.gz; default $KWS_TFLM): measure the firmware on the emulated "
        "Cortex-M4F (else the figures stored with a bundled model)",
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object with every figure")
    out.add_argument("--markdown", action="store_true", help="the table in Markdown")
    parser.add_argument("--plot", type=Path, help="write a PNG: confusion matrices and the DET curve")
    quiet_option(parser)
    parser.set_defaults(func=cmd_bench)


def cmd_eval(args: argparse.Namespace) -> int:
    from kws.bundled import bundled_model
    from kws.evaluate import evaluate, false_accepts, format_false_accepts, format_result, load_features

    if args.data is None and args.negatives is None:
        raise KwsError(
            "kws eval needs --data DIR (labelled clips), --negatives DIR (speech without keywords), or both"
        )
    args.model = args.model or bundled_model()
    runner = load_runner(args.model, args.runtime)
    out: dict[str, Any] = {"model": str(args.model), "runtime": runner.runtime}
    if args.data is not None:
        data = load_features(
            args.data, args.split, runner.info.labels, runner.info.frontend, progress=not args.quiet
        )
        result = evaluate(runner, data, progress=not args.quiet)
        out.update(data=data.source, **result.to_dict())
        if not args.json:
            print(format_result(result, f"{args.model} ({runner.runtime}) on {data.source}"))
    if args.negatives is not None:
        negatives = false_accepts(runner, args.negatives, progress=not args.quiet)
        out["negatives"] = {"folder": str(args.negatives), **negatives.to_dict()}
        if not args.json:
            print(("\n" if args.data is not None else "") + format_false_accepts(negatives, args.negatives))
    if args.json:
        print(json.dumps(out))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from kws.bundled import bundled_model
    from kws.fileio import writable_file

    if args.data is None:
        raise KwsError(
            "kws bench needs labelled clips: --data DIR (a Speech Commands folder or the 12-class "
            "test set; `kws data download` fetches Speech Commands)"
        )
    models = args.model or [bundled_model("lstm"), bundled_model("dscnn")]
    if args.plot:
        writable_file(args.plot)  # before minutes of work, not after
    rows = bench(
        models,
        args.data,
        minutes=args.minutes,
        negatives=args.negatives,
        snrs=args.snr or NEGATIVE_SNRS,
        repeats=args.repeats,
        progress=not args.quiet,
        tflm_sources=args.tflm or os.environ.get("KWS_TFLM") or None,
    )
    if args.json:
        print(json.dumps({"data": str(args.data), "models": rows}))
    else:
        print(format_table(rows, markdown=args.markdown))
    if args.plot:
        plot(rows, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
