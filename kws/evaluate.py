"""Accuracy of a model on a data set: top-1, per-class recall, confusion matrix.

Works on any :class:`~kws.runtime.Runner` (LiteRT, TFLM or the float Keras model), with
features computed by the front-end stored in the model, so no TensorFlow is needed for
``.tflite`` files. The recurrent state is reset before every clip (``run_clip``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kws.audio import load_audio
from kws.data import examples, keywords_of, load_example, negative_files, scan
from kws.errors import DataError
from kws.features import FrontendConfig, clip_features
from kws.progress import bar
from kws.runtime import Runner


@dataclass(frozen=True)
class LabelledFeatures:
    """Model inputs of a data split with their label indices."""

    features: np.ndarray  # (n, frames, n_mfcc), normalised
    labels: np.ndarray  # (n,) index into the label list
    label_names: tuple[str, ...]
    source: str  # "<folder> (<split>)", for reports


def load_features(
    data_dir: str | Path,
    split: str,
    labels: Sequence[str],
    frontend: FrontendConfig,
    *,
    progress: bool = False,
) -> LabelledFeatures:
    """Features and labels of one split of a data folder (either layout).

    Parameters
    ----------
    data_dir : path
        Speech Commands folder or 12-class test folder.
    split : str
        ``train``, ``validation`` or ``test`` (the 12-class layout is all ``test``).
    labels : sequence of str
        The model's labels (:func:`kws.data.keywords_of` gives its keywords).
    frontend : FrontendConfig
        The model's front-end (with its normalisation).
    progress : bool
        Show a progress bar while reading.
    """
    index = scan(data_dir)
    chosen = examples(index, split, keywords_of(labels), clip_samples=frontend.clip_samples)
    if not chosen:
        raise DataError(f"{data_dir}: no clips in split {split!r}")
    feats = np.stack(
        [
            clip_features(load_example(e, frontend.clip_samples, frontend.sample_rate), frontend)
            for e in bar(chosen, desc=f"features {split}", unit=" clips", enabled=progress, leave=False)
        ]
    )
    y = np.array([list(labels).index(e.label) for e in chosen])
    return LabelledFeatures(feats, y, tuple(labels), f"{data_dir} ({split})")


def predict(runner: Runner, features: np.ndarray, *, progress: bool = False, desc: str = "") -> np.ndarray:
    """Probabilities for each clip, shape (n, n_labels); state reset before each clip."""
    return np.stack(
        [
            runner.run_clip(x)
            for x in bar(
                features,
                desc=desc or f"{runner.path.name} {runner.runtime}",
                unit=" clips",
                enabled=progress,
                leave=False,
            )
        ]
    )


@dataclass(frozen=True)
class EvalResult:
    """Predictions on a labelled set, with the usual summaries."""

    label_names: tuple[str, ...]
    y_true: np.ndarray
    probabilities: np.ndarray

    @property
    def y_pred(self) -> np.ndarray:
        return np.asarray(self.probabilities.argmax(axis=1))

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.y_pred == self.y_true))

    @property
    def confusion(self) -> np.ndarray:
        """Rows: true label, columns: predicted label."""
        n = len(self.label_names)
        return np.bincount(self.y_true * n + self.y_pred, minlength=n * n).reshape(n, n)

    @property
    def recall(self) -> dict[str, float | None]:
        """Per-class recall (None for a class absent from the set)."""
        c = self.confusion
        return {
            name: (float(c[i, i] / c[i].sum()) if c[i].sum() else None)
            for i, name in enumerate(self.label_names)
        }

    def to_dict(self) -> dict[str, Any]:
        right = int(np.sum(self.y_pred == self.y_true))
        return {
            "clips": len(self.y_true),
            "accuracy": self.accuracy,
            "accuracy_interval95": list(wilson_interval(right, len(self.y_true))),
            "recall": self.recall,
            "labels": list(self.label_names),
            "confusion": self.confusion.tolist(),
        }


def evaluate(runner: Runner, data: LabelledFeatures, *, progress: bool = False) -> EvalResult:
    """Run ``runner`` over a labelled set."""
    return EvalResult(data.label_names, data.labels, predict(runner, data.features, progress=progress))


def agreement(a: EvalResult, b: EvalResult) -> tuple[float, float]:
    """Top-1 agreement (fraction of clips) and largest absolute probability difference."""
    return float(np.mean(a.y_pred == b.y_pred)), float(np.abs(a.probabilities - b.probabilities).max())


def format_result(result: EvalResult, title: str = "") -> str:
    """Accuracy, per-class recall and the confusion matrix as plain text."""
    names = result.label_names
    lines = [title] if title else []
    low, high = wilson_interval(int(np.sum(result.y_pred == result.y_true)), len(result.y_true))
    lines.append(
        f"accuracy: {result.accuracy:.2%} on {len(result.y_true)} clips (95% interval {low:.1%}-{high:.1%})"
    )
    lines.append("")
    lines.append("recall per class:")
    for name, r in result.recall.items():
        lines.append(f"  {name:<10} {'n/a' if r is None else f'{r:.1%}':>6}")
    lines.append("")
    lines.append("confusion (rows: true, columns: predicted):")
    short = [n.strip("_")[:5] for n in names]
    lines.append(" " * 11 + "".join(f"{s:>6}" for s in short))
    for name, row in zip(short, result.confusion, strict=True):
        lines.append(f"  {name:<9}" + "".join(f"{v:6d}" for v in row))
    return "\n".join(lines)


# 1-s windows of a negative recording start this far apart.
NEGATIVE_HOP_SECONDS = 0.5


def window_starts(length: int, window: int, hop: int) -> range:
    """Starts of the ``window``-sample windows of a ``length``-sample recording, ``hop`` apart
    from 0 (one window at 0 when the recording is shorter than a window)."""
    return range(0, max(length - window, 0) + 1, hop)


def negative_windows(
    audio: np.ndarray, frontend: FrontendConfig, hop_seconds: float = NEGATIVE_HOP_SECONDS
) -> list[np.ndarray]:
    """1-s windows of a recording every ``hop_seconds`` (the whole recording if shorter)."""
    n, hop = frontend.clip_samples, round(frontend.sample_rate * hop_seconds)
    return [audio[start : start + n] for start in window_starts(len(audio), n, hop)]


def load_negative_features(
    folder: str | Path, frontend: FrontendConfig, keywords: Sequence[str], *, progress: bool = False
) -> tuple[np.ndarray, float]:
    """Model inputs of every 1-s window of the recordings under ``folder``, and their minutes of audio.

    Parameters
    ----------
    folder : path
        Recordings that hold no keyword (any audio files, at any depth).
    frontend : FrontendConfig
        The model's front-end.
    keywords : sequence of str
        The model's keywords (a sub-folder named like one gets a warning).
    progress : bool
        Show a progress bar while reading.
    """
    windows, samples = [], 0
    for path in bar(
        negative_files(folder, keywords), desc="negatives", unit=" recordings", enabled=progress, leave=False
    ):
        audio = load_audio(path, frontend.sample_rate)
        samples += len(audio)
        windows += [clip_features(w, frontend) for w in negative_windows(audio, frontend)]
    return np.stack(windows), samples / frontend.sample_rate / 60


@dataclass(frozen=True)
class FalseAccepts:
    """How often a model names a keyword on 1-s windows of speech that holds none."""

    label_names: tuple[str, ...]
    top: np.ndarray  # top label index of each window
    minutes: float

    @property
    def count(self) -> int:
        return int(np.sum(self.top >= 2))

    @property
    def rate(self) -> float:
        """Share of windows whose top label is a keyword."""
        return self.count / len(self.top)

    def to_dict(self) -> dict[str, Any]:
        low, high = wilson_interval(self.count, len(self.top))
        keywords = keywords_of(self.label_names)
        return {
            "windows": len(self.top),
            "minutes": self.minutes,
            "keyword_windows": self.count,
            "false_accept_rate": self.rate,
            "interval95": [low, high],
            "by_keyword": {k: int(np.sum(self.top == i + 2)) for i, k in enumerate(keywords)},
        }


def false_accepts(runner: Runner, folder: str | Path, *, progress: bool = False) -> FalseAccepts:
    """The keyword false-accept rate of ``runner`` on the non-keyword recordings under ``folder``."""
    keywords = keywords_of(runner.info.labels)
    windows, minutes = load_negative_features(folder, runner.info.frontend, keywords, progress=progress)
    top = predict(runner, windows, progress=progress, desc="negative windows").argmax(axis=1)
    return FalseAccepts(tuple(runner.info.labels), top, minutes)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% for z = 1.96); (0, 1) when there are no trials."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def format_false_accepts(result: FalseAccepts, folder: str | Path) -> str:
    """The keyword false-accept rate on a negatives folder, with its interval and the keywords named."""
    d = result.to_dict()
    low, high = d["interval95"]
    named = ", ".join(f"{k} {v}" for k, v in d["by_keyword"].items() if v) or "none"
    return (
        f"keyword false accepts on {folder}: {result.count} of {len(result.top)} 1-s windows "
        f"({result.rate:.2%}, 95% interval {low:.1%}-{high:.1%}; {result.minutes:.1f} min of audio); "
        f"keywords named: {named}"
    )
