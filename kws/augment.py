"""Training-time augmentation: speed, time shift, gain and background noise on audio;
SpecAugment-style masks on features.

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

from kws.audio import DEFAULT_SAMPLE_RATE, resample
from kws.data import noise_audio, random_noise_slice


@dataclass(frozen=True)
class AugmentConfig:
    """How strongly to augment (defaults follow TensorFlow's reference recipe).

    Parameters
    ----------
    speed : float
        Play each clip at a uniform random speed in [1 - speed, 1 + speed] (tempo and
        pitch together, as a resampling does), re-centred to the clip length.
    time_shift_ms : float
        Shift each clip by a uniform random amount in [-time_shift_ms, +time_shift_ms],
        filling with zeros.
    gain_db : float
        Scale each clip by a uniform random gain in [-gain_db, +gain_db] dB.
    noise_probability : float
        Chance that a clip gets background noise mixed in.
    snr_db : tuple of float
        Noise is mixed at a signal-to-noise ratio drawn uniformly from this range (dB,
        relative to the clip's RMS), whatever the level of the noise recording.
    time_masks, time_mask_frames : int
        SpecAugment on features: this many spans of up to ``time_mask_frames`` frames
        are set to 0 (the training mean, once normalised).
    coefficient_masks, coefficient_mask_width : int
        The same across cepstral coefficients.
    """

    speed: float = 0.1
    time_shift_ms: float = 100.0
    gain_db: float = 6.0
    noise_probability: float = 0.8
    snr_db: tuple[float, float] = (5.0, 25.0)
    time_masks: int = 2
    time_mask_frames: int = 5
    coefficient_masks: int = 1
    coefficient_mask_width: int = 2


def time_shift(audio: np.ndarray, shift: int) -> np.ndarray:
    """Move ``audio`` later by ``shift`` samples (earlier if negative), zero-filled, same length."""
    out = np.zeros_like(audio)
    if shift >= 0:
        out[shift:] = audio[: len(audio) - shift]
    else:
        out[:shift] = audio[-shift:]
    return out


def change_speed(audio: np.ndarray, factor: float, sample_rate: int = DEFAULT_SAMPLE_RATE) -> np.ndarray:
    """Play ``audio`` ``factor`` times faster (resampling), then centre-crop or pad to its length."""
    n = len(audio)
    fast = resample(audio, round(sample_rate * factor), sample_rate)
    if len(fast) >= n:
        start = (len(fast) - n) // 2
        return fast[start : start + n]
    before = (n - len(fast)) // 2
    return np.pad(fast, (before, n - len(fast) - before))


def mask_features(features: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """SpecAugment-style masks over normalised features (frames, coefficients): spans set to 0."""
    out = features.copy()
    for axis, count, width in (
        (0, config.time_masks, config.time_mask_frames),
        (1, config.coefficient_masks, config.coefficient_mask_width),
    ):
        for _ in range(count):
            w = int(rng.integers(0, width + 1))
            start = int(rng.integers(0, out.shape[axis] - w + 1))
            if axis == 0:
                out[start : start + w] = 0
            else:
                out[:, start : start + w] = 0
    return out


def augment_clip(
    audio: np.ndarray,
    rng: np.random.Generator,
    noise_files: Sequence[Path] = (),
    config: AugmentConfig = AugmentConfig(),
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> np.ndarray:
    """One random augmentation of a clip: speed, shift, gain, then noise; clipped to [-1, 1].

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
    out = np.asarray(audio, dtype=np.float32)
    if config.speed:
        out = change_speed(out, float(rng.uniform(1 - config.speed, 1 + config.speed)), sample_rate)
    max_shift = round(config.time_shift_ms * sample_rate / 1000)
    out = time_shift(out, int(rng.integers(-max_shift, max_shift + 1)))
    out = out * np.float32(10 ** (rng.uniform(-config.gain_db, config.gain_db) / 20))
    if noise_files and rng.uniform() < config.noise_probability:
        clip_rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
        rms = clip_rms / 10 ** (rng.uniform(*config.snr_db) / 20)
        noise = random_noise_slice(noise_files, "train", len(out), rng, rms, sample_rate)
        out = out + noise_audio(noise, len(out), sample_rate)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
