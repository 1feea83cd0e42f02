"""Long-stream evaluation: hit rate, false alarms per hour and latency on the labelled
streams :mod:`kws.streams` builds, and thresholds tuned on them.

The model's posteriors on a stream are recorded once (:func:`record`); the detector's
decisions are then replayed at any thresholds (:func:`replay`), cheaply and with the
same events the live detector gives. :func:`tune_thresholds` picks one threshold per
keyword for a target false-alarm rate that way.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kws.artifact import DetectorConfig, ModelError, embed_metadata
from kws.data import SILENCE, UNKNOWN, keywords_of, split_negatives
from kws.errors import DataError
from kws.fileio import write_bytes_atomic
from kws.progress import bar, stage
from kws.runtime import Runner, load_runner
from kws.stream import Detection, Detector, PosteriorSmoother, audio_chunks, moving_average
from kws.streams import Word, build_negative_stream, build_stream


def poisson_upper(count: int, confidence: float = 0.95) -> float:
    """The exact one-sided upper confidence bound of a Poisson mean after ``count`` events.

    The mean ``m`` at which ``count`` or fewer events have probability ``1 - confidence``
    (3.0 for no event at 95%: the "rule of three").
    """
    if count < 0 or not 0 < confidence < 1:
        raise ValueError("count must be >= 0 and confidence in (0, 1)")

    def at_most(mean: float) -> float:  # P(X <= count), summed in log space
        terms = [k * math.log(mean) - mean - math.lgamma(k + 1) for k in range(count + 1)]
        top = max(terms)
        return math.exp(top) * sum(math.exp(t - top) for t in terms)

    low, high = 0.0, count + 10.0 * math.sqrt(count + 1) + 10.0
    for _ in range(100):  # bisection: at_most falls as the mean grows
        mid = (low + high) / 2
        low, high = (mid, high) if at_most(mid) > 1 - confidence else (low, mid)
    return high


@dataclass(frozen=True)
class StreamScore:
    """How detections on a stream compare with its ground truth."""

    keywords: int
    hits: int
    false_alarms: int
    hours: float
    latencies: tuple[float, ...]  # event time minus word end, seconds, for each hit
    false_alarm_labels: tuple[str, ...] = ()  # the label of each false alarm, in time order

    @property
    def hit_rate(self) -> float:
        return self.hits / self.keywords if self.keywords else float("nan")

    @property
    def false_alarms_per_hour(self) -> float:
        return self.false_alarms / self.hours

    @property
    def false_alarms_per_hour_upper95(self) -> float:
        """The 95% upper confidence bound of the false-alarm rate (:func:`poisson_upper`)."""
        return poisson_upper(self.false_alarms) / self.hours

    @property
    def median_latency(self) -> float:
        return float(np.median(self.latencies)) if self.latencies else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "keywords": self.keywords,
            "hits": self.hits,
            "hit_rate": self.hit_rate,
            "false_alarms": self.false_alarms,
            "hours": self.hours,
            "false_alarms_per_hour": self.false_alarms_per_hour,
            "false_alarms_per_hour_upper95": self.false_alarms_per_hour_upper95,
            "false_alarms_by_label": dict(Counter(self.false_alarm_labels).most_common()),
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
    false_alarms = []
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
            false_alarms.append(event.label)
    return StreamScore(
        len(targets), sum(matched), len(false_alarms), seconds / 3600, tuple(latencies), tuple(false_alarms)
    )


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


def record(
    detector: Detector, audio: np.ndarray, chunk: int = 1600, *, what: str = "stream", progress: bool = False
) -> Trace:
    """Run ``audio`` through a fresh ``detector`` and keep every (smoothed) posterior, not events.

    ``progress``: a bar over the seconds of audio on stderr, named after ``what`` the stream is
    (a long stream takes minutes)."""
    detector.reset()
    times, raw = [], []
    rate = detector.frontend.config.sample_rate
    start = time.process_time()
    for piece in audio_chunks(audio, chunk, rate, desc=f"detector on the {what}", progress=progress):
        for t, p in detector.posteriors(piece):
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
        len(audio) / rate,
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


# False alarms per hour (all keywords) the thresholds of a trained model are tuned for,
# and the minutes of validation stream they are tuned on (kws train, kws tune).
DEFAULT_TARGET_FA = 30.0
DEFAULT_TUNE_MINUTES = 30.0
THRESHOLD_GRID = (*(round(t, 2) for t in np.arange(0.30, 0.995, 0.01)), 0.995)

# The background levels negative streams are measured (kws bench) and tuned (kws tune) at.
NEGATIVE_SNRS = (20.0, 10.0)

# A recorded stream and its ground truth.
Recorded = tuple[Trace, Sequence[Word]]


def false_alarms(streams: Sequence[Recorded], thresholds: float | Mapping[str, float]) -> tuple[int, float]:
    """False alarms on ``streams`` together at ``thresholds``, and their hours of audio."""
    count = sum(
        score(replay(trace, thresholds), words, trace.seconds).false_alarms for trace, words in streams
    )
    return count, sum(trace.seconds for trace, _ in streams) / 3600


def tune_thresholds(
    trace: Trace,
    words: Sequence[Word],
    target_false_alarms_per_hour: float,
    grid: Sequence[float] = THRESHOLD_GRID,
    negatives: Sequence[Recorded] = (),
    *,
    progress: bool = False,
) -> dict[str, float]:
    """One threshold per keyword: the lowest whose own false alarms stay within an equal share of the target.

    Parameters
    ----------
    trace : Trace
        The detector's outputs on a validation stream (:func:`record`).
    words : sequence of Word
        That stream's ground truth.
    target_false_alarms_per_hour : float
        For all keywords together; each keyword gets ``target / n_keywords``, counted
        over the keyword stream and the ``negatives`` streams together.
    grid : sequence of float
        Thresholds tried, ascending; a keyword that exceeds its share even at the last
        gets the last.
    negatives : sequence of (Trace, words)
        Recorded streams of speech without keywords (:func:`build_negative_stream`).
    progress : bool
        A bar over the keywords on stderr (seconds each on a 30-min stream).
    """
    keywords = [label for label in trace.labels if label not in (SILENCE, UNKNOWN)]
    share = target_false_alarms_per_hour / len(keywords)
    streams = [(trace, words), *negatives]
    chosen = {}
    for keyword in bar(keywords, desc="choosing thresholds", unit=" keywords", enabled=progress, leave=False):
        others = dict.fromkeys(keywords, np.inf)  # tuned one at a time: only this keyword fires
        for threshold in grid:
            count, hours = false_alarms(streams, {**others, keyword: threshold})
            if count / hours <= share:
                break
        chosen[keyword] = float(threshold)
    return chosen


def det_curve(
    keyword_stream: Recorded,
    negatives: Sequence[Recorded] = (),
    grid: Sequence[float] = THRESHOLD_GRID,
    *,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Detection-error trade-off at shared thresholds (one for every keyword).

    The false-reject rate is the keyword stream's; the false alarms are counted on the
    ``negatives`` streams where given, else on the keyword stream itself. ``progress``: a
    bar over the thresholds on stderr (a 20-min stream takes seconds).
    """
    points = []
    for threshold in bar(grid, desc="DET curve", unit=" thresholds", enabled=progress, leave=False):
        trace, words = keyword_stream
        hits = score(replay(trace, threshold), words, trace.seconds)
        count, hours = false_alarms(negatives or [keyword_stream], threshold)
        points.append(
            {
                "threshold": threshold,
                "false_reject_rate": 1 - hits.hit_rate,
                "false_alarms": count,
                "false_alarms_per_hour": count / hours,
            }
        )
    return points


def lower_envelope(points: Sequence[Mapping[str, float]]) -> list[Mapping[str, float]]:
    """The DET points no other point beats on both false rejects and false alarms, by false alarms."""
    front: list[Mapping[str, float]] = []
    for p in sorted(points, key=lambda p: (p["false_alarms_per_hour"], p["false_reject_rate"])):
        if not front or p["false_reject_rate"] < front[-1]["false_reject_rate"]:
            front.append(p)
    return front


class TuningWarning(UserWarning):
    """Thresholds that cannot meet their false-alarm target on the streams they were tuned on."""


def tune_detector(
    runner: Runner,
    data_dir: str | Path,
    *,
    target_false_alarms_per_hour: float,
    negatives: Sequence[str | Path] = (),
    val_negatives: Sequence[str | Path] = (),
    split: str = "validation",
    minutes: float = DEFAULT_TUNE_MINUTES,
    snr_db: float = 20.0,
    seed: int = 0,
    progress: bool = False,
) -> tuple[DetectorConfig, dict[str, Any]]:
    """Tune a model's per-keyword thresholds on a stream.

    The stream is built from ``data_dir``'s ``split`` clips (validation speakers by
    default), run through a :class:`Detector` with the settings stored in the model (else
    the defaults) in the mode its kind implies (windowed for a clip model, stateful for a
    step model), and :func:`tune_thresholds` picks the thresholds. With negatives (sources
    of speech without keywords), the false alarms also count on a stream of their validation
    recordings at each of :data:`NEGATIVE_SNRS`: all of ``val_negatives`` where given, else
    the 10% of ``negatives`` ``kws train`` never trains on (:func:`kws.data.split_negatives`).

    A :class:`TuningWarning` says when even the strictest thresholds tried exceed the
    target on these streams (the model cannot meet it; the strictest are returned).
    ``progress``: the streams' building and a bar per stream on stderr (:mod:`kws.progress`).

    Returns
    -------
    DetectorConfig
        The detector's settings with the tuned thresholds (what the model should store).
    dict
        How they were chosen (the stream's settings, the target, and the hit rate and
        false alarms per hour reached on it): what the model stores under
        ``extra["threshold_tuning"]``.
    """
    detector = Detector(runner)
    stage(f"building the {minutes:g}-min {split} stream ({snr_db:g} dB)", progress)
    audio, words = build_stream(
        data_dir, runner.info.labels, split=split, minutes=minutes, snr_db=snr_db, seed=seed
    )
    trace = record(detector, audio, what=f"{split} stream", progress=progress)
    keywords = keywords_of(runner.info.labels)
    files = split_negatives(negatives, val_negatives, keywords)[1]
    if (negatives or val_negatives) and not files:
        raise DataError(f"{', '.join(map(str, negatives))}: no held-out recordings to tune on")
    negative_streams = []
    for i, snr in enumerate(NEGATIVE_SNRS if files else ()):
        what = f"negative stream ({snr:g} dB)"
        stage(f"building the {what} of {len(files)} held-out recordings", progress)
        negative_audio, negative_words = build_negative_stream(
            files, data_dir, runner.info.labels, split=split, snr_db=snr, seed=seed + i
        )
        negative_streams.append(
            (record(Detector(runner), negative_audio, what=what, progress=progress), negative_words)
        )
    thresholds = tune_thresholds(
        trace, words, target_false_alarms_per_hour, negatives=negative_streams, progress=progress
    )
    result = score(replay(trace, thresholds), words, trace.seconds)
    count, hours = false_alarms([(trace, words), *negative_streams], thresholds)
    if count / hours > target_false_alarms_per_hour:
        topped = [k for k, t in thresholds.items() if t == THRESHOLD_GRID[-1]]
        warnings.warn(
            f"{runner.path}: {target_false_alarms_per_hour:g} false alarms/h is out of this model's reach on the "
            f"tuning streams ({count / hours:.1f}/h with {', '.join(topped)} at the highest threshold, "
            f"{THRESHOLD_GRID[-1]:g}); the thresholds stored are the strictest tried",
            TuningWarning,
            stacklevel=2,
        )
    tuning: dict[str, Any] = {
        "data": str(data_dir),
        "split": split,
        "minutes": minutes,
        "snr_db": snr_db,
        "seed": seed,
        "target_false_alarms_per_hour": target_false_alarms_per_hour,
        "hit_rate": round(result.hit_rate, 4),
        "false_alarms_per_hour": round(count / hours, 2),
    }
    if files:
        negative_count, negative_hours = false_alarms(negative_streams, thresholds)
        tuning["negatives"] = {
            "folders": [str(f) for f in (val_negatives or negatives)],
            "recordings": len(files),
            "snr_db": list(NEGATIVE_SNRS),
            "minutes": round(negative_hours * 60, 2),
            "false_alarms": negative_count,
        }
    return dataclasses.replace(detector.config, thresholds=thresholds), tuning


def tuned(runner: Runner, settings: DetectorConfig, tuning: dict[str, Any]) -> bytes:
    """The runner's model with ``settings`` and their ``tuning`` (:func:`tune_detector`) in its metadata."""
    info = dataclasses.replace(
        runner.info, extra={**runner.info.extra, "threshold_tuning": tuning}, detector=settings
    )
    return embed_metadata(runner.model_bytes, info)


def tune_model(
    path: str | Path,
    data_dir: str | Path,
    *,
    target_false_alarms_per_hour: float,
    negatives: Sequence[str | Path] = (),
    val_negatives: Sequence[str | Path] = (),
    split: str = "validation",
    minutes: float = DEFAULT_TUNE_MINUTES,
    snr_db: float = 20.0,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Tune a model file's per-keyword thresholds (:func:`tune_detector`) and store them in its metadata.

    The file is rewritten in place (``out`` None) or the tuned model written to ``out``;
    either way the bytes written are the model that was tuned, even if the file changes
    meanwhile, atomically. A file inside the installed ``kws`` package (the bundled
    models) is never rewritten: give ``out``. ``progress`` as for :func:`tune_detector`.

    Returns
    -------
    dict
        What is stored under ``threshold_tuning`` with ``thresholds`` (keyword -> threshold).
    """
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
    runner = load_runner(path)  # LiteRT, for a .tflite
    settings, tuning = tune_detector(
        runner,
        data_dir,
        target_false_alarms_per_hour=target_false_alarms_per_hour,
        negatives=negatives,
        val_negatives=val_negatives,
        split=split,
        minutes=minutes,
        snr_db=snr_db,
        seed=seed,
        progress=progress,
    )
    write_bytes_atomic(target, tuned(runner, settings, tuning))
    return {**tuning, "thresholds": settings.thresholds}
