"""Front-end speed: seconds of audio processed per second of CPU, batch and streaming.

    python tools/bench_frontend.py [--data ../shared/data/speech_commands] [--clips 300]

CPU time (time.process_time) rather than wall time, so a busy neighbour on a shared
machine disturbs the figure less; still, compare figures from one run only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from kws.audio import load_audio
from kws.data import scan
from kws.features import FrontendConfig, StreamingFrontend, clip_features


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/speech_commands"
    )
    parser.add_argument("--clips", type=int, default=300, help="number of clips to run")
    args = parser.parse_args()
    config = FrontendConfig()
    clips = [load_audio(c.path) for c in scan(args.data).clips[: args.clips]]
    seconds = sum(len(a) for a in clips) / config.sample_rate
    stream_audio = np.concatenate(clips)

    start = time.process_time()
    for audio in clips:
        clip_features(audio, config)
    cpu = time.process_time() - start
    print(
        f"batch, one clip at a time: {seconds:.0f} s of audio in {cpu:.2f} s CPU = {seconds / cpu:.0f}x real time"
    )

    for chunk_ms in (10, 20, 100):
        chunk = config.sample_rate * chunk_ms // 1000
        stream = StreamingFrontend(config)
        start = time.process_time()
        for i in range(0, len(stream_audio), chunk):
            stream.push(stream_audio[i : i + chunk])
        cpu = time.process_time() - start
        print(
            f"streaming, {chunk_ms:3d} ms chunks: {seconds:.0f} s of audio in {cpu:.2f} s CPU = {seconds / cpu:.0f}x real time"
        )


if __name__ == "__main__":
    main()
