"""The MFCC front-end: librosa, TensorFlow and image cross-checks, batch vs streaming parity, config round trip."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.fft
from PIL import Image

from kws.audio import load_audio
from kws.features import (
    FRONTENDS,
    FrontendConfig,
    FrontendError,
    StreamingFrontend,
    clip_features,
    clip_log_mel,
    dct_matrix,
    features,
    fit_normalisation,
    frame_count,
    log_mel,
    mel_filterbank,
    mel_weights,
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


@pytest.mark.parametrize("name", sorted(FRONTENDS))
@pytest.mark.parametrize("chunk", [1, 100, 160, 320, 333, 640, 1601, 16000])
def test_streaming_equals_batch(clips: list[np.ndarray], chunk: int, name: str) -> None:
    config = FRONTENDS[name].with_normalisation(np.full(10, 1.5), np.full(10, 3.0))
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


def test_normalisation_fit_in_chunks_equals_the_fit_on_the_whole(clips: list[np.ndarray]) -> None:
    raw = np.stack([clip_features(a, CONFIG) for a in clips[:-1]])
    whole = fit_normalisation(raw, CONFIG)
    # Chunks of unequal sizes (one empty, one a single frame) hold the statistics of the whole.
    chunks = [raw[:3], raw[3:3], raw[3, :1], raw[3, 1:], raw[4:]]
    chunked = fit_normalisation(iter(chunks), CONFIG)
    np.testing.assert_allclose(chunked.mean, whole.mean, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(chunked.std, whole.std, rtol=1e-10)
    np.testing.assert_allclose(whole.std, raw.reshape(-1, 10).astype(np.float64).std(axis=0), rtol=1e-10)
    with pytest.raises(FrontendError, match="at least two frames"):
        fit_normalisation(iter([raw[0, :1], raw[0, :0]]), CONFIG)


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
        # Metadata read from a file: sizes that would allocate gigabytes, wrong types, NaN.
        ({"n_fft": 2**28}, "n_fft must be at most 4096"),
        ({"sample_rate": 16_000_000}, "sample_rate must be 8000-192000 Hz"),
        ({"n_mels": 10**6}, "n_mels must be 1-128"),
        ({"clip_ms": 1e9}, "clip_ms must be above 0 and at most 10000"),
        ({"sample_rate": "16000"}, "wrong type or not finite: sample_rate = '16000'"),
        ({"log_floor": float("nan")}, "wrong type or not finite: log_floor = nan"),
        ({"mean": ["a"] * 10, "std": [1.0] * 10}, "wrong type or not finite: mean"),
        ({"std": [1.0] * 9 + [float("inf")], "mean": [0.0] * 10}, "wrong type or not finite: std"),
        ({"centre_clips": 1}, "wrong type or not finite: centre_clips = 1"),
        ({"mean": 3.0, "std": 1.0}, "wrong type or not finite: mean = 3.0, std = 1.0"),
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


# --- the log-mel image front-end ----------------------------------------------------------------

IMAGE = FRONTENDS["logmel_image"]
ROWS = dataclasses.replace(IMAGE, hop_ms=10.0)  # the images' 10-ms rows


def test_image_frontend_shape_and_rows() -> None:
    assert (IMAGE.window_length, IMAGE.hop_length, IMAGE.n_fft, IMAGE.clip_frames) == (480, 320, 512, 49)
    assert ROWS.clip_frames == 98
    # Every other 10-ms row is a 20-ms frame: the model's frames are the images' even rows.
    audio = np.random.default_rng(0).normal(0, 0.1, 16000)
    np.testing.assert_allclose(log_mel(audio, ROWS)[::2], log_mel(audio, IMAGE), atol=1e-9)


def test_linear_in_mel_filterbank_matches_tensorflow() -> None:
    tf = pytest.importorskip("tensorflow")
    ref = tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, 0.0, 4000.0).numpy().T
    ours = mel_weights(IMAGE)
    assert ours.shape == ref.shape == (40, 257)
    assert np.all(ours[:, 0] == 0)
    # TensorFlow computes in float32: its weights are ours rounded to about 1e-6.
    assert np.abs(ours - ref).max() < 1e-5


def test_image_frontend_reproduces_the_full_sets_images(speech_commands: Path) -> None:
    """Real pairs: the JPEG of a clip in the full set beside the clip's audio."""
    pairs = sorted((speech_commands.parent / "speech_commands_logmel_pairs").glob("*/*.jpg"))
    chosen = [pairs[i] for i in np.random.default_rng(0).permutation(len(pairs))[:120]]
    raw, recompressed = [], []
    for image_path in chosen:
        image = np.asarray(Image.open(image_path), dtype=np.float64)
        audio = load_audio(speech_commands / image_path.parent.name / image_path.with_suffix(".wav").name)
        # The shared WAVs are zero-padded to 1 s; the front-end strips that and centres the rows.
        ours = np.clip(np.round(clip_log_mel(audio, ROWS)), 0, 255)
        assert ours.shape == image.shape == (98, 40)
        raw.append(np.abs(ours - image).mean())
        buffer = io.BytesIO()
        Image.fromarray(ours.astype(np.uint8)).save(buffer, "JPEG", quality=75)
        recompressed.append(np.abs(np.asarray(Image.open(buffer), dtype=np.float64) - image).mean())
    # Measured on these 120 pairs: 3.4 pixels mean absolute difference, at most 3.9 (JPEG
    # quality 75 alone moves our exact image by 3.3); compressed like the images, 1.4, at most 2.3.
    assert np.mean(raw) < 3.8 and max(raw) < 5.0
    assert np.mean(recompressed) < 1.8 and max(recompressed) < 3.0


def test_centring_strips_trailing_zeros_and_centres_short_clips(clips: list[np.ndarray]) -> None:
    word = clips[0][:9000]
    word = word[: np.flatnonzero(word)[-1] + 1]
    rows = clip_log_mel(word, ROWS)
    n = frame_count(len(word), ROWS)
    start = (98 - n) // 2
    np.testing.assert_allclose(rows[start : start + n], log_mel(word, ROWS))
    assert np.all(rows[:start] == 0) and np.all(rows[start + n :] == 0)  # digital silence is pixel 0
    padded = np.pad(word, (0, 16000 - len(word)))
    np.testing.assert_array_equal(clip_features(padded, IMAGE), clip_features(word, IMAGE))
    # The first release's front-end keeps a short clip where it is, zero-padded at the end.
    assert not np.array_equal(clip_features(word, CONFIG), clip_features(np.pad(word, (4000, 0)), CONFIG))


def test_pixel_log_scale_and_saturation() -> None:
    loud = np.sin(np.arange(16000) * 2 * np.pi * 1000 / 16000) * 1.0
    rows = log_mel(loud, ROWS)
    assert rows.max() <= 255.0 and rows.min() >= 0.0
    quiet = log_mel(loud * 10 ** (-20 / 20), ROWS)
    peak = rows.max(axis=0).argmax()
    # 20 dB less is 20 x 2.3 pixels lower on an unsaturated band (10 ln(10) / 10 per dB).
    assert abs((rows[:, peak] - quiet[:, peak]).mean() - 20 * np.log(10)) < 0.5


@pytest.mark.parametrize(
    ("change", "message"),
    [({"mel_triangles": "slaney"}, "mel_triangles"), ({"log": "log10"}, "log must be")],
)
def test_invalid_image_settings_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(FrontendError, match=message):
        FrontendConfig.from_dict({**IMAGE.to_dict(), **change})


def test_old_model_configs_without_the_new_fields_still_load() -> None:
    old = {k: v for k, v in CONFIG.to_dict().items() if k not in ("mel_triangles", "log", "centre_clips")}
    assert FrontendConfig.from_dict(old) == CONFIG
