"""The ``kws`` command line: parses arguments and wires the pipeline modules together.

Problems the user can fix (a bad file, a missing folder) come out as one line on
stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np

from kws import __version__
from kws.data import DEFAULT_KEYWORDS
from kws.errors import KwsError
from kws.features import FRONTENDS
from kws.inputs import DEFAULT_INPUT_WORKERS, DISTRIBUTE

if TYPE_CHECKING:
    from kws.stream import Detection, Detector


def _keywords(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(",") if w.strip())


def cmd_data_check(args: argparse.Namespace) -> int:
    from kws.data import check, format_check

    report = check(args.dir, args.keywords)
    print(format_check(report))
    return 1 if report.unreadable or report.index.listed_missing or any(report.overlap.values()) else 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from kws.download import download_speech_commands

    folder = download_speech_commands(args.dest, progress=not args.quiet)
    print(f"Speech Commands v0.02 is in {folder}")
    print(f"check it with: kws data check {folder}")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from kws.audio import load_audio
    from kws.features import features

    config = FRONTENDS[args.frontend]
    audio = load_audio(args.file, config.sample_rate)
    feats = features(audio, config)
    print(
        f"{args.file}: {len(audio) / config.sample_rate:.3f} s -> {feats.shape[0]} frames x {feats.shape[1]} "
        f"MFCCs ({config.window_length}-sample window, {config.hop_length}-sample hop, {config.n_mels} mel bands)"
    )
    if len(feats):
        with np.printoptions(precision=2, suppress=True, linewidth=120):
            print("mean per coefficient:", feats.mean(axis=0))
            print("std per coefficient: ", feats.std(axis=0))
    if args.out:
        from kws.fileio import atomic_path

        with atomic_path(args.out, suffix=".npy") as tmp, tmp.open("wb") as f:
            np.save(f, feats)
        print(f"wrote {args.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from kws.pipeline import run
    from kws.train import TrainConfig

    config = TrainConfig(
        data=str(args.data),
        images=None if args.images is None else str(args.images),
        negatives=tuple(str(p) for p in args.negatives),
        negative_hop_s=args.negative_hop,
        unknown_weight=args.unknown_weight,
        hard_negatives=args.hard_negatives,
        sequence_clips=args.sequence_clips,
        finetune_from=None if args.finetune_from is None else str(args.finetune_from),
        arch=args.arch,
        keywords=args.keywords,
        epochs=args.epochs,
        batch_size=args.batch_size,
        patience=args.patience,
        units=args.units,
        dropout=args.dropout,
        seed=args.seed,
        frontend=dataclasses.replace(FRONTENDS[args.frontend], n_mfcc=args.n_mfcc),
    )
    from kws.streameval import DEFAULT_TARGET_FA

    report = run(
        config,
        args.out,
        resume=args.resume,
        benchmark=args.benchmark,
        progress=not args.quiet,
        tune_minutes=args.tune_minutes,
        target_false_alarms_per_hour=DEFAULT_TARGET_FA if args.target_fa is None else args.target_fa,
        input_workers=args.input_workers,
        distribute=args.distribute,
    )
    if report is None:  # a worker of a cluster other than the chief
        print(f"trained {config.arch} as a worker; the chief wrote the models", file=sys.stderr)
        return 0
    main_set = report.main_set
    print(f"trained {config.arch} in {report.state.train_seconds / 60:.1f} min; models in {args.out}")
    for name, value in report.accuracy[main_set].items():
        print(f"  {name:<18} {main_set} accuracy {value:.2%}")
    for name, a in report.tflm_vs_litert.items():
        print(f"  TFLM vs LiteRT, {name}: top-1 agreement {a['top1_agreement']:.2%}")
    for name, t in report.thresholds.items():
        print(
            f"  {name} thresholds for {t['target_false_alarms_per_hour']:g} false alarms/h: hit rate "
            f"{t['hit_rate']:.1%} at {t['false_alarms_per_hour']:.1f} false alarms/h ({t['minutes']:g}-min validation stream)"
        )
    print(f"report: {Path(args.out) / 'report.md'}")
    return 1 if report.interrupted else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from kws.bundled import bundled_model
    from kws.evaluate import evaluate, false_accepts, format_false_accepts, format_result, load_features
    from kws.runtime import load_runner

    if args.data is None and args.negatives is None:
        raise KwsError(
            "kws eval needs --data DIR (labelled clips), --negatives DIR (speech without keywords), or both"
        )
    args.model = args.model or bundled_model()
    runner = load_runner(args.model, args.runtime)
    out: dict[str, Any] = {"model": str(args.model), "runtime": runner.runtime}
    if args.data is not None:
        data = load_features(
            args.data, args.split, runner.info.labels, runner.info.frontend, progress=not args.json
        )
        result = evaluate(runner, data, progress=not args.json)
        out.update(data=data.source, **result.to_dict())
        if not args.json:
            print(format_result(result, f"{args.model} ({runner.runtime}) on {data.source}"))
    if args.negatives is not None:
        negatives = false_accepts(runner, args.negatives, progress=not args.json)
        out["negatives"] = {"folder": str(args.negatives), **negatives.to_dict()}
        if not args.json:
            print(("\n" if args.data is not None else "") + format_false_accepts(negatives, args.negatives))
    if args.json:
        print(json.dumps(out))
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from kws.audio import load_audio
    from kws.stream import detect

    detector = _detector(args)
    audio = load_audio(args.file, detector.frontend.config.sample_rate)
    events = detect(detector, audio)
    for event in events:
        if args.json:
            print(json.dumps(event.to_dict()))
        else:
            print(f"{event.time:8.2f} s  {event.label:<10} {event.score:.2f}")
    if not args.json:
        print(
            f"{len(events)} detections in {len(audio) / detector.frontend.config.sample_rate:.1f} s ({detector.mode} mode)"
        )
    return 0


def _detector(args: argparse.Namespace) -> Detector:
    """The streaming detector the stream/listen options describe."""
    from kws.bundled import STREAMING_VARIANT, bundled_model
    from kws.runtime import load_runner
    from kws.stream import Detector

    args.model = args.model or bundled_model(variant=STREAMING_VARIANT)
    runner = load_runner(args.model, args.runtime)
    # What is not given is the model's (the settings its thresholds were tuned with).
    given = {
        "thresholds": args.threshold,
        "smoothing": args.smoothing,
        "refractory": args.refractory,
        "reset_every": args.reset_every,
        "copies": args.copies,
    }
    return Detector(runner, **{k: v for k, v in given.items() if v is not None})


def cmd_listen(args: argparse.Namespace) -> int:
    from kws.microphone import Session, level_dbfs, list_devices, listen

    if args.list_devices:
        print(list_devices())
        return 0
    detector = _detector(args)
    live = sys.stderr.isatty() and not args.json
    clear = "\r\033[K" if live else ""  # erases the live line (on stderr) before other output

    def on_start(session: Session) -> None:
        print(
            f"listening at {session.capture_rate} Hz ({detector.mode} mode, {args.model}); keywords: "
            f"{', '.join(detector.runners[0].info.keywords)}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )

    def on_event(event: Detection) -> None:
        print(clear, end="", file=sys.stderr, flush=True)
        if args.json:
            print(json.dumps(event.to_dict()), flush=True)
        else:
            clock = time.strftime("%H:%M:%S")
            print(f"{clock}  {event.time:8.2f} s  {event.label:<10} {event.score:.2f}", flush=True)

    def on_block(audio: np.ndarray, det: Detector) -> None:
        level = level_dbfs(audio)
        bar = "#" * int(np.clip((level + 60) / 3, 0, 20))
        top = ""
        if det.probabilities is not None:
            best = int(np.argmax(det.probabilities))
            top = f"top: {det.smoother.labels[best]} {det.probabilities[best]:.2f}"
        print(
            f"{clear}{det.time:8.1f} s  {level:6.1f} dBFS |{bar:<20}| {top}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    session = listen(
        detector,
        device=args.device,
        rate=args.capture_rate,
        duration=args.duration,
        on_start=on_start,
        on_event=on_event,
        on_block=on_block if live else None,
    )
    counts = Counter(e.label for e in session.events)
    summary = ", ".join(f"{label} {n}" for label, n in counts.most_common()) or "none"
    rate = f"{session.capture_rate} Hz" + (
        f" resampled to {detector.frontend.config.sample_rate} Hz"
        if session.capture_rate != detector.frontend.config.sample_rate
        else ""
    )
    print(
        f"{clear}listened {session.seconds:.1f} s ({rate}); "
        f"{len(session.events)} detections: {summary}; input overflows: {session.overflows}",
        file=sys.stderr,
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from kws.bench import bench, format_table, plot
    from kws.bundled import bundled_model
    from kws.fileio import writable_file
    from kws.streameval import NEGATIVE_SNRS

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
        progress=not args.json,
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


def cmd_export(args: argparse.Namespace) -> int:
    from kws.bundled import STREAMING_VARIANT, bundled_model
    from kws.export import export, format_summary

    model = args.model or bundled_model(variant=STREAMING_VARIANT)
    print(format_summary(export(model, args.out, copies=args.copies, reset_every=args.reset_every)))
    return 0


def cmd_firmware(args: argparse.Namespace) -> int:
    import tempfile

    from kws.board import BOARD, BoardError, format_report, measure, missing_tools, tflm_tree
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
        )
    print(json.dumps(report.to_dict()) if args.json else format_report(report))
    ok = report.board_equals_host and report.events_match and report.top1_agreement >= 0.99
    if not ok:
        print("kws firmware: the firmware does not match kws in Python (see above)", file=sys.stderr)
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from kws.demo import run_demo

    if not run_demo().as_said:
        print("kws demo: the detections differ from the keywords in the clips", file=sys.stderr)
        return 1
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from kws.streameval import DEFAULT_TARGET_FA, tune_model

    args.target = DEFAULT_TARGET_FA if args.target is None else args.target
    if args.out is not None and len(args.model) > 1:
        raise KwsError("--out names the tuned copy of one model; give one model with it")
    for path in args.model:
        tuning = tune_model(
            path,
            args.data,
            target_false_alarms_per_hour=args.target,
            negatives=args.negatives,
            split=args.split,
            minutes=args.minutes,
            seed=args.seed,
            out=args.out,
        )
        negatives = tuning.get("negatives")
        on = f" + {negatives['minutes']:.1f} min of held-out negatives" if negatives else ""
        print(
            f"{args.out or path}: thresholds for {args.target:g} false alarms/h on {args.minutes:g} min of {args.split} "
            f"stream{on}: hit rate {tuning['hit_rate']:.1%}, {tuning['false_alarms_per_hour']:.1f} false alarms/h"
        )
        print("  " + ", ".join(f"{k} {t:.2f}" for k, t in tuning["thresholds"].items()))
    return 0


def _finite(text: str, kind: type[int] | type[float] = float) -> int | float:
    """An argparse type: a finite number (any sign)."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def _positive(kind: type[int] | type[float], allow_zero: bool = False) -> Callable[[str], int | float]:
    """An argparse type: a number above zero (or zero too)."""

    def parse(text: str) -> int | float:
        value = _finite(text, kind)
        if value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(
                f"must be above zero{' or zero' if allow_zero else ''}, not {text}"
            )
        return value

    return parse


def _probability(text: str) -> float:
    """An argparse type: a probability above 0 and at most 1."""
    value = _positive(float)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be at most 1, not {text}")
    return float(value)


def _dropout(text: str) -> float:
    """An argparse type: a dropout rate, from 0 to below 1."""
    value = _positive(float, allow_zero=True)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be below 1, not {text}")
    return float(value)


def _device(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def _detector_options(parser: argparse.ArgumentParser) -> None:
    from kws.artifact import DetectorConfig

    defaults = DetectorConfig()
    parser.add_argument(
        "--model",
        type=Path,
        help="int8_step.tflite (stateful) or int8.tflite (windowed); default: the bundled LSTM step model",
    )
    parser.add_argument("--runtime", choices=["litert", "tflm"], default="litert")
    parser.add_argument(
        "--threshold",
        type=_probability,
        help="smoothed probability a keyword must reach (default: the model's)",
    )
    parser.add_argument(
        "--smoothing",
        type=_positive(float),
        help=f"seconds of posteriors averaged (default: the model's, else {defaults.smoothing:g})",
    )
    parser.add_argument(
        "--refractory",
        type=_positive(float, allow_zero=True),
        help=f"seconds of quiet after a detection (default: the model's, else {defaults.refractory:g})",
    )
    _streaming_arguments(parser, copies=defaults.copies, reset_every=defaults.reset_every, model_default=True)


def _streaming_arguments(
    parser: argparse.ArgumentParser, *, copies: int, reset_every: int, model_default: bool = False
) -> None:
    """A step model's stateful streaming: how many copies, reset how often (``model_default``:
    left None unless given, the model's stored settings apply, else these)."""
    default = "the model's, else " if model_default else ""
    parser.add_argument(
        "--reset-every",
        type=_positive(int, allow_zero=True),
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


def build_parser() -> argparse.ArgumentParser:
    from kws.stream import FIRMWARE_COPIES, FIRMWARE_RESET_EVERY

    parser = argparse.ArgumentParser(prog="kws", description="Keyword spotting for microcontrollers.")
    parser.add_argument("--version", action="version", version=f"kws {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="check or download speech data")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    check = data_sub.add_parser("check", help="count clips per label and split, check speakers and files")
    check.add_argument("dir", type=Path, help="a Speech Commands folder, or a 12-class test folder")
    check.add_argument(
        "--keywords",
        type=_keywords,
        default=DEFAULT_KEYWORDS,
        help=f"comma-separated keywords (default: {','.join(DEFAULT_KEYWORDS)})",
    )
    check.set_defaults(func=cmd_data_check)
    download = data_sub.add_parser("download", help="download and unpack Speech Commands v0.02 (2.4 GB)")
    download.add_argument("--dest", type=Path, default=Path("data/speech_commands"), help="target folder")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(func=cmd_data_download)

    feats = sub.add_parser("features", help="compute the MFCC features of an audio file")
    feats.add_argument("file", type=Path, help="a WAV or FLAC file (converted to 16 kHz mono)")
    feats.add_argument("--out", type=Path, help="save the (frames, cepstra) array as .npy")
    feats.add_argument(
        "--frontend", choices=sorted(FRONTENDS), default="logmel_image", help="front-end setting (see README)"
    )
    feats.set_defaults(func=cmd_features)

    train = sub.add_parser(
        "train", help="train a model and quantise it to int8 (float, int8 and step models)"
    )
    train.add_argument("--data", type=Path, required=True, help="Speech Commands folder (official layout)")
    train.add_argument("--out", type=Path, required=True, help="run folder for models, checkpoint and report")
    train.add_argument("--arch", choices=["lstm", "gru", "dscnn"], default="lstm")
    train.add_argument(
        "--keywords", type=_keywords, default=DEFAULT_KEYWORDS, help="comma-separated keywords"
    )
    train.add_argument(
        "--images",
        type=Path,
        help="the full set's log-mel images (speech_commands_logmel.tar.gz or its folder), trained on beside --data",
    )
    train.add_argument(
        "--negatives",
        type=Path,
        action="append",
        default=[],
        help="a folder of non-keyword speech trained on as _unknown_ (repeatable; 10%% held out for validation)",
    )
    train.add_argument(
        "--negative-hop",
        type=_positive(float),
        help="train on every 1-s window of each negative recording, this many seconds apart "
        "(default: one window a recording each epoch)",
    )
    train.add_argument(
        "--unknown-weight",
        type=_positive(float),
        default=1.0,
        help="the _unknown_ class's share of the loss relative to one keyword's (default 1: balanced)",
    )
    train.add_argument(
        "--finetune-from",
        type=Path,
        metavar="RUN",
        help="continue a finished run's last checkpoint with these settings up to --epochs (same model "
        "and training sources; the best epoch is chosen among the new ones)",
    )
    train.add_argument(
        "--hard-negatives",
        type=_positive(int, allow_zero=True),
        default=0,
        help="each epoch, also train on this many of the negatives' 1-s windows the model found most "
        "keyword-like (hard-negative mining; default 0: off)",
    )
    train.add_argument(
        "--sequence-clips",
        type=_positive(int),
        default=1,
        help="LSTM/GRU: train on sequences of this many examples in a row, the state carried as "
        "when streaming, non-keywords trained on at every frame (default 1: each clip alone)",
    )
    train.add_argument(
        "--frontend",
        choices=sorted(FRONTENDS),
        default="logmel_image",
        help="front-end setting (logmel_image: the images' log-mel; hello_edge: the first release's)",
    )
    train.add_argument("--n-mfcc", type=_positive(int), default=10, help="cepstral coefficients a frame")
    train.add_argument(
        "--epochs", type=_positive(int), default=40, help="most epochs (early stopping may end sooner)"
    )
    train.add_argument("--batch-size", type=_positive(int), default=64)
    train.add_argument(
        "--patience", type=_positive(int), default=10, help="epochs without progress before stopping"
    )
    train.add_argument("--units", type=_positive(int), default=80, help="recurrent units per layer")
    train.add_argument(
        "--dropout", type=_dropout, default=0.2, help="dropout rate, 0 to below 1 (default 0.2)"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument(
        "--input-workers",
        type=_positive(int, allow_zero=True),
        default=DEFAULT_INPUT_WORKERS,
        help=f"processes computing the augmented features beside training (default {DEFAULT_INPUT_WORKERS}: "
        "one a core; 0: in the training process)",
    )
    train.add_argument(
        "--distribute",
        choices=DISTRIBUTE,
        default="none",
        help="none: one device; mirrored: every local GPU (else the CPU); multiworker: the machines "
        "in $TF_CONFIG, each running this same command (the chief writes --out); --batch-size is the "
        "global batch",
    )
    train.add_argument("--benchmark", type=Path, help="also report accuracy on this data folder's test clips")
    train.add_argument(
        "--tune-minutes",
        type=_positive(float, allow_zero=True),
        default=30.0,
        help="validation stream the streaming thresholds are tuned on (0: keep the default threshold)",
    )
    train.add_argument(
        "--target-fa", type=_positive(float), help="false alarms per hour the thresholds aim at (default: 30)"
    )
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.set_defaults(func=cmd_train)

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
        help="a folder of speech without keywords: the share of 1-s windows (every 0.5 s) named a keyword",
    )
    ev.add_argument("--split", choices=["train", "validation", "test"], default="test")
    ev.add_argument("--runtime", choices=["litert", "tflm", "keras"], default="litert")
    ev.add_argument("--json", action="store_true", help="one JSON object on stdout, nothing else")
    ev.set_defaults(func=cmd_eval)

    stream = sub.add_parser("stream", help="run the streaming detector over a recording and print detections")
    stream.add_argument("file", type=Path, help="a WAV or FLAC recording (converted to 16 kHz mono)")
    _detector_options(stream)
    stream.add_argument("--json", action="store_true", help="one JSON object a line: label, time, score")
    stream.set_defaults(func=cmd_stream)

    listen = sub.add_parser("listen", help="detect keywords live from the microphone")
    _detector_options(listen)
    listen.add_argument("--device", type=_device, help="input device: index or part of its name")
    listen.add_argument("--list-devices", action="store_true", help="list the audio input devices and exit")
    listen.add_argument(
        "--capture-rate",
        type=_positive(int),
        help="capture at this rate and resample (default: 16 kHz if the device can)",
    )
    listen.add_argument(
        "--duration", type=_positive(float), help="stop after this many seconds (default: Ctrl-C)"
    )
    listen.add_argument("--json", action="store_true", help="detections as JSON lines, no live display")
    listen.set_defaults(func=cmd_listen)

    bench = sub.add_parser(
        "bench", help="accuracy, size, latency and long-stream figures of models, side by side"
    )
    bench.add_argument(
        "--model",
        type=Path,
        nargs="+",
        help="whole-clip int8 .tflite files (float and step siblings found by name); "
        "default: the bundled LSTM and DS-CNN",
    )
    bench.add_argument(
        "--data", type=Path, help="Speech Commands folder or 12-class test set (its test clips)"
    )
    bench.add_argument(
        "--minutes", type=_positive(float), default=20.0, help="length of the long test stream"
    )
    bench.add_argument(
        "--negatives",
        type=Path,
        help="a folder of speech without keywords: the share of its 1-s windows named a keyword, and "
        "the false alarms per hour on a stream of every recording once (at each --snr)",
    )
    bench.add_argument(
        "--snr",
        type=_finite,
        action="append",
        help="background level (speech over noise, dB) of the negative and keyword streams "
        "(repeatable; default: 20 and 10)",
    )
    bench.add_argument("--repeats", type=_positive(int), default=200, help="invokes timed per latency figure")
    bench.add_argument(
        "--tflm",
        help="TFLM's sources (tree or .tar.gz; default $KWS_TFLM): measure the firmware on the emulated "
        "Cortex-M4F (else the figures stored with a bundled model)",
    )
    out = bench.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object with every figure")
    out.add_argument("--markdown", action="store_true", help="the table in Markdown")
    bench.add_argument("--plot", type=Path, help="write a PNG: confusion matrices and the DET curve")
    bench.set_defaults(func=cmd_bench)

    exp = sub.add_parser("export", help="write the model, C front-end and TFLM glue for a microcontroller")
    exp.add_argument(
        "--model",
        type=Path,
        help="int8 .tflite from kws train: a step model streams stateful, a clip model windowed "
        "(default: the bundled LSTM step model)",
    )
    exp.add_argument("--out", type=Path, required=True, help="folder to write into")
    _streaming_arguments(exp, copies=FIRMWARE_COPIES, reset_every=FIRMWARE_RESET_EVERY)
    exp.set_defaults(func=cmd_export)

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
    fw.add_argument("--clips", type=_positive(int), default=100, help="test clips classified on the board")
    fw.add_argument("--minutes", type=_positive(float), default=2.0, help="length of the test stream")
    fw.add_argument("--json", action="store_true", help="one JSON object with every figure")
    _streaming_arguments(fw, copies=FIRMWARE_COPIES, reset_every=FIRMWARE_RESET_EVERY)
    fw.set_defaults(func=cmd_firmware)

    demo = sub.add_parser("demo", help="run the bundled model on the bundled sample clips (start here)")
    demo.set_defaults(func=cmd_demo)

    tune = sub.add_parser(
        "tune", help="choose per-keyword thresholds on a validation stream and store them in the model"
    )
    tune.add_argument(
        "model", type=Path, nargs="+", help=".tflite model files (rewritten in place, unless --out)"
    )
    tune.add_argument(
        "--out", type=Path, help="write the tuned model here instead (one model; needed for the bundled ones)"
    )
    tune.add_argument(
        "--data", type=Path, required=True, help="Speech Commands folder the streams are built from"
    )
    tune.add_argument("--split", choices=["train", "validation", "test"], default="validation")
    tune.add_argument(
        "--target", type=_positive(float), help="false alarms per hour, all keywords (default: 30)"
    )
    tune.add_argument("--minutes", type=_positive(float), default=30.0, help="length of the tuning stream")
    tune.add_argument(
        "--negatives",
        type=Path,
        action="append",
        default=[],
        help="a folder of non-keyword speech whose held-out 10%% (the part kws train never trains on) "
        "also counts false alarms (repeatable)",
    )
    tune.add_argument("--seed", type=int, default=0)
    tune.set_defaults(func=cmd_tune)

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
        return 143 if _terminated else status
    except KwsError as e:
        print(f"kws: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if _terminated:
            print("kws: terminated", file=sys.stderr)
            return 143
        print("kws: interrupted", file=sys.stderr)
        return 130
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


if __name__ == "__main__":
    sys.exit(main())
