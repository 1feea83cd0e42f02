"""``kws demo``: the bundled model on the bundled sample clips, one by one and as a stream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kws.audio import load_audio
from kws.bundled import STREAMING_VARIANT, bundled_model, sample_clips
from kws.errors import install_command
from kws.runtime import classify, load_runner
from kws.stream import Detection, Detector, detect


@dataclass(frozen=True)
class DemoResult:
    """What the demo saw: the keywords said in the stream, in order, and its detections."""

    said: list[str]
    events: list[Detection]

    @property
    def as_said(self) -> bool:
        """Whether the detections are exactly the keywords said."""
        return [e.label for e in self.events] == self.said


def sample_stream(clips: list[np.ndarray], sample_rate: int, gap: float = 1.0) -> np.ndarray:
    """The clips end to end, ``gap`` seconds of quiet noise before each and after the last."""
    rng = np.random.default_rng(0)

    def quiet() -> np.ndarray:
        return (rng.standard_normal(int(gap * sample_rate)) * 1e-3).astype(np.float32)

    parts = [quiet()]
    for clip in clips:
        parts += [clip, quiet()]
    return np.concatenate(parts)


def run_demo(say: Callable[[str], None] = print) -> DemoResult:
    """Classify each sample clip with the bundled int8 LSTM, then stream them all; ``say`` prints."""
    runner = load_runner(bundled_model())
    frontend = runner.info.frontend
    clips = sample_clips()
    say(f"kws demo: the bundled int8 LSTM ({runner.path.name}) on {len(clips)} sample clips\n")
    audios = [load_audio(path, frontend.sample_rate) for path in clips]
    for path, clip in zip(clips, audios, strict=True):
        label, probability, _ = classify(runner, clip)
        say(f"  {path.name:<10} -> {label:<10} {probability:.2f}")
    detector = Detector(load_runner(bundled_model(variant=STREAMING_VARIANT)))
    audio = sample_stream(audios, frontend.sample_rate)
    say(f"\nThe same clips as one {len(audio) / frontend.sample_rate:.0f}-s stream ({detector.mode} mode):")
    events = detect(detector, audio)
    for event in events:
        say(f"  {event.time:6.2f} s  {event.label:<10} {event.score:.2f}")
    keywords = set(runner.info.keywords)
    said = [p.stem for p in clips if p.stem in keywords]
    say(
        f"\nsaid: {' '.join(p.stem for p in clips)} ({', '.join(sorted({p.stem for p in clips} - keywords))} is not a keyword)"
    )
    say(f"detected: {' '.join(e.label for e in events)}")
    say(
        "\nNext: `kws listen` detects keywords from your microphone (`--list-devices` to pick one);\n"
        "`kws bench` measures the bundled models; `kws train --data DIR --out RUN` trains your own\n"
        f"({install_command('train')}; `kws data download` fetches Speech Commands)."
    )
    return DemoResult(said, events)
