"""Streaming detection: audio chunks in, keyword events out.

    audio chunks -> StreamingFrontend -> model -> moving average -> threshold -> events

Two inference modes, chosen by the model file:

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
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from kws.artifact import ModelInfo
from kws.features import StreamingFrontend
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
        per_label = thresholds if isinstance(thresholds, Mapping) else dict.fromkeys(labels[2:], thresholds)
        # Silence and unknown never fire: a threshold above any probability.
        configured = [per_label.get(label, DEFAULT_THRESHOLD) for label in labels]
        self._keyword_thresholds = dict(zip(labels[2:], map(float, configured[2:]), strict=True))
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


@dataclass(frozen=True)
class DetectorConfig:
    """How a :class:`Detector` turns a model's posteriors into events: everything but the model.

    The defaults are those of ``kws stream`` and ``kws listen``; ``kws export`` writes the
    firmware's from the same class.

    Parameters
    ----------
    thresholds : float or mapping, optional
        Per-keyword thresholds; by default those stored in the model file, else
        ``DEFAULT_THRESHOLD``.
    smoothing : float
        Seconds of posteriors averaged.
    refractory : float
        Seconds of quiet after an event.
    hop_frames : int
        Windowed mode: run the model every this many frames (1 = every 20 ms hop).
    reset_every : int
        Stateful mode: reset each copy of the step model every this many frames (75 =
        1.5 s; 0: one copy, never reset). On a 1-h stream the never-reset state gave 2.3x
        the false alarms at 5 points lower hit rate.
    copies : int
        Stateful mode with ``reset_every``: 2 runs two copies reset ``reset_every // 2``
        frames apart, the posterior from the one with the longer history (no word is cut
        by a reset); 1 runs one copy (half the work: a word across a reset is cut).
    """

    thresholds: float | Mapping[str, float] | None = None
    smoothing: float = 0.06
    refractory: float = 1.0
    hop_frames: int = 1
    reset_every: int = 75
    copies: int = 2

    def __post_init__(self) -> None:
        if self.copies not in (1, 2):
            raise ValueError("copies must be 1 or 2")
        if self.hop_frames < 1 or self.reset_every < 0 or self.smoothing <= 0 or self.refractory < 0:
            raise ValueError(
                "hop_frames must be at least 1, smoothing positive, reset_every and refractory >= 0"
            )

    def hop(self, info: ModelInfo) -> int:
        """Frames between model runs: ``hop_frames`` for a whole-clip model, 1 for a step model."""
        return 1 if info.kind == "step" else self.hop_frames

    def model_copies(self, info: ModelInfo) -> int:
        """Interpreters of the model the detector runs (2 only for a step model reset in turns)."""
        return 2 if info.kind == "step" and self.reset_every and self.copies == 2 else 1

    def smoother(self, info: ModelInfo) -> PosteriorSmoother:
        """The smoothing and thresholds these settings give the model ``info`` describes."""
        thresholds = self.thresholds
        if thresholds is None:
            thresholds = info.extra.get("thresholds", DEFAULT_THRESHOLD)
        window = max(1, round(self.smoothing / (info.frontend.frame_seconds * self.hop(info))))
        return PosteriorSmoother(info.labels, thresholds, window, self.refractory)


class Detector:
    """The streaming pipeline over one model.

    Parameters
    ----------
    runner : Runner
        A ``clip`` model (windowed mode) or a ``step`` model (stateful mode).
    config : DetectorConfig, optional
        The settings (default: ``DetectorConfig()``).
    **settings
        Any :class:`DetectorConfig` field, replacing ``config``'s:
        ``Detector(runner, thresholds=0.5)``.
    """

    def __init__(self, runner: Runner, config: DetectorConfig | None = None, **settings: Any) -> None:
        config = dataclasses.replace(config or DetectorConfig(), **settings)
        info = runner.info
        self.config = config
        self.runner = runner
        self.mode = "stateful" if info.kind == "step" else "windowed"
        self.frontend = StreamingFrontend(info.frontend)
        self.frame_seconds = info.frontend.frame_seconds
        self.hop_frames = config.hop(info)
        self.reset_every = config.reset_every
        # Stateful with resets: a second interpreter of the same bytes, reset half a period later.
        self.runners = [runner] + [runner.copy() for _ in range(config.model_copies(info) - 1)]
        self.smoother = config.smoother(info)
        self.frames: deque[np.ndarray] = deque(maxlen=info.frontend.clip_frames)
        self.frame_count = 0
        self.probabilities: np.ndarray | None = None  # latest posterior, for live displays
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self.frontend.reset()
        self.smoother.reset()
        self.frames.clear()
        self.frame_count = 0
        self.probabilities = None
        for r in self.runners:
            r.reset()

    @property
    def time(self) -> float:
        """Seconds from the start of the stream to the end of the latest frame's window."""
        return (self.frame_count - 1) * self.frame_seconds + self.frontend.config.window_ms / 1000

    def posterior(self, frame: np.ndarray) -> np.ndarray | None:
        """Feed one feature frame; return the model's posterior when it runs on this frame."""
        self.frame_count += 1
        if self.mode == "stateful":
            if not self.reset_every:
                return self.runner.invoke(frame[None])
            half = self.reset_every // 2
            # Copy 0 restarts at frames 0, R, 2R...; copy 1 at R/2, 3R/2...
            ages = [(self.frame_count - 1 - i * half) % self.reset_every for i in range(len(self.runners))]
            outputs = []
            for r, age in zip(self.runners, ages, strict=True):
                if age == 0:
                    r.reset()
                outputs.append(r.invoke(frame[None]))
            return outputs[int(np.argmax(ages))]
        self.frames.append(frame)
        full = len(self.frames) == self.frames.maxlen
        if full and (self.frame_count - len(self.frames)) % self.hop_frames == 0:
            return self.runner.run_clip(np.stack(self.frames))
        return None

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


def detect(detector: Detector, audio: np.ndarray, chunk: int = 1600) -> list[Detection]:
    """Run a fresh stream through ``detector``, fed ``chunk`` samples at a time (100 ms by default)."""
    detector.reset()
    events = []
    for start in range(0, len(audio), chunk):
        events += detector.push(audio[start : start + chunk])
    return events
