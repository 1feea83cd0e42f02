"""The MFCC front-end: one definition for training, the host runner and the C export.

Per frame (every ``hop`` samples, a ``window``-sample slice, no centre padding)::

    frame * periodic Hann  ->  |rFFT(n_fft)|^2  ->  HTK mel triangles (peak 1)
    ->  ln(max(energy, log_floor))  ->  orthonormal DCT-II, first n_mfcc
    ->  (c - mean) / std            (per coefficient, measured on the training set)

Each step is a table lookup, a product or an FFT, so the C front-end computes the same
numbers from tables generated out of the same :class:`FrontendConfig`. The batch
function :func:`features` and :class:`StreamingFrontend` share :func:`frames_to_cepstra`,
so they agree to the last bit of float precision. This module must not import librosa:
librosa only cross-checks it in the tests.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from kws.errors import KwsError
from kws.fileio import parse_json_object


class FrontendError(KwsError):
    """A front-end configuration that is invalid or does not match a model's."""


@dataclass(frozen=True)
class FrontendConfig:
    """Every parameter of the front-end; saved inside each model so features always match.

    Parameters
    ----------
    sample_rate : int
        Audio sample rate in Hz.
    window_ms, hop_ms : float
        Analysis window and hop in milliseconds (40 ms and 20 ms: 640 and 320 samples).
    n_fft : int
        FFT size, a power of two at least the window length (the window is zero-padded).
    n_mels : int
        Number of mel bands.
    fmin, fmax : float
        Lower and upper edge of the mel filterbank in Hz.
    n_mfcc : int
        Cepstral coefficients kept (c0 included).
    log_floor : float
        Mel energies are clamped to at least this before the natural log, so digital
        silence gives a finite value.
    clip_ms : float
        Length of one model input in milliseconds (1000 ms gives 49 frames).
    mean, std : tuple of float or None
        Per-coefficient normalisation measured on the training set; ``None`` until fitted.
        One int8 scale over raw cepstra would crush c1..c9 under c0's range.
    """

    sample_rate: int = 16000
    window_ms: float = 40.0
    hop_ms: float = 20.0
    n_fft: int = 1024
    n_mels: int = 40
    fmin: float = 20.0
    fmax: float = 4000.0
    n_mfcc: int = 10
    log_floor: float = 1e-6
    clip_ms: float = 1000.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate <= 0:
            problems.append("sample_rate must be positive")
        if not 0 < self.hop_length <= self.window_length:
            problems.append("hop must be positive and no longer than the window")
        if self.n_fft < self.window_length or self.n_fft & (self.n_fft - 1):
            problems.append("n_fft must be a power of two no smaller than the window")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            problems.append("need 0 <= fmin < fmax <= sample_rate / 2")
        if not 0 < self.n_mfcc <= self.n_mels:
            problems.append("need 0 < n_mfcc <= n_mels")
        if self.log_floor <= 0:
            problems.append("log_floor must be positive")
        if self.clip_samples < self.window_length:
            problems.append("clip_ms must hold at least one window")
        if (self.mean is None) != (self.std is None):
            problems.append("mean and std must be given together")
        if self.mean is not None and self.std is not None:
            if len(self.mean) != self.n_mfcc or len(self.std) != self.n_mfcc:
                problems.append(f"mean and std need {self.n_mfcc} values each")
            elif not all(s > 0 for s in self.std):
                problems.append("std values must be positive")
        if problems:
            raise FrontendError("invalid front-end config: " + "; ".join(problems))

    @property
    def window_length(self) -> int:
        """Window length in samples."""
        return round(self.sample_rate * self.window_ms / 1000)

    @property
    def hop_length(self) -> int:
        """Hop in samples."""
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def clip_samples(self) -> int:
        """Samples in one model input."""
        return round(self.sample_rate * self.clip_ms / 1000)

    @property
    def clip_frames(self) -> int:
        """Frames in one model input (49 for the default)."""
        return frame_count(self.clip_samples, self)

    @property
    def normalised(self) -> bool:
        """Whether the per-coefficient normalisation has been fitted."""
        return self.mean is not None

    def with_normalisation(self, mean: np.ndarray, std: np.ndarray) -> FrontendConfig:
        """Return a copy with the given per-coefficient mean and std."""
        return dataclasses.replace(self, mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        d = dataclasses.asdict(self)
        for key in ("mean", "std"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FrontendConfig:
        """Rebuild a config from :meth:`to_dict`'s output; unknown keys are an error."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise FrontendError(f"unknown front-end config keys: {', '.join(unknown)}")
        values = dict(d)
        for key in ("mean", "std"):
            if values.get(key) is not None:
                values[key] = tuple(float(v) for v in values[key])
        return cls(**values)

    def to_json(self) -> str:
        """The config as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FrontendConfig:
        """Rebuild a config from :meth:`to_json`'s output."""
        return cls.from_dict(parse_json_object(text, "front-end config", FrontendError))


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``2595 * log10(1 + hz / 700)``."""
    return np.asarray(2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0))


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    return np.asarray(700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0))


def hann_window(length: int) -> np.ndarray:
    """Periodic Hann window of ``length`` samples (the DFT-even form STFTs use)."""
    n = np.arange(length, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular HTK mel filters over the rFFT bins, each peaking at 1 (no area norm).

    Parameters
    ----------
    sample_rate : int
        Sample rate in Hz.
    n_fft : int
        FFT size; the filters cover its ``n_fft // 2 + 1`` bins.
    n_mels : int
        Number of bands.
    fmin, fmax : float
        Band edges in Hz: ``n_mels + 2`` points evenly spaced in mel between them give
        each triangle's left edge, peak and right edge.

    Returns
    -------
    np.ndarray, float64, shape (n_mels, n_fft // 2 + 1)
    """
    bin_hz = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    left, centre, right = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz - left) / (centre - left)
    falling = (right - bin_hz) / (right - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def dct_matrix(n_mfcc: int, n_mels: int) -> np.ndarray:
    """Orthonormal DCT-II rows 0..n_mfcc-1 over ``n_mels`` inputs, shape (n_mfcc, n_mels)."""
    k = np.arange(n_mfcc, dtype=np.float64)[:, None]
    n = np.arange(n_mels, dtype=np.float64)[None, :]
    basis = np.cos(np.pi * k * (2.0 * n + 1.0) / (2.0 * n_mels)) * np.sqrt(2.0 / n_mels)
    basis[0] /= np.sqrt(2.0)
    return basis


@dataclass(frozen=True)
class _Tables:
    window: np.ndarray
    mel: np.ndarray  # transposed: (n_fft // 2 + 1, n_mels), for frames @ mel
    dct: np.ndarray  # transposed: (n_mels, n_mfcc)


@functools.lru_cache(maxsize=8)
def _tables(config: FrontendConfig) -> _Tables:
    mel = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)
    return _Tables(
        window=hann_window(config.window_length),
        mel=np.ascontiguousarray(mel.T),
        dct=np.ascontiguousarray(dct_matrix(config.n_mfcc, config.n_mels).T),
    )


def frame_count(n_samples: int, config: FrontendConfig) -> int:
    """Number of complete frames in ``n_samples`` samples (no centre padding)."""
    if n_samples < config.window_length:
        return 0
    return 1 + (n_samples - config.window_length) // config.hop_length


def frames_to_cepstra(frames: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Raw MFCCs (before normalisation) of audio frames.

    Parameters
    ----------
    frames : np.ndarray, shape (k, window_length)
        Audio frames, float samples in [-1, 1].
    config : FrontendConfig

    Returns
    -------
    np.ndarray, float64, shape (k, n_mfcc)
    """
    t = _tables(config)
    spectrum = np.fft.rfft(frames * t.window, n=config.n_fft, axis=-1)
    power = spectrum.real**2 + spectrum.imag**2
    log_mel = np.log(np.maximum(power @ t.mel, config.log_floor))
    return np.asarray(log_mel @ t.dct)


def normalise(cepstra: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Apply the config's per-coefficient normalisation (none if not fitted); float32 out."""
    if config.mean is None or config.std is None:
        return cepstra.astype(np.float32)
    mean = np.asarray(config.mean)
    std = np.asarray(config.std)
    return ((cepstra - mean) / std).astype(np.float32)


def features(audio: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """MFCC features of a whole signal, normalised when the config has been fitted.

    Parameters
    ----------
    audio : np.ndarray, 1-D
        Samples at ``config.sample_rate``, floats in [-1, 1].
    config : FrontendConfig

    Returns
    -------
    np.ndarray, float32, shape (frame_count(len(audio)), n_mfcc)
    """
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise FrontendError(f"features need 1-D mono audio, got shape {audio.shape}")
    n = frame_count(len(audio), config)
    if n == 0:
        return np.zeros((0, config.n_mfcc), dtype=np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(audio, config.window_length)
    return normalise(frames_to_cepstra(windows[:: config.hop_length][:n], config), config)


def fit_clip(audio: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Zero-pad at the end, or cut, ``audio`` to exactly one clip (``config.clip_samples``)."""
    n = config.clip_samples
    if len(audio) >= n:
        return audio[:n]
    return np.pad(audio, (0, n - len(audio)))


def clip_features(audio: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Features of one model input: the clip fitted to ``clip_ms``, shape (clip_frames, n_mfcc)."""
    return features(fit_clip(audio, config), config)


def fit_normalisation(cepstra: np.ndarray, config: FrontendConfig) -> FrontendConfig:
    """Measure per-coefficient mean and std over raw cepstra and return the fitted config.

    Parameters
    ----------
    cepstra : np.ndarray, shape (..., n_mfcc)
        Raw features of the training set (from an unfitted config).
    config : FrontendConfig
        The config they were computed with; must not be fitted already.
    """
    if config.normalised:
        raise FrontendError("config is already normalised; fit on raw cepstra from an unfitted config")
    flat = np.asarray(cepstra, dtype=np.float64).reshape(-1, config.n_mfcc)
    if len(flat) < 2:
        raise FrontendError("need at least two frames to measure normalisation")
    return config.with_normalisation(flat.mean(axis=0), np.maximum(flat.std(axis=0), 1e-6))


class StreamingFrontend:
    """The front-end fed audio in chunks of any size, emitting each frame when complete.

    After ``n`` samples in total it has emitted exactly ``frame_count(n, config)`` frames,
    equal to :func:`features` over those samples. It keeps only the samples of frames not
    yet complete (less than one window), as the C front-end does.

    Parameters
    ----------
    config : FrontendConfig
    """

    def __init__(self, config: FrontendConfig) -> None:
        self.config = config
        self._pending = np.zeros(0, dtype=np.float64)
        self.frames_emitted = 0

    def reset(self) -> None:
        """Forget buffered audio (start of a new stream)."""
        self._pending = np.zeros(0, dtype=np.float64)
        self.frames_emitted = 0

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add samples; return the frames they completed, shape (k, n_mfcc), float32."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 1:
            raise FrontendError(f"audio chunks must be 1-D mono, got shape {chunk.shape}")
        self._pending = np.concatenate([self._pending, chunk])
        if len(self._pending) < self.config.window_length:
            return np.zeros((0, self.config.n_mfcc), dtype=np.float32)
        out = features(self._pending, self.config)
        # The next frame starts one hop after the last emitted one.
        self._pending = self._pending[len(out) * self.config.hop_length :]
        self.frames_emitted += len(out)
        return out
