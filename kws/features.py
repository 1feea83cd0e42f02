"""The MFCC front-end: one definition for training, the host runner and the C export.

Per frame (every ``hop`` samples, a ``window``-sample slice, no centre padding)::

    frame * periodic Hann  ->  |rFFT(n_fft)|^2  ->  mel triangles
    ->  log                  (ln(max(e, floor)), or the images' 8-bit scale, see ``log``)
    ->  orthonormal DCT-II, first n_mfcc
    ->  (c - mean) / std     (per coefficient, measured on the training set)

Two settings are shipped (:data:`FRONTENDS`): ``hello_edge``, the first release's (40-ms
window, HTK triangles linear in Hz, natural log), and ``logmel_image``, the front-end
that reproduces the log-mel images of the full Speech Commands set (30-ms window,
TensorFlow's triangles linear in mel, ``10 ln(1 + mel / 4.5e-7)`` up to 255, short
clips centred), so a model can be trained on those images and run on audio.

Each step is a table lookup, a product or an FFT, so the C front-end computes the same
numbers from tables generated out of the same :class:`FrontendConfig`. The batch
function :func:`features` and :class:`StreamingFrontend` share :func:`frames_to_cepstra`,
so they agree to the last bit of float precision. This module must not import librosa
or TensorFlow: they only cross-check it in the tests.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Iterable
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
        With ``log="ln"``, mel energies are clamped to at least this before the natural
        log, so digital silence gives a finite value. With ``log="pixel"``, the energy
        where the log bends: ``10 ln(1 + e / log_floor)``.
    clip_ms : float
        Length of one model input in milliseconds (1000 ms gives 49 frames).
    mel_triangles : {"hz", "mel"}
        ``"hz"``: HTK mel triangles linear in Hz over the FFT bins (librosa's
        ``mel(htk=True, norm=None)``). ``"mel"``: triangles linear in mel and the DC bin
        weighted 0 (TensorFlow's ``linear_to_mel_weight_matrix``). Both peak at 1.
    log : {"ln", "pixel"}
        ``"ln"``: ``ln(max(e, log_floor))``. ``"pixel"``: ``min(10 ln(1 + e / log_floor),
        255)``, the log-mel of the Speech Commands images on their 0..255 scale (not
        rounded: the images' rounding is part of their JPEG noise).
    centre_clips : bool
        How one clip becomes a model input: if true, trailing zeros are stripped, and a
        clip shorter than ``clip_ms`` is transformed as it is and its frames centred
        between frames of digital silence (as the images were made); if false, the clip
        is zero-padded at the end.
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
    mel_triangles: str = "hz"
    log: str = "ln"
    centre_clips: bool = False

    def __post_init__(self) -> None:
        _check_types(self)
        problems = []
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            problems.append(f"sample_rate must be {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
        if self.n_fft > MAX_N_FFT:
            problems.append(f"n_fft must be at most {MAX_N_FFT}")
        if not 0 < self.n_mels <= MAX_N_MELS:
            problems.append(f"n_mels must be 1-{MAX_N_MELS}")
        if not 0 < self.clip_ms <= MAX_CLIP_MS:
            problems.append(f"clip_ms must be above 0 and at most {MAX_CLIP_MS:g}")
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
        if self.mel_triangles not in MEL_TRIANGLES:
            problems.append(f"mel_triangles must be one of {', '.join(MEL_TRIANGLES)}")
        if self.log not in LOGS:
            problems.append(f"log must be one of {', '.join(LOGS)}")
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
    def frame_seconds(self) -> float:
        """Seconds between frames: the hop in samples over the rate (what the stream's clock counts)."""
        return self.hop_length / self.sample_rate

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
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)

    def to_json(self) -> str:
        """The config as a JSON string."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FrontendConfig:
        """Rebuild a config from :meth:`to_json`'s output."""
        return cls.from_dict(parse_json_object(text, "front-end config", FrontendError))


def _check_types(config: FrontendConfig) -> None:
    """Refuse values of the wrong type or not finite (metadata is read from files), in one error."""
    problems = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in ("mean", "std"):
            ok = value is None or (
                isinstance(value, tuple)
                and all(
                    isinstance(v, float | int) and not isinstance(v, bool) and math.isfinite(v) for v in value
                )
            )
        elif f.type in ("int", int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif f.type in ("float", float):
            ok = isinstance(value, float | int) and not isinstance(value, bool) and math.isfinite(value)
        elif f.type in ("bool", bool):
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            problems.append(f"{f.name} = {value!r}")
    if problems:
        raise FrontendError("invalid front-end config: wrong type or not finite: " + ", ".join(problems))


# Bounds on what a model's metadata may ask the front-end to allocate and compute.
MIN_SAMPLE_RATE = 8000
MAX_SAMPLE_RATE = 192000
MAX_N_FFT = 4096
MAX_N_MELS = 128
MAX_CLIP_MS = 10000.0
MEL_TRIANGLES = ("hz", "mel")
LOGS = ("ln", "pixel")
# The images' scale: 10 ln(1 + e / floor), about 2.3 pixels per dB, saturating at 8 bits.
PIXEL_SCALE = 10.0
PIXEL_MAX = 255.0

# The shipped settings. ``logmel_image`` is the recovered front-end of the full-set
# log-mel images (../shared/data/README.md) at a 20-ms hop: the images' 10-ms rows,
# every other one.
FRONTENDS: dict[str, FrontendConfig] = {
    "hello_edge": FrontendConfig(),
    "logmel_image": FrontendConfig(
        window_ms=30.0,
        hop_ms=20.0,
        n_fft=512,
        n_mels=40,
        fmin=0.0,
        fmax=4000.0,
        n_mfcc=10,
        log_floor=4.5e-7,
        mel_triangles="mel",
        log="pixel",
        centre_clips=True,
    ),
}


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


def mel_weights_linear_in_mel(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """Mel triangles linear in mel, DC bin weighted 0, each peaking at 1.

    The construction of TensorFlow's ``tf.signal.linear_to_mel_weight_matrix`` (computed
    here in float64; the tests compare the two): each bin's frequency is mapped to mel
    and the triangles are straight lines in mel between ``n_mels + 2`` evenly spaced
    edges from ``fmin`` to ``fmax``.

    Returns
    -------
    np.ndarray, float64, shape (n_mels, n_fft // 2 + 1)
    """
    bin_mel = hz_to_mel(np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1))
    edges = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    weights = np.maximum(
        0.0, np.minimum((bin_mel - left) / (centre - left), (right - bin_mel) / (right - centre))
    )
    weights[:, 0] = 0.0
    return weights


def mel_weights(config: FrontendConfig) -> np.ndarray:
    """The config's mel filterbank, shape (n_mels, n_fft // 2 + 1), float64."""
    build = mel_filterbank if config.mel_triangles == "hz" else mel_weights_linear_in_mel
    return build(config.sample_rate, config.n_fft, config.n_mels, config.fmin, config.fmax)


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
    mel = mel_weights(config)
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


def log_energies(energies: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """The config's log of mel energies (``log``: natural log with a floor, or image pixels)."""
    if config.log == "pixel":
        return np.minimum(PIXEL_SCALE * np.log1p(energies / config.log_floor), PIXEL_MAX)
    return np.log(np.maximum(energies, config.log_floor))


def frames_to_log_mel(frames: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Log mel energies of audio frames, shape (k, window_length) -> (k, n_mels), float64."""
    t = _tables(config)
    spectrum = np.fft.rfft(frames * t.window, n=config.n_fft, axis=-1)
    power = spectrum.real**2 + spectrum.imag**2
    return log_energies(power @ t.mel, config)


def log_mel_to_cepstra(log_mel: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Raw MFCCs (orthonormal DCT-II, first n_mfcc) of log mel frames (..., n_mels)."""
    return np.asarray(log_mel @ _tables(config).dct)


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
    return log_mel_to_cepstra(frames_to_log_mel(frames, config), config)


def normalise(cepstra: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Apply the config's per-coefficient normalisation (none if not fitted); float32 out."""
    if config.mean is None or config.std is None:
        return cepstra.astype(np.float32)
    mean = np.asarray(config.mean)
    std = np.asarray(config.std)
    return ((cepstra - mean) / std).astype(np.float32)


def _frames(audio: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """The complete frames of a 1-D signal, shape (frame_count, window_length), float64."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1:
        raise FrontendError(f"features need 1-D mono audio, got shape {audio.shape}")
    n = frame_count(len(audio), config)
    if n == 0:
        return np.zeros((0, config.window_length))
    return np.lib.stride_tricks.sliding_window_view(audio, config.window_length)[:: config.hop_length][:n]


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
    return normalise(frames_to_cepstra(_frames(audio, config), config), config)


def log_mel(audio: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Log mel energies of a whole signal, shape (frame_count(len(audio)), n_mels), float64."""
    return frames_to_log_mel(_frames(audio, config), config)


def fit_clip(audio: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Zero-pad at the end, or cut, ``audio`` to exactly one clip (``config.clip_samples``)."""
    n = config.clip_samples
    if len(audio) >= n:
        return audio[:n]
    return np.pad(audio, (0, n - len(audio)))


def clip_layout(audio: np.ndarray, config: FrontendConfig) -> tuple[np.ndarray, int]:
    """How one clip becomes a model input: the samples its frames come from, and the
    number of frames of digital silence before them (frames of silence also fill the
    input up to ``config.clip_frames`` after them).

    With ``centre_clips``, trailing zeros are stripped, the clip is cut to ``clip_ms``,
    and its ``n`` frames are centred: ``(clip_frames - n) // 2`` silent frames first (the
    images' layout). Otherwise the clip is zero-padded or cut to ``clip_ms``, no lead.
    """
    if not config.centre_clips:
        return fit_clip(audio, config), 0
    nonzero = np.flatnonzero(audio)
    audio = audio[: nonzero[-1] + 1 if len(nonzero) else 0][: config.clip_samples]
    return audio, (config.clip_frames - frame_count(len(audio), config)) // 2


def clip_log_mel(audio: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Log mel frames of one model input, shape (clip_frames, n_mels), float64 (the
    layout of :func:`clip_layout`)."""
    samples, lead = clip_layout(np.asarray(audio, dtype=np.float64), config)
    frames = log_mel(samples, config)
    out = np.repeat(log_energies(np.zeros((1, config.n_mels)), config), config.clip_frames, axis=0)
    out[lead : lead + len(frames)] = frames
    return out


def clip_features(audio: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Features of one model input, shape (clip_frames, n_mfcc) (see :func:`clip_log_mel`)."""
    return normalise(log_mel_to_cepstra(clip_log_mel(audio, config), config), config)


def fit_normalisation(cepstra: np.ndarray | Iterable[np.ndarray], config: FrontendConfig) -> FrontendConfig:
    """Measure per-coefficient mean and std over raw cepstra and return the fitted config.

    Parameters
    ----------
    cepstra : np.ndarray of shape (..., n_mfcc), or an iterable of them
        Raw features of the training set (from an unfitted config). Given in chunks, only
        one chunk is held at a time (the statistics are combined exactly, Chan et al.'s
        pairwise update), so a data set of any size can be measured.
    config : FrontendConfig
        The config they were computed with; must not be fitted already.
    """
    if config.normalised:
        raise FrontendError("config is already normalised; fit on raw cepstra from an unfitted config")
    count, mean, m2 = 0, np.zeros(config.n_mfcc), np.zeros(config.n_mfcc)  # m2: summed squared deviations
    for chunk in [cepstra] if isinstance(cepstra, np.ndarray) else cepstra:
        flat = np.asarray(chunk, dtype=np.float64).reshape(-1, config.n_mfcc)
        if not len(flat):
            continue
        chunk_mean = flat.mean(axis=0)
        delta = chunk_mean - mean
        total = count + len(flat)
        m2 += ((flat - chunk_mean) ** 2).sum(axis=0) + delta**2 * count * len(flat) / total
        mean += delta * len(flat) / total
        count = total
    if count < 2:
        raise FrontendError("need at least two frames to measure normalisation")
    return config.with_normalisation(mean, np.maximum(np.sqrt(m2 / count), 1e-6))


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
