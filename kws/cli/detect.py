"""``kws stream``, ``kws listen`` and ``kws demo``: the streaming detector on a recording,
the microphone, and the bundled sample clips."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kws.cli.options import Subcommands, detector_options, device, positive, quiet_option

if TYPE_CHECKING:
    from kws.stream import Detection, Detector


def add_stream(sub: Subcommands) -> None:
    stream = sub.add_parser("stream", help="run the streaming detector over a recording and print detections")
    stream.add_argument(
        "file", type=Path, help="a WAV, FLAC or Ogg (Opus, Vorbis) recording (converted to 16 kHz mono)"
    )
    detector_options(stream)
    stream.add_argument("--json", action="store_true", help="one JSON object a line: label, time, score")
    quiet_option(stream)
    stream.set_defaults(func=cmd_stream)


def add_listen(sub: Subcommands) -> None:
    listen = sub.add_parser("listen", help="detect keywords live from the microphone")
    detector_options(listen)
    listen.add_argument("--device", type=device, help="input device: index or part of its name")
    listen.add_argument("--list-devices", action="store_true", help="list the audio input devices and exit")
    listen.add_argument(
        "--capture-rate",
        type=positive(int),
        help="capture at this rate and resample (default: 16 kHz if the device can)",
    )
    listen.add_argument(
        "--duration", type=positive(float), help="stop after this many seconds (default: Ctrl-C)"
    )
    listen.add_argument("--json", action="store_true", help="detections as JSON lines, no live display")
    listen.set_defaults(func=cmd_listen)


def add_demo(sub: Subcommands) -> None:
    demo = sub.add_parser("demo", help="run the bundled model on the bundled sample clips (start here)")
    demo.set_defaults(func=cmd_demo)


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


def cmd_stream(args: argparse.Namespace) -> int:
    from kws.audio import load_audio
    from kws.stream import detect

    detector = _detector(args)
    audio = load_audio(args.file, detector.frontend.config.sample_rate)
    events = detect(detector, audio, progress=not args.quiet)
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


def cmd_demo(args: argparse.Namespace) -> int:
    from kws.demo import run_demo

    if not run_demo().as_said:
        print("kws demo: the detections differ from the keywords in the clips", file=sys.stderr)
        return 1
    return 0
