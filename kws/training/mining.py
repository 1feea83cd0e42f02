"""Hard-negative mining: the training negatives' 1-s windows the model finds most
keyword-like, trained on again the next epoch (``TrainConfig.hard_negatives``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kws.evaluate import window_starts

if TYPE_CHECKING:
    from kws.model import keras
    from kws.training.prepare import TrainingData

MINING_HOP_S = 0.1  # seconds between hard-negative mining windows


def mining_windows(lengths: np.ndarray, clip_samples: int, sample_rate: int) -> list[tuple[int, int]]:
    """Every 1-s window (negative index, start sample) of recordings of these ``lengths``,
    :data:`MINING_HOP_S` apart: the candidates mined each epoch."""
    hop = round(MINING_HOP_S * sample_rate)
    return [
        (i, at) for i, length in enumerate(lengths) for at in window_starts(int(length), clip_samples, hop)
    ]


def clip_probabilities(model: keras.Model, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Each clip's label probabilities at its last frame (a clip model's output, or a sequence
    model's last), ``chunk`` clips at a time (``x`` may be a memory map on disk)."""
    parts = []
    for start in range(0, len(x), chunk):
        probabilities = model.predict(np.asarray(x[start : start + chunk]), verbose=0, batch_size=256)
        parts.append(probabilities[:, -1] if probabilities.ndim == 3 else probabilities)
    return np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32)


def hard_negatives(model: keras.Model, data: TrainingData, count: int) -> list[tuple[int, int]]:
    """The ``count`` mining windows (:attr:`TrainingData.mining`) the model finds most keyword-like."""
    if not count or not data.mining:
        return []
    probabilities = clip_probabilities(model, data.mining_x)
    keyword_like = probabilities[:, 2:].max(axis=1)
    return [data.mining[i] for i in np.argsort(-keyword_like, kind="stable")[:count]]
