"""Streaming detection: audio chunks in, keyword events out.

    audio chunks -> StreamingFrontend -> WindowedPosteriors | StatefulPosteriors
                 -> PosteriorSmoother (moving average, thresholds) -> events

Two inference modes; a model file's kind (what one invoke takes: a ``clip`` or a
``step``) decides which:

- *windowed* (a ``clip`` model): every ``hop_frames`` new frames, the whole-clip model
  runs on the last ``clip_frames`` frames, its state reset first. Frames are computed
  once each by the streaming front-end, so the window's features equal the batch
  front-end's over the same 1 s of audio.
- *stateful* (a ``step`` model): each new frame is one invoke; the fused LSTM carries
  its state from invoke to invoke. The model was trained on 1-s sequences from a zero
  state, and a state never reset drifts (measured: repeated false alarms). With
  ``reset_every=R`` two copies of the step model run, reset R/2 frames apart, and the
  posterior comes from the copy with the longer history: every posterior has seen
  between R/2 and R frames, never an unbounded stream, and no word is cut by a reset.

Only keywords fire events (not ``_silence_`` or ``_unknown_``), once per crossing of
their threshold; after an event the detector stays quiet for ``refractory`` seconds.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kws.artifact import DetectorConfig, ModelInfo
from kws.data import keywords_of
from kws.features import StreamingFrontend
from kws.progress import bar
from kws.runtime import Runner

DEFAULT_THRESHOLD = 0.6
# A keyword that fired is re-armed once its average falls this far below its threshold: a
# posterior the model holds right at the threshold (int8 steps of 1/256) would otherwise
# flicker across it and fire again after the refractory period.
REARM_MARGIN = 0.1
# The firmware's stateful streaming (kws export): one copy of the step model, reset every
# 100 frames (2 s). Two staggered copies find more keywords (validation stream at 30
# false alarms an hour: 79.6% against 72.5%) but one invoke of the bundled LSTM costs
# 258k Cortex-M4F instructions, and two do not fit a quarter of a 64 MHz core.
FIRMWARE_COPIES = 1
FIRMWARE_RESET_EVERY = 100


@dataclass(frozen=True)
class Detection:
    """A keyword event: ``time`` in seconds from the start of the stream, at the detection."""

    label: str
    time: float
    score: float

    def to_dict(self) -> dict[str, float | str]:
        return {"label": self.label, "time": round(self.time, 3), "score": round(self.score, 4)}


def mean_oldest_first(rows: Iterable[np.ndarray]) -> np.ndarray:
    """The mean of ``rows`` in float32: summed oldest (first) to newest, then divided by
    their number, the firmware's order of operations, so both round every average alike."""
    it = iter(rows)
    total = np.array(next(it), dtype=np.float32)
    count = 1
    for row in it:
        total += row
        count += 1
    return total / np.float32(count)


def moving_average(posteriors: np.ndarray, window: int) -> np.ndarray:
    """Row ``i``: the mean of rows ``max(0, i - window + 1)`` to ``i``, in float32.

    Each row is :func:`mean_oldest_first` of its window (computed for all rows at once).

    Parameters
    ----------
    posteriors : np.ndarray
        Shape (n, labels).
    window : int
        Rows averaged (fewer at the start).
    """
    rows = np.asarray(posteriors, dtype=np.float32)
    out = np.empty_like(rows)
    for i in range(min(window - 1, len(rows))):  # the first rows: fewer in the window
        out[i] = mean_oldest_first(rows[: i + 1])
    if len(rows) >= window:  # the same sums, every full window at once
        total = rows[: len(rows) - window + 1].copy()
        for j in range(1, window):
            total += rows[j : len(rows) - window + 1 + j]
        out[window - 1 :] = total / np.float32(window)
    return out


class PosteriorSmoother:
    """Moving average of posteriors, per-keyword thresholds and a refractory period.

    A keyword fires when its smoothed probability is the largest and reaches its
    threshold, and then not again until that probability has fallen back below the
    threshold by ``REARM_MARGIN``: a word fires once however long the model holds its
    posterior (the step model's state keeps a word for up to a reset period, measured: a
    second event 1.0 s after the first on most words without re-arming; and a held
    posterior at 0.95 against a threshold of 0.95 fired twice without the margin).

    Parameters
    ----------
    labels : sequence of str
        The model's labels (``_silence_``, ``_unknown_``, keywords...).
    thresholds : float or mapping
        Smoothed probability a keyword must reach; one value for all, or per keyword
        (keywords missing from the mapping use ``DEFAULT_THRESHOLD``).
    window : int
        Number of posteriors averaged.
    refractory : float
        Seconds after an event during which no other event fires.

    Posteriors, averages and thresholds are float32, summed as :func:`mean_oldest_first`
    does, so the firmware (``kws_posterior.c``, single precision on a Cortex-M4F) decides
    every frame exactly as this class does.
    """

    @classmethod
    def from_config(cls, info: ModelInfo, config: DetectorConfig) -> PosteriorSmoother:
        """The smoother ``config`` gives the model ``info`` describes (thresholds None: the default)."""
        thresholds = DEFAULT_THRESHOLD if config.thresholds is None else config.thresholds
        return cls(info.labels, thresholds, config.smoothing_window(info), config.refractory)

    def __init__(
        self,
        labels: tuple[str, ...],
        thresholds: float | Mapping[str, float] = DEFAULT_THRESHOLD,
        window: int = 3,
        refractory: float = 1.0,
    ) -> None:
        if window < 1:
            raise ValueError("the smoothing window needs at least one posterior")
        self.labels = labels
        keywords = keywords_of(labels)
        per_label = thresholds if isinstance(thresholds, Mapping) else dict.fromkeys(keywords, thresholds)
        # Silence and unknown never fire: a threshold above any probability.
        configured = [per_label.get(label, DEFAULT_THRESHOLD) for label in labels]
        self._keyword_thresholds = dict(zip(keywords, map(float, configured[2:]), strict=True))
        self.thresholds = np.array(configured, dtype=np.float32)
        self.thresholds[:2] = np.inf
        self.rearm_levels = self.thresholds - np.float32(REARM_MARGIN)
        self.history: deque[np.ndarray] = deque(maxlen=window)
        self.refractory = refractory
        self.reset()

    @property
    def keyword_thresholds(self) -> dict[str, float]:
        """The threshold of each keyword, as given (compared in float32)."""
        return dict(self._keyword_thresholds)

    def reset(self) -> None:
        self.history.clear()
        self.last_event = -np.inf
        self.armed = np.ones(len(self.labels), dtype=bool)

    def push(self, probabilities: np.ndarray, time: float) -> Detection | None:
        """Add one posterior vector taken at ``time``; return an event if one fires."""
        self.history.append(np.asarray(probabilities, dtype=np.float32))
        smoothed = mean_oldest_first(self.history)
        self.armed |= smoothed < self.rearm_levels
        best = int(np.argmax(smoothed))
        if (
            smoothed[best] < self.thresholds[best]
            or not self.armed[best]
            or time - self.last_event < self.refractory
        ):
            return None
        self.armed[best] = False
        self.last_event = time
        return Detection(self.labels[best], time, float(smoothed[best]))


def detector_config(info: ModelInfo, config: DetectorConfig | None = None, **settings: Any) -> DetectorConfig:
    """The settings a detector of the model ``info`` describes runs with.

    ``config`` (default: the settings stored in the model, else ``DetectorConfig()``) with
    ``settings`` replacing its fields; thresholds left None are the model's stored ones,
    else :data:`DEFAULT_THRESHOLD`.
    """
    config = dataclasses.replace(config or info.detector or DetectorConfig(), **settings)
    if config.thresholds is None:
        stored = info.detector.thresholds if info.detector is not None else None
        config = dataclasses.replace(config, thresholds=DEFAULT_THRESHOLD if stored is None else stored)
    return config


class StatefulPosteriors:
    """A step model's posteriors: one invoke per frame, the LSTM state carried between them.

    With ``reset_every`` R and two copies, copy i restarts every R frames, R/2 frames
    after copy i-1, and each posterior is the one of the copy with the longer history
    (the firmware's ``KwsStreamModel`` for a step model).

    Parameters
    ----------
    runner : Runner
        A ``step`` model; a second copy is made for ``copies=2``.
    reset_every : int
        Frames between resets of each copy (0: one copy, never reset).
    copies : int
        1 or 2 (see :class:`DetectorConfig`).
    """

    def __init__(self, runner: Runner, reset_every: int, copies: int) -> None:
        self.runners = [runner] + [runner.copy() for _ in range(copies - 1)]
        self.reset_every = reset_every
        self.frames = 0

    def reset(self) -> None:
        self.frames = 0
        for r in self.runners:
            r.reset()

    def push(self, frame: np.ndarray) -> np.ndarray:
        """Feed one feature frame; return the posterior."""
        self.frames += 1
        if not self.reset_every:
            return self.runners[0].invoke(frame[None])
        half = self.reset_every // 2
        # Copy 0 restarts at frames 0, R, 2R...; copy 1 at R/2, 3R/2...
        ages = [(self.frames - 1 - i * half) % self.reset_every for i in range(len(self.runners))]
        outputs = []
        for r, age in zip(self.runners, ages, strict=True):
            if age == 0:
                r.reset()
            outputs.append(r.invoke(frame[None]))
        return outputs[ages.index(max(ages))]


class WindowedPosteriors:
    """A whole-clip model's posteriors: run on the last ``clip_frames`` frames every
    ``hop_frames`` frames, state reset before each run (the firmware's ``KwsStreamModel``
    for a clip model).

    Parameters
    ----------
    runner : Runner
        A ``clip`` model.
    hop_frames : int
        Frames between runs, once the first whole clip is in.
    """

    def __init__(self, runner: Runner, hop_frames: int) -> None:
        self.runners = [runner]
        self.hop_frames = hop_frames
        self.window: deque[np.ndarray] = deque(maxlen=runner.info.frontend.clip_frames)
        self.frames = 0

    def reset(self) -> None:
        self.frames = 0
        self.window.clear()

    def push(self, frame: np.ndarray) -> np.ndarray | None:
        """Feed one feature frame; return the posterior when the model runs on this frame."""
        self.frames += 1
        self.window.append(frame)
        full = len(self.window) == self.window.maxlen
        if full and (self.frames - len(self.window)) % self.hop_frames == 0:
            return self.runners[0].run_clip(np.stack(self.window))
        return None


class Detector:
    """The streaming pipeline over one model.

    audio -> :class:`kws.features.StreamingFrontend` -> :class:`StatefulPosteriors` (a
    step model) or :class:`WindowedPosteriors` (a clip model) -> :class:`PosteriorSmoother`
    -> events, as the firmware's front-end, model and posterior files.

    Parameters
    ----------
    runner : Runner
        A ``clip`` model (windowed mode) or a ``step`` model (stateful mode).
    config : DetectorConfig, optional
        The settings (default: those stored in the model, else ``DetectorConfig()``).
    **settings
        Any :class:`DetectorConfig` field, replacing ``config``'s:
        ``Detector(runner, thresholds=0.5)``.

    ``config`` holds the settings in use (:func:`detector_config`).
    """

    def __init__(self, runner: Runner, config: DetectorConfig | None = None, **settings: Any) -> None:
        info = runner.info
        config = detector_config(info, config, **settings)
        self.config = config
        self.runner = runner
        self.mode = "stateful" if info.kind == "step" else "windowed"
        self.frontend = StreamingFrontend(info.frontend)
        self.frame_seconds = info.frontend.frame_seconds
        self.model: StatefulPosteriors | WindowedPosteriors = (
            StatefulPosteriors(runner, config.reset_every, config.model_copies(info))
            if info.kind == "step"
            else WindowedPosteriors(runner, config.hop(info))
        )
        self.smoother = PosteriorSmoother.from_config(info, config)
        self.frame_count = 0
        self.probabilities: np.ndarray | None = None  # latest posterior, for live displays
        self.reset()

    @property
    def runners(self) -> list[Runner]:
        """The interpreters the detector runs (two for staggered copies of a step model)."""
        return self.model.runners

    def reset(self) -> None:
        """Start a new stream."""
        self.frontend.reset()
        self.smoother.reset()
        self.model.reset()
        self.frame_count = 0
        self.probabilities = None

    @property
    def time(self) -> float:
        """Seconds from the start of the stream to the end of the latest frame's window."""
        return (self.frame_count - 1) * self.frame_seconds + self.frontend.config.window_ms / 1000

    def posterior(self, frame: np.ndarray) -> np.ndarray | None:
        """Feed one feature frame; return the model's posterior when it runs on this frame."""
        self.frame_count += 1
        return self.model.push(frame)

    def posteriors(self, audio: np.ndarray) -> Iterator[tuple[float, np.ndarray]]:
        """Feed audio samples (any number); yield (time, posterior) each time the model runs."""
        for frame in self.frontend.push(audio):
            probabilities = self.posterior(frame)
            if probabilities is not None:
                self.probabilities = probabilities
                yield self.time, probabilities

    def push(self, audio: np.ndarray) -> list[Detection]:
        """Feed audio samples (any number); return the events they completed."""
        events = []
        for time, probabilities in self.posteriors(audio):
            event = self.smoother.push(probabilities, time)
            if event is not None:
                events.append(event)
        return events


def audio_chunks(
    audio: np.ndarray, chunk: int, rate: int, *, desc: str = "detector", progress: bool = False
) -> Iterator[np.ndarray]:
    """``audio`` (``rate`` samples a second) ``chunk`` samples at a time; ``progress``: a bar over
    its seconds on stderr, whole ones (a bar of fractions shows them to the last float digit)."""
    with bar(
        desc=desc, total=math.ceil(len(audio) / rate), unit=" s", enabled=progress, leave=False
    ) as shown:
        for start in range(0, len(audio), chunk):
            yield audio[start : start + chunk]
            shown.update(math.ceil(min(start + chunk, len(audio)) / rate) - shown.n)


def detect(
    detector: Detector, audio: np.ndarray, chunk: int = 1600, *, progress: bool = False
) -> list[Detection]:
    """Run a fresh stream through ``detector``, fed ``chunk`` samples at a time (100 ms by
    default); ``progress``: a bar over the seconds of audio on stderr (:mod:`kws.progress`)."""
    detector.reset()
    events = []
    for piece in audio_chunks(audio, chunk, detector.frontend.config.sample_rate, progress=progress):
        events += detector.push(piece)
    return events
