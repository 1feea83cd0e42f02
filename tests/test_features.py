"""The MFCC front-end: librosa cross-check, batch vs streaming parity, config round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.fft

from kws.audio import load_audio
from kws.features import (
    FrontendConfig,
    FrontendError,
    StreamingFrontend,
    clip_features,
    dct_matrix,
    features,
    fit_normalisation,
    frame_count,
    mel_filterbank,
)

CONFIG = FrontendConfig()
# Largest |ours - librosa| over the clips below is 3.8e-6 on cepstra up to ~70 in size
# (float32 inside librosa's filterbank); the bound leaves a margin over that.
LIBROSA_MFCC_ATOL = 1e-4


@pytest.fixture(scope="module")
def clips(speech_commands: Path) -> list[np.ndarray]:
    """Real clips: several words, plus a long noise recording for streaming."""
    words = ["yes", "stop", "left", "bed"]
    paths = [sorted((speech_commands / w).glob("*.wav"))[i] for w in words for i in (0, 5)]
    audio = [load_audio(p) for p in paths]
    audio.append(load_audio(speech_commands / "_background_noise_" / "running_tap.wav")[: 3 * 16000 + 123])
    return audio


def librosa_mfcc(audio: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """The same MFCC from librosa's functions, framed as ours (window at a frame's start)."""
    # librosa centres a short window inside each n_fft frame; padding by that offset
    # makes its frames cover exactly our samples.
    pad = config.n_fft - config.window_length
    padded = np.pad(audio.astype(np.float64), (pad // 2, pad - pad // 2))
    mel = librosa.feature.melspectrogram(
        y=padded,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.window_length,
        window="hann",
        center=False,
        power=2.0,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
        htk=True,
        norm=None,
    )
    log_mel = np.log(np.maximum(mel, config.log_floor))
    return librosa.feature.mfcc(S=log_mel, n_mfcc=config.n_mfcc, dct_type=2, norm="ortho").T


def test_default_is_hello_edge_49x10(clips: list[np.ndarray]) -> None:
    assert (CONFIG.window_length, CONFIG.hop_length, CONFIG.clip_frames) == (640, 320, 49)
    assert clip_features(clips[0], CONFIG).shape == (49, 10)
    assert clip_features(clips[0][:8000], CONFIG).shape == (49, 10)  # short clips are padded


def test_filterbank_matches_librosa_htk() -> None:
    ours = mel_filterbank(16000, 1024, 40, 20.0, 4000.0)
    ref = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=40, fmin=20.0, fmax=4000.0, htk=True, norm=None)
    assert ours.shape == ref.shape == (40, 513)
    assert np.abs(ours - ref).max() < 1e-6


def test_dct_is_orthonormal_dct_ii() -> None:
    x = np.random.default_rng(0).normal(size=(5, 40))
    np.testing.assert_allclose(
        x @ dct_matrix(10, 40).T, scipy.fft.dct(x, type=2, norm="ortho")[:, :10], atol=1e-12
    )


def test_mfcc_matches_librosa_on_real_clips(clips: list[np.ndarray]) -> None:
    for audio in clips:
        ours = features(audio, CONFIG)
        ref = librosa_mfcc(audio, CONFIG)
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() < LIBROSA_MFCC_ATOL


@pytest.mark.parametrize("chunk", [1, 100, 160, 320, 333, 640, 1601, 16000])
def test_streaming_equals_batch(clips: list[np.ndarray], chunk: int) -> None:
    config = CONFIG.with_normalisation(np.full(10, 1.5), np.full(10, 3.0))
    for audio in clips[-2:] if chunk == 1 else clips:
        stream = StreamingFrontend(config)
        out, fed, emitted = [], 0, 0
        for start in range(0, len(audio), chunk):
            part = audio[start : start + chunk]
            frames = stream.push(part)
            fed += len(part)
            emitted += len(frames)
            out.append(frames)
            # A frame comes out as soon as its last sample is in, not later.
            assert emitted == stream.frames_emitted == frame_count(fed, config)
        batch = features(audio, config)
        assert np.abs(np.concatenate(out) - batch).max() <= 1e-5


def test_streaming_with_irregular_chunks_and_reset(clips: list[np.ndarray]) -> None:
    audio = clips[-1]
    sizes = np.random.default_rng(1).integers(0, 900, size=400)
    stream = StreamingFrontend(CONFIG)
    stream.push(np.ones(500, dtype=np.float32))
    stream.reset()
    out, pos = [], 0
    for n in sizes:
        out.append(stream.push(audio[pos : pos + n]))
        pos += n
    assert np.abs(np.concatenate(out) - features(audio[:pos], CONFIG)).max() <= 1e-5


def test_normalisation_fit_centres_and_scales(clips: list[np.ndarray]) -> None:
    raw = np.stack([clip_features(a, CONFIG) for a in clips[:-1]])
    fitted = fit_normalisation(raw, CONFIG)
    normed = np.stack([clip_features(a, fitted) for a in clips[:-1]]).reshape(-1, 10)
    np.testing.assert_allclose(normed.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(normed.std(axis=0), 1, atol=1e-4)
    with pytest.raises(FrontendError, match="already normalised"):
        fit_normalisation(raw, fitted)


def test_config_json_round_trip() -> None:
    fitted = CONFIG.with_normalisation(np.arange(10) * 0.5, np.arange(1, 11) * 0.25)
    back = FrontendConfig.from_json(fitted.to_json())
    assert back == fitted and back.mean == fitted.mean
    assert FrontendConfig.from_json(CONFIG.to_json()) == CONFIG


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_fft": 512}, "n_fft"),
        ({"n_fft": 1000}, "n_fft"),
        ({"fmax": 9000.0}, "fmax"),
        ({"n_mfcc": 41}, "n_mfcc"),
        ({"hop_ms": 50.0}, "hop"),
        ({"mean": (0.0,) * 10}, "together"),
        ({"mean": (0.0,) * 3, "std": (1.0,) * 3}, "10 values"),
    ],
)
def test_invalid_config_is_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(FrontendError, match=message):
        FrontendConfig.from_dict({**CONFIG.to_dict(), **change})


def test_unknown_config_keys_and_bad_json_are_refused() -> None:
    with pytest.raises(FrontendError, match="unknown front-end config keys: n_ceps"):
        FrontendConfig.from_dict({**CONFIG.to_dict(), "n_ceps": 13})
    with pytest.raises(FrontendError, match="not valid JSON"):
        FrontendConfig.from_json("{sample_rate: 16000")


def test_features_module_does_not_import_librosa() -> None:
    code = (
        "import sys; sys.modules['librosa'] = None\n"  # any import of librosa now fails
        "import numpy as np, kws.features as f\n"
        "print(f.clip_features(np.zeros(16000), f.FrontendConfig()).shape)\n"
        "assert not any(m.startswith('librosa') and sys.modules[m] for m in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(49, 10)"
