"""False alarms on speech without keywords: negative streams, exact scoring, bounds, tuning."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
from helpers import run_kws

from kws.bundled import bundled_model
from kws.data import DataWarning, held_out_negative, negative_files
from kws.errors import DataError
from kws.runtime import load_runner
from kws.stream import Detector, detect
from kws.streameval import THRESHOLD_GRID, false_alarms, poisson_upper, record, replay, score, tune_model
from kws.streams import Word, build_negative_stream, build_stream

SR = 16000


@pytest.fixture(scope="module")
def jarvis(test12: Path) -> Path:
    return test12.parent / "negatives" / "picovoice" / "jarvis"


class Oracle(Detector):
    """A detector whose model output is the ground truth's plan: for 0.2 s after each planned
    word's end, all probability on the planned label; silence elsewhere."""

    def __init__(self, plan: list[tuple[float, str]]) -> None:
        super().__init__(load_runner(bundled_model(variant="int8_step")), thresholds=0.5)
        self.plan = plan

    def posterior(self, frame: np.ndarray) -> np.ndarray:
        self.frame_count += 1
        p = np.zeros(len(self.smoother.labels), np.float32)
        now = [label for end, label in self.plan if end <= self.time < end + 0.2]
        p[self.smoother.labels.index(now[0]) if now else 0] = 1.0
        return p


def test_a_stream_of_keywords_among_negatives_scores_exactly_what_it_should(
    test12: Path, jarvis: Path
) -> None:
    info = load_runner(bundled_model(variant="int8_step")).info
    labels = info.labels
    files = negative_files(jarvis, info.keywords)
    first, _ = build_negative_stream(files[:4], test12, labels, seed=1)
    keywords, keyword_words = build_stream(test12, labels, minutes=0.5, seed=1)
    last, _ = build_negative_stream(files[4:8], test12, labels, seed=2)
    # Negatives, then keywords and unknown words, then negatives: every word at a known time.
    audio = np.concatenate([first, keywords, last])
    _, first_words = build_negative_stream(files[:4], test12, labels, seed=1)
    _, last_words = build_negative_stream(files[4:8], test12, labels, seed=2)

    def shifted(words: list[Word], by: float) -> list[Word]:
        return [dataclasses.replace(w, start=w.start + by, end=w.end + by) for w in words]

    words = [
        *first_words,
        *shifted(keyword_words, len(first) / SR),
        *shifted(last_words, (len(first) + len(keywords)) / SR),
    ]
    targets = [w for w in words if w.label in info.keywords]
    negatives = [w for w in words if w.source.endswith(".flac")]
    assert len(targets) >= 5 and len(negatives) == 8
    # The plan: every keyword named right but the first (named "stop" or "go": a miss and a
    # false alarm), "yes" on every third negative recording, nothing on unknown words.
    wrong = "go" if targets[0].label == "stop" else "stop"
    plan = [(targets[0].end, wrong)] + [(w.end, w.label) for w in targets[1:]]
    plan += [(w.end, "yes") for w in negatives[::3]]
    expected_false_alarms = 1 + len(negatives[::3])

    detector = Oracle(sorted(plan))
    live = score(detect(detector, audio), words, len(audio) / SR)
    assert (live.keywords, live.hits, live.false_alarms) == (
        len(targets),
        len(targets) - 1,
        expected_false_alarms,
    )
    assert sorted(live.false_alarm_labels) == sorted([wrong] + ["yes"] * len(negatives[::3]))
    trace = record(detector, audio)
    assert replay(trace, 0.5) == detect(detector, audio)  # the recorded path scores the same
    assert false_alarms([(trace, words)], 0.5) == (expected_false_alarms, len(audio) / SR / 3600)


def test_negative_stream_places_every_recording_once_over_noise(test12: Path, jarvis: Path) -> None:
    labels = ("_silence_", "_unknown_", "yes", "no")
    files = negative_files(jarvis, labels[2:])[:6]
    audio, words = build_negative_stream(files, test12, labels, snr_db=20, seed=0)
    again, words_again = build_negative_stream(files, test12, labels, snr_db=20, seed=0)
    assert np.array_equal(audio, again) and words == words_again
    assert sorted(w.source for w in words) == sorted(map(str, files)) and {w.label for w in words} == {
        "_unknown_"
    }
    for a, b in itertools.pairwise(words):
        assert a.end + 1.0 <= b.start
    for w in words:
        speech = audio[int(w.start * SR) : int(w.end * SR)]
        before = audio[int((w.start - 0.5) * SR) : int((w.start - 0.3) * SR)]
        assert np.sqrt(np.mean(speech**2)) > 3 * np.sqrt(np.mean(before**2))
    louder, _ = build_negative_stream(files, test12, labels, snr_db=0, seed=0)
    noise = slice(0, int(words[0].start * SR) - SR // 10)  # before the first word: background alone
    ratio = np.sqrt(np.mean(louder[noise] ** 2) / np.mean(audio[noise] ** 2))
    assert ratio == pytest.approx(10.0, rel=0.05)  # 20 dB more noise


def test_poisson_upper_bound() -> None:
    assert poisson_upper(0) == pytest.approx(-np.log(0.05), rel=1e-9)  # the "rule of three"
    # Known values of the exact bound (chi-square quantile / 2).
    assert poisson_upper(1) == pytest.approx(4.7439, abs=1e-4)
    assert poisson_upper(10) == pytest.approx(16.9622, abs=1e-4)
    assert poisson_upper(88) > 88 + 1.64 * np.sqrt(88)
    result = score([], [Word("_unknown_", 1.0, 2.0)], seconds=1800)
    assert result.false_alarms == 0 and result.false_alarms_per_hour_upper95 == pytest.approx(
        2 * 2.9957, abs=1e-3
    )


def test_negatives_folder_without_audio_is_a_one_line_error(tmp_path: Path, test12: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    with pytest.raises(DataError, match="holds no audio files"):
        negative_files(tmp_path / "empty", ["yes"])
    result = run_kws("eval", "--negatives", str(tmp_path / "empty"))
    assert result.returncode == 1 and "holds no audio files" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_negatives_subfolder_named_like_a_keyword_gets_a_warning(tmp_path: Path, jarvis: Path) -> None:
    (tmp_path / "neg" / "yes").mkdir(parents=True)
    (tmp_path / "neg" / "other").mkdir()
    recordings = sorted(jarvis.glob("*.flac"))
    (tmp_path / "neg" / "yes" / recordings[0].name).symlink_to(recordings[0])
    (tmp_path / "neg" / "other" / recordings[1].name).symlink_to(recordings[1])
    with pytest.warns(DataWarning, match="yes named like keywords"):
        assert len(negative_files(tmp_path / "neg", ["yes", "no"])) == 2
    result = run_kws("eval", "--negatives", str(tmp_path / "neg"), "--json")
    assert (
        result.returncode == 0 and "kws: warning:" in result.stderr and "named like keywords" in result.stderr
    )


def test_tuning_with_negatives_uses_only_the_held_out_recordings_and_meets_the_target(
    small_speech_commands: Path, jarvis: Path, tmp_path: Path
) -> None:
    recordings = sorted(jarvis.glob("*.flac"))
    held_out = [f for f in recordings if held_out_negative(f)][:5]
    trained_on = [f for f in recordings if not held_out_negative(f)][:5]
    folder = tmp_path / "negatives"
    folder.mkdir()
    for f in held_out + trained_on:
        (folder / f.name).symlink_to(f)
    copy = tmp_path / "tuned.tflite"
    target = 20.0
    tuning = tune_model(
        bundled_model(variant="int8_step"),
        small_speech_commands,
        target_false_alarms_per_hour=target,
        negatives=[folder],
        minutes=1,
        out=copy,
    )
    assert tuning["negatives"]["recordings"] == len(held_out)
    assert load_runner(copy).info.extra["threshold_tuning"]["negatives"] == tuning["negatives"]
    # Fixed validation negatives (a list, say) replace the held-out tenth: only they count.
    listed = tmp_path / "validation.txt"
    listed.write_text(
        "".join(f"{f}\n" for f in [r for r in recordings if r not in held_out + trained_on][:2])
    )
    fixed = tune_model(
        bundled_model(variant="int8_step"),
        small_speech_commands,
        target_false_alarms_per_hour=target,
        negatives=[folder],
        val_negatives=[listed],
        minutes=1,
        out=tmp_path / "fixed.tflite",
    )
    assert fixed["negatives"]["recordings"] == 2 and fixed["negatives"]["folders"] == [str(listed)]
    thresholds = tuning["thresholds"]
    # Rebuild the tuning streams and check each keyword's share of the target on them.
    runner = load_runner(copy)
    labels = runner.info.labels
    audio, words = build_stream(small_speech_commands, labels, split="validation", minutes=1, seed=0)
    streams = [(record(Detector(runner), audio), words)]
    for i, snr in enumerate((20.0, 10.0)):
        a, w = build_negative_stream(
            sorted(held_out), small_speech_commands, labels, split="validation", snr_db=snr, seed=i
        )
        streams.append((record(Detector(runner), a), w))
    assert false_alarms(streams[1:], thresholds)[0] == tuning["negatives"]["false_alarms"]
    share = target / len(thresholds)
    for keyword, threshold in thresholds.items():
        alone = {k: (threshold if k == keyword else np.inf) for k in thresholds}
        count, hours = false_alarms(streams, alone)
        assert count / hours <= share or threshold == THRESHOLD_GRID[-1], keyword
