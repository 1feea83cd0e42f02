"""Data layouts, splits, labels, balancing, silence, augmentation and `data check`."""

from __future__ import annotations

import math
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import run_kws

from kws.audio import AudioConversionWarning, load_audio
from kws.augment import AugmentConfig, augment_clip, change_speed, mask_features, time_shift
from kws.data import (
    DEFAULT_KEYWORDS,
    NOISE_REGIONS,
    SILENCE,
    UNKNOWN,
    Example,
    check,
    examples,
    labels_for,
    load_example,
    load_noise,
    scan,
    speaker_of,
    which_set,
)
from kws.errors import DataError


def test_official_layout_counts_and_splits(speech_commands: Path) -> None:
    report = check(speech_commands)
    assert report.index.layout == "speech_commands"
    assert report.total_clips == 3690
    assert [sum(report.counts[s].values()) for s in ("train", "validation", "test")] == [2772, 517, 401]
    assert set(report.overlap.values()) == {0}
    assert report.unreadable == [] and report.index.listed_missing == []
    assert len(report.index.noise_files) == 6


def test_test12_layout_counts(test12: Path) -> None:
    report = check(test12)
    assert report.index.layout == "test12"
    assert report.total_clips == 574
    assert set(report.counts["test"]) == set(labels_for())
    assert report.counts["test"][SILENCE] == 173 and report.counts["test"][UNKNOWN] == 34
    # Its speech clips are exactly the official layout's test list.
    official = {
        (c.speaker, c.path.name) for c in scan(test12.parent / "speech_commands").clips if c.split == "test"
    }
    ours = {
        (c.speaker, c.path.name.split("_", 1)[1] if c.folder == UNKNOWN else c.path.name)
        for c in scan(test12).clips
        if c.folder != SILENCE
    }
    assert ours == official


def test_hash_split_matches_tensorflow(speech_commands: Path) -> None:
    # The shared subset was drawn from the official v0.02 *test* set, which TensorFlow's
    # which_set put there by speaker hash: every clip must hash to "test".
    clips = scan(speech_commands).clips
    assert Counter(which_set(c.path) for c in clips) == {"test": 3690}
    assert which_set(Path("yes/0a7c2a8d_nohash_0.wav")) == which_set(Path("no/0a7c2a8d_nohash_3.wav"))


def test_without_lists_the_hash_split_keeps_speakers_apart(speech_commands: Path, tmp_path: Path) -> None:
    for word in ("yes", "no", "bed"):
        (tmp_path / word).mkdir()
        for src in sorted((speech_commands / word).glob("*.wav"))[:60]:
            shutil.copy(src, tmp_path / word / src.name)
    index = scan(tmp_path)
    by_speaker: dict[str, set[str]] = {}
    for c in index.clips:
        by_speaker.setdefault(str(c.speaker), set()).add(c.split)
        assert c.split == which_set(c.path)
    assert all(len(splits) == 1 for splits in by_speaker.values())


def test_speaker_parsing() -> None:
    assert speaker_of(Path("yes/0a7c2a8d_nohash_0.wav")) == "0a7c2a8d"
    assert speaker_of(Path("_unknown_/bed_0a7c2a8d_nohash_2.wav")) == "0a7c2a8d"
    assert speaker_of(Path("_silence_/12.wav")) is None


def test_examples_are_balanced_as_reference_recipe(speech_commands: Path) -> None:
    index = scan(speech_commands)
    for split in ("train", "validation", "test"):
        ex = examples(index, split, seed=3)
        counts = Counter(e.label for e in ex)
        known = sum(counts[k] for k in DEFAULT_KEYWORDS)
        available_unknown = sum(
            1 for c in index.clips if c.split == split and c.folder not in DEFAULT_KEYWORDS
        )
        assert counts[SILENCE] == math.ceil(known * 0.1)
        assert counts[UNKNOWN] == min(available_unknown, math.ceil(known * 0.1))
        assert ex == examples(index, split, seed=3)  # reproducible
    # A larger unknown share than the data holds takes all there is; a smaller one subsamples.
    few = Counter(e.label for e in examples(index, "train", unknown_percentage=2))
    assert few[UNKNOWN] == math.ceil(2530 * 0.02)


def test_custom_keywords_make_every_other_word_unknown(speech_commands: Path) -> None:
    index = scan(speech_commands)
    ex = examples(index, "train", ["marvin", "sheila"], unknown_percentage=100)
    counts = Counter(e.label for e in ex)
    marvin = sum(1 for c in index.clips if c.split == "train" and c.folder == "marvin")
    assert counts["marvin"] == marvin > 0 and counts["sheila"] > 0
    assert set(counts) == {"marvin", "sheila", SILENCE, UNKNOWN}
    assert labels_for(["marvin", "sheila"]) == [SILENCE, UNKNOWN, "marvin", "sheila"]
    with pytest.raises(DataError, match="without repeats"):
        labels_for(["yes", "yes"])


def test_silence_comes_from_the_splits_own_noise(speech_commands: Path) -> None:
    index = scan(speech_commands)
    for split in ("train", "test"):
        for e in [e for e in examples(index, split) if e.label == SILENCE][:10]:
            assert e.noise is not None and e.noise.split == split
            audio = load_example(e, 16000)
            noise = load_noise(e.noise.path)
            lo, hi = NOISE_REGIONS[split]
            start = int(lo * len(noise)) + e.noise.start
            assert start + 16000 <= int(hi * len(noise))
            piece = noise[start : start + 16000].astype(np.float64)
            scaled = piece * e.noise.rms / np.sqrt(np.mean(piece**2))
            np.testing.assert_allclose(audio, scaled, rtol=1e-5, atol=1e-9)
        # Levels span those of real silence clips (log-uniform over SILENCE_RMS_RANGE).
        levels = [e.noise.rms for e in examples(index, split) if e.noise is not None]
        assert min(levels) < 1e-3 and max(levels) > 0.05


def test_load_example_pads_short_clips_and_cuts_long_ones(fsdd: Path) -> None:
    path = fsdd / "7_theo_0.wav"  # 8 kHz and shorter than a second
    with pytest.warns(AudioConversionWarning, match="resampled"):
        n = len(load_audio(path))
        audio = load_example(Example("_unknown_", path), 16000)
    assert n < 16000
    assert audio.shape == (16000,) and audio[:n].any() and not audio[n:].any()
    with pytest.warns(AudioConversionWarning):
        assert load_example(Example("_unknown_", path), n // 2).shape == (n // 2,)


def test_check_lists_unreadable_files(speech_commands: Path, tmp_path: Path) -> None:
    for word in ("yes", "bed"):
        (tmp_path / word).mkdir()
        for src in sorted((speech_commands / word).glob("*.wav"))[:5]:
            shutil.copy(src, tmp_path / word / src.name)
    (tmp_path / "_background_noise_").mkdir()
    shutil.copy(speech_commands / "_background_noise_" / "pink_noise.wav", tmp_path / "_background_noise_")
    (tmp_path / "yes" / "deadbeef_nohash_0.wav").write_bytes(b"")
    (tmp_path / "yes" / "cafebabe_nohash_0.wav").write_text("not audio")
    report = check(tmp_path)
    messages = sorted(msg for _, msg in report.unreadable)
    assert len(messages) == 2
    assert "cafebabe_nohash_0.wav: not an audio file" in messages[0]
    assert "deadbeef_nohash_0.wav: file is empty" in messages[1]
    assert report.total_clips == 10


def test_file_names_that_are_not_utf8_are_split_and_checked(speech_commands: Path, tmp_path: Path) -> None:
    """A name the file system holds as non-UTF-8 bytes (Python keeps them as surrogates)."""
    odd = os.fsdecode(b"\xff\xfe_nohash_0.wav")
    assert which_set(Path(odd)) in ("train", "validation", "test")
    for word in ("yes", "no"):
        (tmp_path / word).mkdir()
        for src in sorted((speech_commands / word).glob("*.wav"))[:3]:
            shutil.copy(src, tmp_path / word / src.name)
    shutil.copy(next((tmp_path / "yes").glob("*.wav")), tmp_path / "yes" / odd)
    (tmp_path / "_background_noise_").mkdir()
    shutil.copy(speech_commands / "_background_noise_" / "pink_noise.wav", tmp_path / "_background_noise_")
    report = check(tmp_path)
    assert report.total_clips == 7 and not report.unreadable
    assert any(e.path.name == odd for e in scan(tmp_path).clips)


def test_bad_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        scan(tmp_path / "nope")
    with pytest.raises(DataError, match="no word folders"):
        scan(tmp_path)


def test_augmentation(speech_commands: Path) -> None:
    audio = load_audio(sorted((speech_commands / "yes").glob("*.wav"))[0])[:16000]
    np.testing.assert_array_equal(time_shift(audio, 100)[100:], audio[:-100])
    np.testing.assert_array_equal(time_shift(audio, -100)[:-100], audio[100:])
    noise = scan(speech_commands).noise_files
    snr_10 = AugmentConfig(speed=0, time_shift_ms=0, gain_db=0, noise_probability=1.0, snr_db=(10.0, 10.0))
    out = augment_clip(audio, np.random.default_rng(0), noise, snr_10)
    assert out.shape == audio.shape and out.dtype == np.float32
    rms = lambda x: float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))  # noqa: E731
    assert rms(out - audio) == pytest.approx(rms(audio) / 10**0.5, rel=1e-3)
    gain_only = AugmentConfig(speed=0, time_shift_ms=0, gain_db=6, noise_probability=0)
    ratio = (
        np.abs(augment_clip(audio, np.random.default_rng(1), noise, gain_only)).max() / np.abs(audio).max()
    )
    assert 10 ** (-6 / 20) - 1e-3 <= ratio <= 10 ** (6 / 20) + 1e-3
    a = augment_clip(audio, np.random.default_rng(7), noise)
    np.testing.assert_array_equal(a, augment_clip(audio, np.random.default_rng(7), noise))


def test_speed_change_and_feature_masks(speech_commands: Path) -> None:
    audio = load_audio(sorted((speech_commands / "no").glob("*.wav"))[3])[:16000]
    for factor in (0.9, 1.1):
        out = change_speed(audio, factor)
        assert out.shape == audio.shape
    # A tone played 10% faster is 10% higher.
    t = np.arange(16000) / 16000
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    peak = np.argmax(np.abs(np.fft.rfft(change_speed(tone, 1.1)[4000:12000]))) * 16000 / 8000
    assert peak == pytest.approx(1100, abs=4)
    feats = np.ones((49, 10), dtype=np.float32)
    config = AugmentConfig(time_masks=2, time_mask_frames=5, coefficient_masks=1, coefficient_mask_width=2)
    masked = [mask_features(feats, np.random.default_rng(s), config) for s in range(50)]
    zeros_rows = [int((m == 0).all(axis=1).sum()) for m in masked]
    zero_cols = [int((m == 0).all(axis=0).sum()) for m in masked]
    assert max(zeros_rows) <= 10 and max(zero_cols) <= 2 and sum(zeros_rows) > 0 and sum(zero_cols) > 0
    assert np.array_equal(feats, np.ones((49, 10)))  # the input is not modified


def test_list_files_with_names_that_are_not_utf8_match_their_files(
    speech_commands: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    (root / "yes").mkdir(parents=True)
    clips = sorted((speech_commands / "yes").glob("*.wav"))[:2]
    odd = os.fsdecode(b"caf\xe9_nohash_0.wav")  # Latin-1 bytes: not UTF-8
    (root / "yes" / odd).write_bytes(clips[0].read_bytes())
    (root / "yes" / "abcd1234_nohash_0.wav").write_bytes(clips[1].read_bytes())
    (root / "validation_list.txt").write_bytes(b"yes/caf\xe9_nohash_0.wav\n")
    (root / "testing_list.txt").write_bytes(b"")
    splits = {c.path.name: c.split for c in scan(root).clips}
    assert splits == {odd: "validation", "abcd1234_nohash_0.wav": "train"}
    result = run_kws("data", "check", str(root))
    assert result.returncode == 0 and "Traceback" not in result.stderr
