"""Long-stream comparison of the streaming modes: hit rate, false alarms per hour, latency, compute.

    python tools/eval_streams.py --run runs/lstm [--data ../shared/data/speech_commands_test12] [--minutes 60]

Builds one stream from the data's test clips (seeded), records every posterior of each
mode once, then applies the smoother at several thresholds (cheap), so every row of a
mode shares the same model outputs. Compute is CPU seconds per second of audio, measured
in this run for all modes (compare them as ratios).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from kws.runtime import load_runner
from kws.stream import Detector, PosteriorSmoother
from kws.streameval import build_stream, score


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True, help="a kws train run folder")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared/data/speech_commands_test12",
    )
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--snr", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    clip = load_runner(args.run / "int8.tflite")
    step = load_runner(args.run / "int8_step.tflite")
    audio, words = build_stream(
        args.data, clip.info.labels, minutes=args.minutes, snr_db=args.snr, seed=args.seed
    )
    seconds = len(audio) / clip.info.frontend.sample_rate
    keywords = sum(w.label not in ("_silence_", "_unknown_") for w in words)
    print(
        f"stream: {seconds / 60:.0f} min, {keywords} keywords, {len(words) - keywords} unknown words, {args.snr:.0f} dB SNR"
    )
    modes = {
        "windowed, every 20 ms": Detector(clip),
        "windowed, every 100 ms": Detector(clip, hop_frames=5),
        "stateful, never reset": Detector(step, reset_every=0),
        "stateful, 2 copies reset every 2 s": Detector(step, reset_every=100),
        "stateful, 2 copies reset every 1.5 s": Detector(step, reset_every=75),
    }
    print("| mode | threshold | hit rate | false alarms / h | median latency s | CPU s per audio s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, detector in modes.items():
        detector.reset()
        start = time.process_time()
        trace = []
        for i in range(0, len(audio), 1600):
            for frame in detector.frontend.push(audio[i : i + 1600]):
                p = detector.posterior(frame)
                if p is not None:
                    trace.append((detector.time, p))
        cpu = (time.process_time() - start) / seconds
        for threshold in (0.5, 0.7, 0.8, 0.9):
            smoother = PosteriorSmoother(
                clip.info.labels,
                threshold,
                detector.smoother.history.maxlen or 1,
                detector.smoother.refractory,
            )
            events = [e for t, p in trace if (e := smoother.push(p, t)) is not None]
            s = score(events, words, seconds)
            print(
                f"| {name} | {threshold} | {s.hit_rate:.1%} | {s.false_alarms_per_hour:.0f} | "
                f"{s.median_latency:.2f} | {cpu:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
