"""Streaming pipeline: parity with the offline models, smoothing and refractory period, CLI."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import run_kws

from kws.artifact import embed_metadata
from kws.audio import load_audio, write_wav
from kws.bundled import bundled_model
from kws.features import clip_features
from kws.progress import bar, stage
from kws.runtime import load_runner
from kws.stream import Detection, Detector, DetectorConfig, PosteriorSmoother, detect
from kws.streameval import THRESHOLD_GRID, TuningWarning, record, replay, score, tune_model, tune_thresholds
from kws.streams import Word, build_stream

LABELS = ("_silence_", "_unknown_", "yes", "no")


@pytest.fixture(scope="module")
def clip(test12: Path) -> np.ndarray:
    return load_audio(sorted((test12 / "yes").glob("*.wav"))[0])


def test_windowed_mode_equals_whole_clip_model(tiny_run: Path, clip: np.ndarray) -> None:
    runner = load_runner(tiny_run / "int8.tflite")
    offline = runner.run_clip(clip_features(clip, runner.info.frontend))
    pad = np.zeros(16000 * 2, dtype=np.float32)
    detector = Detector(runner)
    seen = {}
    audio = np.concatenate([pad, clip, pad])
    for start in range(0, len(audio), 160):
        detector.push(audio[start : start + 160])
        if detector.probabilities is not None:
            seen[detector.frame_count] = detector.probabilities.copy()
    # The window ending with the clip's last frame holds exactly the clip's 49 frames.
    last_frame = (len(pad) + len(clip) - 640) // 320 + 1
    np.testing.assert_array_equal(seen[last_frame], offline)


def test_stateful_mode_from_reset_equals_step_model_on_the_clip(tiny_run: Path, clip: np.ndarray) -> None:
    runner = load_runner(tiny_run / "int8_step.tflite")
    offline = runner.run_clip(clip_features(clip, runner.info.frontend))
    detector = Detector(runner, reset_every=0)
    for start in range(0, len(clip), 333):
        detector.push(clip[start : start + 333])
    assert detector.frame_count == 49 and detector.mode == "stateful"
    assert detector.probabilities is not None
    np.testing.assert_array_equal(detector.probabilities, offline)


def test_smoother_averages_thresholds_and_is_refractory() -> None:
    smoother = PosteriorSmoother(LABELS, {"yes": 0.7, "no": 0.5}, window=2, refractory=1.0)
    yes = np.array([0.0, 0.0, 0.9, 0.1])
    assert smoother.push(np.array([1.0, 0, 0, 0]), 0.00) is None  # silence never fires
    assert smoother.push(yes, 0.02) is None  # average 0.45 < 0.7
    event = smoother.push(yes, 0.04)
    assert event is not None and event.label == "yes" and event.score == pytest.approx(0.9)
    assert smoother.push(yes, 0.5) is None  # refractory
    assert smoother.push(np.array([0.0, 0.0, 0.4, 0.6]), 1.1) is None  # average "yes" 0.65, "no" 0.35
    event = smoother.push(np.array([0.0, 0.0, 0.4, 0.6]), 1.2)
    assert event is not None and event.label == "no"  # 0.6 >= its own threshold 0.5
    assert smoother.push(np.array([0.0, 1.0, 0, 0]), 5.0) is None  # unknown never fires


def test_stream_cli_json_lines(clip: np.ndarray, tmp_path: Path) -> None:
    wav = tmp_path / "long.wav"
    silence = np.zeros(16000, dtype=np.float32)
    write_wav(wav, np.concatenate([silence, clip, silence, clip, silence]))
    model = bundled_model(variant="int8_step")
    result = run_kws("stream", str(wav), "--model", str(model), "--json", "--threshold", "0.3")
    assert result.returncode == 0, result.stderr
    assert result.stderr == "detector: 5 s\n"  # progress: stderr is a pipe, so one line, no bar
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["label"] for e in events].count("yes") == 2, events  # both clips are heard
    for event in events:
        assert set(event) == {"label", "time", "score"} and 0 < event["time"] <= 5.0 and event["score"] >= 0.3
    assert all(b["time"] - a["time"] >= 1.0 for a, b in itertools.pairwise(events))
    # The command prints what the library call finds.
    library = detect(Detector(load_runner(model), thresholds=0.3), load_audio(wav))
    assert events == [e.to_dict() for e in library]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_a_line_a_stage_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal())
    with bar(desc="clips", total=3, unit=" clips") as shown:
        shown.update(1)
        stage("a stage")  # above the bar, not through it
        shown.update(2)
    drawn = sys.stderr.getvalue()
    assert "\rclips:" in drawn and "100%" in drawn and "3/3" in drawn and "\ra stage\n" in drawn
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log or a pipe
    assert list(bar(range(3), desc="clips", unit=" clips", leave=False)) == [0, 1, 2]
    with bar(desc="epoch 1/2", total=80, unit=" batches") as shown:  # a disabled bar takes the same calls
        shown.update(80)
        shown.set_postfix(loss="0.123")
    assert list(bar(iter("ab"), desc="read images")) == ["a", "b"]  # the count unknown
    stage("a stage")
    assert sys.stderr.getvalue() == "clips: 3 clips\nepoch 1/2: 80 batches\nread images\na stage\n"
    for stderr in (_Terminal(), io.StringIO()):  # --quiet: nothing either way
        monkeypatch.setattr(sys, "stderr", stderr)
        assert list(bar(range(3), desc="clips", enabled=False)) == [0, 1, 2]
        stage("a stage", enabled=False)
        assert stderr.getvalue() == ""


def test_detector_config_is_the_one_source_of_the_settings(tmp_path: Path) -> None:
    from kws.cli import build_parser

    step = load_runner(bundled_model(variant="int8_step"))
    # The bundled model (metadata format 1) stored only thresholds: the other settings are the defaults.
    assert step.info.detector is not None
    defaults = DetectorConfig(thresholds=step.info.detector.thresholds)
    detector = Detector(step)
    assert detector.config == defaults and len(detector.runners) == 2
    assert detector.smoother.keyword_thresholds == step.info.detector.thresholds
    # The CLI leaves to the model what it is not given.
    args = build_parser().parse_args(["stream", "x.wav"])
    assert (args.threshold, args.smoothing, args.refractory, args.reset_every, args.copies) == (None,) * 5
    # Settings stored in the model are the detector's defaults.
    stored = DetectorConfig(thresholds=0.7, smoothing=0.1, copies=1)
    model = tmp_path / "stored.tflite"
    model.write_bytes(embed_metadata(step.model_bytes, dataclasses.replace(step.info, detector=stored)))
    assert Detector(load_runner(model)).config == stored
    assert Detector(load_runner(model), thresholds=0.5).config == dataclasses.replace(stored, thresholds=0.5)
    assert Detector(load_runner(model), DetectorConfig()).config == DetectorConfig(thresholds=0.7)
    # Keywords replace fields of a given config; the copies follow the reset schedule.
    tuned = Detector(step, DetectorConfig(smoothing=0.2, copies=1), thresholds=0.5)
    assert tuned.config == DetectorConfig(thresholds=0.5, smoothing=0.2, copies=1)
    assert len(tuned.runners) == 1 and tuned.smoother.history.maxlen == 10  # 0.2 s of 20-ms frames
    assert set(tuned.smoother.keyword_thresholds.values()) == {0.5}
    assert len(Detector(step, reset_every=0).runners) == 1
    with pytest.raises(ValueError, match="copies must be 1 or 2"):
        DetectorConfig(copies=3)
    with pytest.raises(TypeError):
        Detector(step, smothing=0.1)  # a misspelt setting is not ignored


def test_score_counts_hits_false_alarms_and_latency() -> None:
    words = [
        Word("yes", 1.2, 1.6),
        Word("_unknown_", 4.1, 4.5),
        Word("no", 7.3, 7.8),
        Word("yes", 10.2, 10.6),
    ]
    events = [
        Detection("yes", 1.7, 0.9),  # hit, 0.1 s after the word
        Detection("yes", 4.4, 0.8),  # on an unknown word: false alarm
        Detection("yes", 7.9, 0.7),  # wrong label on "no": false alarm (and "no" is missed)
        Detection("yes", 12.0, 0.9),  # 1.4 s after the word: too late, false alarm
    ]
    result = score(events, words, seconds=3600)
    assert (result.keywords, result.hits, result.false_alarms) == (3, 1, 3)
    assert result.false_alarms_per_hour == 3.0 and result.latencies == pytest.approx((0.1,))


def test_built_stream_is_reproducible_and_words_lie_in_their_clips(test12: Path) -> None:
    labels = ("_silence_", "_unknown_", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
    audio, words = build_stream(test12, labels, minutes=0.5, seed=3)
    again, words_again = build_stream(test12, labels, minutes=0.5, seed=3)
    assert np.array_equal(audio, again) and words == words_again
    assert len(audio) == 30 * 16000 and len(words) >= 8
    assert {w.label for w in words} <= set(labels[1:])
    for a, b in itertools.pairwise(words):
        assert a.start < a.end <= b.start - 1.0  # gaps of at least a second between clips
    for w in words:
        segment = audio[int(w.start * 16000) : int(w.end * 16000)]
        before = audio[int((w.start - 0.5) * 16000) : int((w.start - 0.3) * 16000)]
        assert np.sqrt(np.mean(segment**2)) > 3 * np.sqrt(np.mean(before**2))  # speech over 20 dB-SNR noise


def test_staggered_step_models_see_between_half_and_one_period(tiny_run: Path) -> None:
    runner = load_runner(tiny_run / "int8_step.tflite")
    detector = Detector(runner, reset_every=20)
    fresh = load_runner(tiny_run / "int8_step.tflite")
    frames = np.random.default_rng(0).normal(size=(75, 10)).astype(np.float32)
    for f, frame in enumerate(frames, start=1):
        posterior = detector.posterior(frame)
        if f < 20:
            continue
        # The copy used restarted 10 to 19 frames ago: copy 0 at frames 1, 21, 41...,
        # copy 1 at 11, 31, 51...; the older of the two is chosen.
        history = max((f - 1) % 20, (f - 11) % 20) + 1
        fresh.reset()
        expected = [fresh.invoke(x[None]) for x in frames[f - history : f]][-1]
        assert 11 <= history <= 20
        np.testing.assert_array_equal(posterior, expected)


def test_replay_of_a_recorded_stream_gives_the_live_detectors_events(tiny_run: Path, test12: Path) -> None:
    runner = load_runner(tiny_run / "int8_step.tflite")
    audio, _ = build_stream(test12, runner.info.labels, minutes=1, seed=1)
    events = 0
    for thresholds in (0.25, {"yes": 0.3, "no": 0.2, "up": 0.9}):
        detector = Detector(runner, thresholds=thresholds, smoothing=0.1)
        live = detect(detector, audio)
        trace = record(detector, audio)
        assert replay(trace, thresholds) == live
        events += len(live)
    assert events >= 5


def test_tuned_thresholds_meet_the_false_alarm_target_on_their_stream(test12: Path) -> None:
    runner = load_runner(bundled_model())
    audio, words = build_stream(test12, runner.info.labels, minutes=3, seed=2)
    trace = record(Detector(runner, hop_frames=5), audio)
    loose = score(replay(trace, 0.3), words, trace.seconds)
    target = loose.false_alarms_per_hour / 4
    thresholds = tune_thresholds(trace, words, target)
    tuned = score(replay(trace, thresholds), words, trace.seconds)
    assert set(thresholds) == set(runner.info.keywords)
    # Each keyword keeps its own false alarms within its share, or sits at the top of the grid.
    share = target / len(thresholds)
    for keyword, threshold in thresholds.items():
        alone = {k: (threshold if k == keyword else np.inf) for k in thresholds}
        own = score(replay(trace, alone), words, trace.seconds).false_alarms_per_hour
        assert own <= share or threshold == THRESHOLD_GRID[-1], keyword
    assert sum(t < THRESHOLD_GRID[-1] for t in thresholds.values()) >= 5  # the bound is really exercised
    assert tuned.hits > 0 and tuned.false_alarms < loose.false_alarms


def test_tune_command_stores_thresholds_the_detector_uses(
    tiny_run: Path, small_speech_commands: Path, tmp_path: Path
) -> None:
    model = tmp_path / "int8_step.tflite"
    model.write_bytes((tiny_run / "int8_step.tflite").read_bytes())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuning = tune_model(model, small_speech_commands, target_false_alarms_per_hour=50, minutes=1)
    thresholds = tuning["thresholds"]
    # Said when the target is out of reach, and only then.
    out_of_reach = tuning["false_alarms_per_hour"] > 50
    assert [w.category for w in caught if w.category is TuningWarning] == [TuningWarning] * out_of_reach
    info = load_runner(model).info
    # Stored with the settings they were tuned with (the detector's defaults).
    assert info.detector == DetectorConfig(thresholds=thresholds)
    assert info.extra["threshold_tuning"] | {"thresholds": thresholds} == tuning
    assert tuning["split"] == "validation"
    assert not out_of_reach or max(thresholds.values()) == THRESHOLD_GRID[-1]
    assert Detector(load_runner(model)).smoother.keyword_thresholds == thresholds
    assert Detector(load_runner(model), thresholds=0.42).smoother.keyword_thresholds == dict.fromkeys(
        thresholds, 0.42
    )
    # Same weights: the model's outputs are unchanged by the rewrite.
    x = np.random.default_rng(0).normal(size=(1, 10)).astype(np.float32)
    assert np.array_equal(load_runner(model).invoke(x), load_runner(tiny_run / "int8_step.tflite").invoke(x))


def test_tune_refuses_the_installed_models_and_writes_a_copy(
    small_speech_commands: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundled = bundled_model(variant="int8_step")
    before = bundled.read_bytes()
    result = run_kws("tune", str(bundled), "--data", str(small_speech_commands), "--minutes", "0.5")
    assert result.returncode == 1 and "inside the installed kws package" in result.stderr
    assert "--out" in result.stderr and "Traceback" not in result.stderr
    copy = tmp_path / "tuned.tflite"
    tuning = tune_model(
        bundled, small_speech_commands, target_false_alarms_per_hour=50, minutes=0.5, out=copy, progress=True
    )
    assert capsys.readouterr().err.splitlines() == [
        "building the 0.5-min validation stream (20 dB)",
        "detector on the validation stream: 30 s",
        "choosing thresholds: 10 keywords",
    ]
    assert bundled.read_bytes() == before
    assert load_runner(copy).info.detector == DetectorConfig(thresholds=tuning["thresholds"])
    x = np.random.default_rng(0).normal(size=(1, 10)).astype(np.float32)
    assert np.array_equal(load_runner(copy).invoke(x), load_runner(bundled).invoke(x))
