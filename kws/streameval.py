"""Long-stream evaluation: hit rate, false alarms per hour and latency on built streams.

A stream is made of test clips laid end to end with gaps: keywords at known times,
unknown words between them, all over background noise at a chosen SNR. Each keyword's
extent inside its 1-s clip is measured from its energy, so latency is counted from the
end of the spoken word, not of the clip. Deterministic for a given seed.

The model's posteriors on a stream are recorded once (:func:`record`); the detector's
decisions are then replayed at any thresholds (:func:`replay`), cheaply and with the
same events the live detector gives. :func:`tune_thresholds` picks one threshold per
keyword for a target false-alarm rate that way.
"""

from __future__ import annotations

import bisect
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kws.audio import word_extent
from kws.data import SILENCE, UNKNOWN, examples, load_example, scan
from kws.errors import DataError
from kws.evaluate import keywords_of
from kws.stream import Detection, Detector, PosteriorSmoother, moving_average


@dataclass(frozen=True)
class Word:
    """A word placed in a stream: its label and where it is spoken (seconds)."""

    label: str
    start: float
    end: float


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
    if not keyword_pool or not background_pool:
        missing = "keyword clips" if not keyword_pool else "background noise or silence clips"
        raise DataError(f"{data_dir}: no {missing} in split {split!r} to build a stream from")
    if minutes * 60 < 1:
        raise DataError(f"a stream needs at least a second of audio, not {minutes:g} minutes")
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
    targets = sorted((w for w in words if w.label not in (SILENCE, UNKNOWN)), key=lambda w: w.start)
    starts = [w.start for w in targets]
    matched = [False] * len(targets)
    latencies = []
    false_alarms = 0
    for event in events:
        # Words do not overlap, so their ends are sorted too: the candidates are a short run.
        last = bisect.bisect_right(starts, event.time)
        first = last
        while first > 0 and targets[first - 1].end + tolerance >= event.time:
            first -= 1
        for i in range(first, last):
            if not matched[i] and targets[i].label == event.label:
                matched[i] = True
                latencies.append(event.time - targets[i].end)
                break
        else:
            false_alarms += 1
    return StreamScore(len(targets), sum(matched), false_alarms, seconds / 3600, tuple(latencies))


@dataclass(frozen=True)
class Trace:
    """A detector's model outputs on one stream, smoothed as the detector smooths them.

    ``times[i]`` is the stream time of posterior ``i``; ``smoothed[i]`` is the moving
    average the detector's threshold is compared with at that time.
    """

    labels: tuple[str, ...]
    times: np.ndarray  # (n,) seconds
    smoothed: np.ndarray  # (n, labels)
    refractory: float
    seconds: float  # length of the stream
    cpu_seconds: float  # front-end + model, per whole stream


def record(detector: Detector, audio: np.ndarray, chunk: int = 1600) -> Trace:
    """Run ``audio`` through a fresh ``detector`` and keep every (smoothed) posterior, not events."""
    detector.reset()
    times, raw = [], []
    start = time.process_time()
    for i in range(0, len(audio), chunk):
        for t, p in detector.posteriors(audio[i : i + chunk]):
            times.append(t)
            raw.append(p)
    cpu = time.process_time() - start
    # Same arithmetic as PosteriorSmoother.push: the mean of the last `window` posteriors.
    window = detector.smoother.history.maxlen or 1
    smoothed = moving_average(np.array(raw, dtype=np.float32).reshape(len(raw), -1), window)
    return Trace(
        detector.smoother.labels,
        np.array(times),
        smoothed.reshape(len(raw), len(detector.smoother.labels)),
        detector.smoother.refractory,
        len(audio) / detector.frontend.config.sample_rate,
        cpu,
    )


def replay(trace: Trace, thresholds: float | Mapping[str, float]) -> list[Detection]:
    """The events the detector gives on the traced stream with these thresholds."""
    smoother = PosteriorSmoother(trace.labels, thresholds, window=1, refractory=trace.refractory)
    # Feed only the frames that can change the outcome: those whose top label is a keyword
    # at or above its threshold (they may fire), and those where a keyword falls into its
    # re-arming range (they re-arm it). Every other frame leaves the smoother's state as it is.
    above = trace.smoothed >= smoother.thresholds
    fires = above[np.arange(len(above)), np.argmax(trace.smoothed, axis=1)]
    low = trace.smoothed < smoother.rearm_levels
    falls = np.zeros_like(fires)
    falls[1:] = np.any(~low[:-1] & low[1:], axis=1)
    candidates = np.flatnonzero(fires | falls)
    return [e for i in candidates if (e := smoother.push(trace.smoothed[i], float(trace.times[i])))]


# False alarms per hour (all keywords) the thresholds of a trained model are tuned for.
DEFAULT_TARGET_FA = 30.0
THRESHOLD_GRID = tuple(round(t, 2) for t in np.arange(0.30, 0.995, 0.01))


def tune_thresholds(
    trace: Trace,
    words: Sequence[Word],
    target_false_alarms_per_hour: float,
    grid: Sequence[float] = THRESHOLD_GRID,
) -> dict[str, float]:
    """One threshold per keyword: the lowest whose own false alarms stay within an equal share of the target.

    Parameters
    ----------
    trace : Trace
        The detector's outputs on a validation stream (:func:`record`).
    words : sequence of Word
        That stream's ground truth.
    target_false_alarms_per_hour : float
        For all keywords together; each keyword gets ``target / n_keywords``.
    grid : sequence of float
        Thresholds tried, ascending; a keyword that exceeds its share even at the last
        gets the last.
    """
    keywords = [label for label in trace.labels if label not in (SILENCE, UNKNOWN)]
    share = target_false_alarms_per_hour / len(keywords)
    chosen = {}
    for keyword in keywords:
        others = dict.fromkeys(keywords, np.inf)  # tuned one at a time: only this keyword fires
        for threshold in grid:
            events = replay(trace, {**others, keyword: threshold})
            if score(events, words, trace.seconds).false_alarms_per_hour <= share:
                break
        chosen[keyword] = float(threshold)
    return chosen


def tune_model(
    path: str | Path,
    data_dir: str | Path,
    *,
    target_false_alarms_per_hour: float,
    split: str = "validation",
    minutes: float = 30.0,
    snr_db: float = 20.0,
    seed: int = 0,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """Tune a model file's per-keyword thresholds on a stream and store them in its metadata.

    The file is rewritten in place (``out`` None) or the tuned model written to ``out``;
    either way the bytes written are the model that was tuned, even if the file changes
    meanwhile. A file inside the installed ``kws`` package (the bundled models) is never
    rewritten: give ``out``.

    The stream is built from ``data_dir``'s ``split`` clips (validation speakers by
    default), run through a :class:`Detector` with its default settings in the mode the
    file implies (windowed for a clip model, stateful for a step model), and the
    thresholds :func:`tune_thresholds` picks are written into the file (atomically) with
    how they were chosen.

    Returns
    -------
    dict
        What is stored under ``threshold_tuning`` (the stream's settings, the target, and
        the hit rate and false alarms per hour reached on it) with ``thresholds``
        (keyword -> threshold).
    """
    from kws.artifact import ModelError, embed_metadata
    from kws.fileio import write_bytes_atomic
    from kws.runtime import LiteRTRunner, load_runner

    path = Path(path)
    target = path if out is None else Path(out)
    if path.suffix != ".tflite" or target.suffix != ".tflite":
        raise ModelError(
            f"{path if path.suffix != '.tflite' else target}: thresholds are stored in .tflite models only"
        )
    package = Path(__file__).resolve().parent
    if target.resolve().is_relative_to(package):
        raise ModelError(
            f"{target}: is inside the installed kws package (the bundled models); tune a copy with --out FILE"
        )
    runner = load_runner(path)
    if not isinstance(runner, LiteRTRunner):  # load_runner gives LiteRT for a .tflite
        raise ModelError(f"{path}: not a LiteRT model")
    audio, words = build_stream(
        data_dir, runner.info.labels, split=split, minutes=minutes, snr_db=snr_db, seed=seed
    )
    trace = record(Detector(runner), audio)
    thresholds = tune_thresholds(trace, words, target_false_alarms_per_hour)
    result = score(replay(trace, thresholds), words, trace.seconds)
    tuning = {
        "data": str(data_dir),
        "split": split,
        "minutes": minutes,
        "snr_db": snr_db,
        "seed": seed,
        "target_false_alarms_per_hour": target_false_alarms_per_hour,
        "hit_rate": round(result.hit_rate, 4),
        "false_alarms_per_hour": round(result.false_alarms_per_hour, 2),
    }
    info = dataclasses.replace(
        runner.info, extra={**runner.info.extra, "thresholds": thresholds, "threshold_tuning": tuning}
    )
    write_bytes_atomic(target, embed_metadata(runner.model_bytes, info))
    return {**tuning, "thresholds": thresholds}
