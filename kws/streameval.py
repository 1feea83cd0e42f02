"""Long-stream evaluation: hit rate, false alarms per hour and latency on built streams.

A stream is made of test clips laid end to end with gaps: keywords at known times,
unknown words between them, all over background noise at a chosen SNR. Each keyword's
extent inside its 1-s clip is measured from its energy, so latency is counted from the
end of the spoken word, not of the clip. Deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.data import SILENCE, UNKNOWN, examples, load_example, scan
from kws.evaluate import keywords_of
from kws.stream import Detection


@dataclass(frozen=True)
class Word:
    """A word placed in a stream: its label and where it is spoken (seconds)."""

    label: str
    start: float
    end: float


def word_extent(audio: np.ndarray, sample_rate: int, floor_db: float = -25.0) -> tuple[float, float]:
    """Start and end (seconds) of the speech in a clip: 10-ms frames within ``floor_db`` of its loudest."""
    hop = sample_rate // 100
    n = len(audio) // hop
    energy = np.square(audio[: n * hop].astype(np.float64)).reshape(n, hop).mean(axis=1)
    loud = np.flatnonzero(10 * np.log10(energy + 1e-12) >= 10 * np.log10(energy.max() + 1e-12) + floor_db)
    return float(loud[0] * hop / sample_rate), float((loud[-1] + 1) * hop / sample_rate)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def build_stream(
    data_dir: str | Path,
    labels: Sequence[str],
    *,
    split: str = "test",
    minutes: float = 10.0,
    unknown_share: float = 0.25,
    gap: tuple[float, float] = (1.0, 3.0),
    snr_db: float = 20.0,
    seed: int = 0,
    sample_rate: int = 16000,
) -> tuple[np.ndarray, list[Word]]:
    """A long stream of one split's clips over background noise, with its ground truth.

    Parameters
    ----------
    data_dir : path
        Speech Commands folder or 12-class test folder.
    labels : sequence of str
        The model's labels; its keywords are placed, other words are unknown.
    split : str
        Which clips to use (the 12-class layout is all ``test``).
    minutes : float
        Length of the stream.
    unknown_share : float
        Fraction of placed words that are unknown words.
    gap : (float, float)
        Seconds of background between words, uniform in this range.
    snr_db : float
        Speech RMS over background RMS.
    seed : int
        Makes the stream reproducible.
    sample_rate : int

    Returns
    -------
    audio : np.ndarray, float32
    words : list of Word
        Every placed word (keywords and unknowns) with its spoken extent.
    """
    index = scan(data_dir)
    chosen = examples(index, split, keywords_of(labels), clip_samples=sample_rate, unknown_percentage=100)
    rng = np.random.default_rng(seed)
    keyword_pool = [e for e in chosen if e.label not in (SILENCE, UNKNOWN)]
    unknown_pool = [e for e in chosen if e.label == UNKNOWN]
    background_pool = [e for e in chosen if e.label == SILENCE]
    total = int(minutes * 60 * sample_rate)
    speech = np.zeros(total, dtype=np.float32)
    words: list[Word] = []
    pos = int(rng.uniform(*gap) * sample_rate)
    while pos + sample_rate <= total:
        pool = unknown_pool if unknown_pool and rng.uniform() < unknown_share else keyword_pool
        example = pool[int(rng.integers(len(pool)))]
        clip = load_example(example, sample_rate, sample_rate)
        start, end = word_extent(clip, sample_rate)
        speech[pos : pos + sample_rate] = clip / max(_rms(clip), 1e-6) * 0.05  # speech at a fixed level
        words.append(Word(example.label, pos / sample_rate + start, pos / sample_rate + end))
        pos += sample_rate + int(rng.uniform(*gap) * sample_rate)
    # Background: silence examples (noise recordings, or real silence clips) end to end.
    background = np.concatenate(
        [
            load_example(background_pool[int(rng.integers(len(background_pool)))], sample_rate, sample_rate)
            for _ in range(total // sample_rate + 1)
        ]
    )[:total]
    background *= 0.05 / 10 ** (snr_db / 20) / max(_rms(background), 1e-9)
    return np.clip(speech + background, -1, 1).astype(np.float32), words


@dataclass(frozen=True)
class StreamScore:
    """How detections on a stream compare with its ground truth."""

    keywords: int
    hits: int
    false_alarms: int
    hours: float
    latencies: tuple[float, ...]  # event time minus word end, seconds, for each hit

    @property
    def hit_rate(self) -> float:
        return self.hits / self.keywords if self.keywords else float("nan")

    @property
    def false_alarms_per_hour(self) -> float:
        return self.false_alarms / self.hours

    @property
    def median_latency(self) -> float:
        return float(np.median(self.latencies)) if self.latencies else float("nan")

    def to_dict(self) -> dict[str, float | int]:
        return {
            "keywords": self.keywords,
            "hits": self.hits,
            "hit_rate": self.hit_rate,
            "false_alarms": self.false_alarms,
            "hours": self.hours,
            "false_alarms_per_hour": self.false_alarms_per_hour,
            "median_latency_s": self.median_latency,
        }


def score(
    events: Sequence[Detection], words: Sequence[Word], seconds: float, tolerance: float = 1.0
) -> StreamScore:
    """Match events to keywords: same label, between the word's start and its end + ``tolerance``.

    Each keyword is hit at most once; any event that matches no keyword is a false alarm
    (a wrong label on a keyword counts as a miss and a false alarm).
    """
    targets = [w for w in words if w.label not in (SILENCE, UNKNOWN)]
    matched = [False] * len(targets)
    latencies = []
    false_alarms = 0
    for event in events:
        for i, word in enumerate(targets):
            if (
                not matched[i]
                and word.label == event.label
                and word.start <= event.time <= word.end + tolerance
            ):
                matched[i] = True
                latencies.append(event.time - word.end)
                break
        else:
            false_alarms += 1
    return StreamScore(len(targets), sum(matched), false_alarms, seconds / 3600, tuple(latencies))
