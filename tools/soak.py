"""Leave the detector on: a long stream fed live, scored and measured segment by segment.

    python tools/soak.py [--model STEP.tflite] [--hours 2] [--segment-minutes 20] \
        [--data ../shared/data/speech_commands_test12] [--negatives ../shared/data/negatives/picovoice/jarvis]

One segment (half keyword stream, half a stream of negative recordings, 20 dB SNR) is
repeated for ``--hours`` and fed to one live :class:`kws.stream.Detector` in 100-ms
chunks, never reset, as ``kws listen`` does. Each segment's hits and false alarms are
printed with the process's resident memory: a detector whose state stays bounded gives
the same figures in every segment (within noise; exactly the same when the segment is a
whole number of reset periods) and flat memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from kws.bundled import bundled_model
from kws.data import keywords_of, negative_files
from kws.runtime import load_runner
from kws.stream import Detector
from kws.streameval import score
from kws.streams import Word, build_negative_stream, build_stream

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def resident_mib() -> float:
    """This process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def segment(
    data: Path, negatives: Path, labels: tuple[str, ...], minutes: float, sample_rate: int
) -> tuple[np.ndarray, list[Word]]:
    """Half ``minutes`` of keyword stream, then negative recordings for the other half."""
    keywords, keyword_words = build_stream(data, labels, minutes=minutes / 2, seed=0)
    negative, negative_words = build_negative_stream(
        negative_files(negatives, keywords_of(labels)), data, labels, seed=0
    )
    cut = int(minutes / 2 * 60 * sample_rate)
    shift = len(keywords) / sample_rate
    words = keyword_words + [
        dataclasses.replace(w, start=w.start + shift, end=w.end + shift)
        for w in negative_words
        if w.end * sample_rate < cut
    ]
    return np.concatenate([keywords, negative[:cut]]), words


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=bundled_model(variant="int8_step"))
    parser.add_argument("--data", type=Path, default=SHARED / "speech_commands_test12")
    parser.add_argument("--negatives", type=Path, default=SHARED / "negatives" / "picovoice" / "jarvis")
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--segment-minutes", type=float, default=20.0)
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--reset-every", type=int, default=75)
    args = parser.parse_args()

    runner = load_runner(args.model)
    rate = runner.info.frontend.sample_rate
    audio, words = segment(args.data, args.negatives, tuple(runner.info.labels), args.segment_minutes, rate)
    detector = Detector(runner, copies=args.copies, reset_every=args.reset_every)
    chunk = rate // 10
    seconds = len(audio) / rate
    rows = []
    for k in range(round(args.hours * 60 / args.segment_minutes)):
        start = time.process_time()
        events = []
        for i in range(0, len(audio), chunk):
            events += detector.push(audio[i : i + chunk])
        offset = k * seconds
        local = [dataclasses.replace(e, time=e.time - offset) for e in events]
        s = score(local, words, seconds)
        rows.append(
            {
                "segment": k + 1,
                "minutes_from_start": round((k + 1) * seconds / 60, 1),
                "hits": s.hits,
                "keywords": s.keywords,
                "false_alarms": s.false_alarms,
                "resident_mib": round(resident_mib(), 1),
                "cpu_s_per_audio_s": round((time.process_time() - start) / seconds, 4),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    first, rest = rows[0], rows[1:]
    same = all((r["hits"], r["false_alarms"]) == (first["hits"], first["false_alarms"]) for r in rest)
    growth = max(r["resident_mib"] for r in rows) - first["resident_mib"]
    print(
        f"{len(rows)} segments of {seconds / 60:.1f} min: "
        f"{'every segment scores as the first' if same else 'segments differ from the first'}; "
        f"resident memory grew {growth:.1f} MiB after the first segment"
    )


if __name__ == "__main__":
    main()
