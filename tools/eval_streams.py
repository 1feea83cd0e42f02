"""Long-stream comparison of the streaming modes: hit rate, false alarms per hour, latency, compute.

    python tools/eval_streams.py --run runs/lstm [--minutes 60] [--targets 10,30,100]

For each mode, thresholds per keyword are tuned on a validation stream (built from the
training data's validation speakers) for each target false-alarm rate, then the mode is
scored once on a test stream built from the benchmark set's speakers. Every posterior of
a stream is recorded once per mode and the detector replayed at each threshold setting,
so all rows of a mode share the same model outputs. Compute is CPU seconds per second of
audio (front-end + model), measured in this run for all modes: compare them as ratios.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kws.runtime import load_runner
from kws.stream import Detector
from kws.streameval import record, replay, score, tune_thresholds
from kws.streams import build_stream

SHARED = Path(__file__).resolve().parents[2] / "shared/data"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, help="a kws train run folder")
    parser.add_argument("--data", type=Path, default=SHARED / "speech_commands", help="validation streams")
    parser.add_argument("--test", type=Path, default=SHARED / "speech_commands_test12", help="test streams")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--snr", type=float, default=20.0)
    parser.add_argument("--targets", default="10,30,100", help="false alarms per hour to tune for")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    clip = load_runner(args.run / "int8.tflite")
    step = load_runner(args.run / "int8_step.tflite")
    labels = clip.info.labels
    streams = {
        "validation": build_stream(
            args.data, labels, split="validation", minutes=args.minutes, snr_db=args.snr, seed=args.seed
        ),
        "test": build_stream(args.test, labels, minutes=args.minutes, snr_db=args.snr, seed=args.seed),
    }
    for name, (audio, words) in streams.items():
        keywords = sum(w.label not in ("_silence_", "_unknown_") for w in words)
        print(
            f"{name} stream: {len(audio) / 16000 / 60:.0f} min, {keywords} keywords, "
            f"{len(words) - keywords} unknown words, {args.snr:.0f} dB SNR"
        )
    modes = {
        "windowed, every 20 ms": Detector(clip),
        "windowed, every 100 ms": Detector(clip, hop_frames=5),
        "stateful, never reset": Detector(step, reset_every=0),
        "stateful, 2 copies reset every 1.5 s": Detector(step, reset_every=75),
    }
    print(
        "| mode | target FA/h | validation hit rate / FA/h | test hit rate | test FA/h | "
        "test median latency s | CPU s per audio s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, detector in modes.items():
        validation = record(detector, streams["validation"][0])
        test = record(detector, streams["test"][0])
        for target in (float(t) for t in args.targets.split(",")):
            thresholds = tune_thresholds(validation, streams["validation"][1], target)
            v = score(replay(validation, thresholds), streams["validation"][1], validation.seconds)
            s = score(replay(test, thresholds), streams["test"][1], test.seconds)
            print(
                f"| {name} | {target:g} | {v.hit_rate:.1%} / {v.false_alarms_per_hour:.0f} | {s.hit_rate:.1%} | "
                f"{s.false_alarms_per_hour:.0f} | {s.median_latency:.2f} | {test.cpu_seconds / test.seconds:.4f} |",
                flush=True,
            )
            print(f"  thresholds: {thresholds}", flush=True)


if __name__ == "__main__":
    main()
