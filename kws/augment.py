"""Training-time augmentation on audio clips: time shift, gain, background noise.

With a few hundred clips a word, these are what lets the model generalise to
speakers it has not heard. Each function takes the random generator explicitly, so a
seeded run is reproducible. Noise comes from the training part of the background
recordings only (see :data:`kws.data.NOISE_REGIONS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.audio import DEFAULT_SAMPLE_RATE
from kws.data import noise_audio, random_noise_slice


@dataclass(frozen=True)
class AugmentConfig:
    """How strongly to augment (defaults follow TensorFlow's reference recipe).

    Parameters
    ----------
    time_shift_ms : float
        Shift each clip by a uniform random amount in [-time_shift_ms, +time_shift_ms],
        filling with zeros.
    gain_db : float
        Scale each clip by a uniform random gain in [-gain_db, +gain_db] dB.
    noise_probability : float
        Chance that a clip gets background noise mixed in.
    noise_max_gain : float
        Mixed noise is scaled by a uniform random factor in [0, noise_max_gain).
    """

    time_shift_ms: float = 100.0
    gain_db: float = 6.0
    noise_probability: float = 0.8
    noise_max_gain: float = 0.1


def time_shift(audio: np.ndarray, shift: int) -> np.ndarray:
    """Move ``audio`` later by ``shift`` samples (earlier if negative), zero-filled, same length."""
    out = np.zeros_like(audio)
    if shift >= 0:
        out[shift:] = audio[: len(audio) - shift]
    else:
        out[:shift] = audio[-shift:]
    return out


def augment_clip(
    audio: np.ndarray,
    rng: np.random.Generator,
    noise_files: Sequence[Path] = (),
    config: AugmentConfig = AugmentConfig(),
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> np.ndarray:
    """One random augmentation of a clip: shift, then gain, then noise; clipped to [-1, 1].

    Parameters
    ----------
    audio : np.ndarray, 1-D
        The clip (already fitted to the model's clip length).
    rng : np.random.Generator
        Source of randomness.
    noise_files : sequence of path
        Background-noise recordings; no noise is mixed when empty.
    config : AugmentConfig
    sample_rate : int
        Sample rate of ``audio`` in Hz.

    Returns
    -------
    np.ndarray, float32, same length as ``audio``
    """
    max_shift = round(config.time_shift_ms * sample_rate / 1000)
    out = time_shift(np.asarray(audio, dtype=np.float32), int(rng.integers(-max_shift, max_shift + 1)))
    out = out * np.float32(10 ** (rng.uniform(-config.gain_db, config.gain_db) / 20))
    if noise_files and rng.uniform() < config.noise_probability:
        gain = float(rng.uniform(0, config.noise_max_gain))
        noise = random_noise_slice(noise_files, "train", len(out), rng, gain, sample_rate)
        out = out + noise_audio(noise, len(out), sample_rate)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
