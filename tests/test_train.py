"""A real (short) training run: valid int8 models, parity between them, eval, resume, Ctrl-C."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import interruptible, run_kws

from kws.artifact import read_metadata, tflite_ops
from kws.audio import load_audio
from kws.evaluate import evaluate, load_features
from kws.features import FRONTENDS, FrontendConfig
from kws.runtime import load_runner


@pytest.fixture(scope="module")
def report(tiny_run: Path) -> dict:
    return json.loads((tiny_run / "report.json").read_text())


def test_run_writes_every_file(tiny_run: Path) -> None:
    for name in (
        "model.h5",
        "float.tflite",
        "int8.tflite",
        "int8_step.tflite",
        "report.json",
        "report.md",
        "confusion.png",
    ):
        assert (tiny_run / name).stat().st_size > 0, name
    assert (tiny_run / "checkpoint" / "best_weights.h5").is_file()
    assert not list(tiny_run.rglob("*.tmp*"))  # atomic writes leave no temporaries


def test_int8_models_are_small_fully_int8_and_fused(tiny_run: Path) -> None:
    for name, kind in (("int8.tflite", "clip"), ("int8_step.tflite", "step")):
        data = (tiny_run / name).read_bytes()
        assert len(data) <= 100 * 1024
        ops = tflite_ops(data)
        assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops and "WHILE" not in ops
        runner = load_runner(tiny_run / name, require_int8=True)
        assert runner.quantized and runner.info.kind == kind
        load_runner(tiny_run / name, "tflm")  # TFLM accepts every op


def test_streaming_thresholds_are_tuned_into_both_int8_files(tiny_run: Path, report: dict) -> None:
    assert set(report["thresholds"]) == {"int8.tflite", "int8_step.tflite"}
    for name, tuning in report["thresholds"].items():
        info = load_runner(tiny_run / name).info
        extra = info.extra
        assert info.detector is not None and info.detector.thresholds == tuning["thresholds"]
        assert set(tuning["thresholds"]) == set(report["labels"][2:])
        assert (
            extra["threshold_tuning"]["split"] == "validation" and extra["threshold_tuning"]["minutes"] == 1
        )
    assert "Streaming thresholds" in (tiny_run / "report.md").read_text()


def test_metadata_round_trip(tiny_run: Path, report: dict) -> None:
    for name in ("float.tflite", "int8.tflite", "int8_step.tflite"):
        info = read_metadata((tiny_run / name).read_bytes())
        assert list(info.labels) == report["labels"]
        assert info.frontend == FrontendConfig.from_dict(report["frontend"])
        assert info.frontend.normalised
    assert load_runner(tiny_run / "model.h5").info.labels == tuple(report["labels"])


def test_tiny_model_beats_chance_on_benchmark(tiny_run: Path, report: dict, test12: Path) -> None:
    runner = load_runner(tiny_run / "int8.tflite")
    data = load_features(test12, "test", runner.info.labels, runner.info.frontend)
    accuracy = evaluate(runner, data).accuracy
    assert accuracy >= 0.40  # chance is 1/12
    assert accuracy == pytest.approx(report["accuracy"]["benchmark"]["int8 litert"])


def test_step_model_agrees_with_whole_clip_model(tiny_run: Path, report: dict, test12: Path) -> None:
    clip = load_runner(tiny_run / "int8.tflite")
    step = load_runner(tiny_run / "int8_step.tflite")
    data = load_features(test12, "test", clip.info.labels, clip.info.frontend)
    # Fed frame by frame from a reset state, the step model gives the whole-clip label
    # (measured: 99.5% of benchmark clips for this tiny run, 100% for the default recipe).
    same = np.mean(evaluate(clip, data).y_pred == evaluate(step, data).y_pred)
    assert same >= 0.95
    assert report["tflm_vs_litert"]["int8, benchmark"]["top1_agreement"] >= 0.99
    assert report["tflm_vs_litert"]["int8 step, benchmark"]["top1_agreement"] >= 0.99


def test_eval_cli_on_both_layouts(
    tiny_run: Path, report: dict, test12: Path, small_speech_commands: Path
) -> None:
    for data, split, expected in (
        (test12, "test", report["accuracy"]["benchmark"]["int8 tflm"]),
        (small_speech_commands, "validation", report["validation_by_source"]["int8 tflm"]["audio"]),
    ):
        result = run_kws(
            "eval",
            "--model",
            str(tiny_run / "int8.tflite"),
            "--data",
            str(data),
            "--split",
            split,
            "--runtime",
            "tflm",
            "--json",
        )
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)  # nothing but the JSON object on stdout
        assert out["accuracy"] == pytest.approx(expected)
        assert out["runtime"] == "tflm" and len(out["confusion"]) == 12


def test_refuses_to_overwrite_a_run(tiny_run: Path, small_speech_commands: Path) -> None:
    from kws.errors import KwsError
    from kws.pipeline import run
    from kws.train import TrainConfig

    with pytest.raises(KwsError, match="use --resume"):
        run(TrainConfig(data=str(small_speech_commands), epochs=1), tiny_run, progress=False)
    with pytest.raises(KwsError, match="different settings"):
        run(
            TrainConfig(data=str(small_speech_commands), epochs=1, units=8),
            tiny_run,
            resume=True,
            progress=False,
        )


def test_fine_tuning_continues_a_finished_run_or_says_why_not(
    tiny_run: Path, report: dict, small_speech_commands: Path, tmp_path: Path
) -> None:
    import dataclasses
    import json

    from kws.errors import KwsError
    from kws.pipeline import run
    from kws.train import TrainConfig

    c = report["config"]
    base = TrainConfig(
        data=c["data"],
        images=c["images"],
        negatives=(),  # other sources than the run's: its normalisation is kept all the same
        epochs=c["epochs"] + 1,
        batch_size=c["batch_size"],
        units=c["units"],
        patience=c["patience"],
        calibration_clips=c["calibration_clips"],
        unknown_weight=3.0,  # what fine-tuning changes
        sequence_clips=2,  # from a clip model's checkpoint to sequence training, and back to clip models
        finetune_from=str(tiny_run),
    )
    for change, message in [
        ({"units": 16}, "a different model"),
        ({"epochs": c["epochs"]}, "already trained"),
        ({"frontend": dataclasses.replace(base.frontend, n_mfcc=13)}, "trained on another front-end"),
        ({"finetune_from": str(tmp_path)}, "not a finished kws train run"),
        ({"arch": "dscnn"}, "above 1 only for a recurrent model"),  # sequence_clips 2 is the base's
    ]:
        with pytest.raises(KwsError, match=message):
            run(
                dataclasses.replace(base, **change),
                tmp_path / "refused",
                progress=False,
                tune_minutes=0,
                input_workers=0,
            )
    out = run(base, tmp_path / "tuned", progress=False, tune_minutes=0, runtimes=("litert",), input_workers=0)
    # One more epoch from the finished run's last checkpoint, chosen anew.
    assert [h["epoch"] for h in out.state.history] == [c["epochs"] + 1]
    assert out.state.best_epoch == c["epochs"] + 1 and not out.interrupted
    written = json.loads((tmp_path / "tuned" / "report.json").read_text())
    assert written == json.loads(json.dumps(out.to_dict()))  # the report returned is the one written
    assert written["config"]["finetune_from"] == str(tiny_run)
    assert out.accuracy["validation"]["int8 litert"] > 0.2  # still a trained model, not a fresh one
    assert out.frontend.to_dict() == report["frontend"]
    with pytest.warns(DeprecationWarning, match="use its attributes"):
        assert out["interrupted"] is False  # the dict-style access of kws 0.1, deprecated


def train_command(data: Path, out: Path, epochs: int) -> list[str]:
    """``kws train`` on a small data set with a small LSTM (no threshold tuning: the tiny run's tests cover it)."""
    return [
        sys.executable,
        "-m",
        "kws",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--units",
        "16",
        "--tune-minutes",
        "0",
    ]


@pytest.mark.training
def test_ctrl_c_keeps_checkpoint_and_exports_usable_model(
    small_speech_commands: Path, tmp_path: Path
) -> None:
    """One feature worker: tf.data threads are always waiting on it when Ctrl-C lands (with one
    worker the run hung after Ctrl-C every time before the workers let them go)."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*train_command(small_speech_commands, out, 50), "--input-workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    state = out / "checkpoint" / "state.json"
    deadline = time.monotonic() + 240
    while not state.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert state.exists(), proc.communicate()[1]
    proc.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"kws train still running 120 s after Ctrl-C: {proc.communicate()[1][-2000:]}")
    assert time.monotonic() - interrupted < 30, "kws train took over 30 s to stop after Ctrl-C"
    assert proc.returncode == 130, stderr  # the interrupt's status, the models written all the same
    assert "interrupted" in stderr and "Traceback" not in stderr
    epochs = json.loads(state.read_text())["epoch"]
    assert 1 <= epochs < 50
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] and report["training"]["epochs"] == epochs
    runner = load_runner(out / "int8.tflite", require_int8=True)
    assert runner.run_clip(np.zeros((49, 10), dtype=np.float32)).shape == (12,)
    from kws.pipeline import run
    from kws.train import TrainConfig

    # `kws train --resume` with the command's settings and one epoch more continues from the
    # checkpoint, not from scratch (in this process: no second TensorFlow start-up).
    config = TrainConfig(data=str(small_speech_commands), epochs=epochs + 1, units=16)
    resumed = run(
        config, out, resume=True, progress=False, tune_minutes=0, runtimes=("litert",), input_workers=0
    )
    history = json.loads(state.read_text())["history"]
    assert (
        [h["epoch"] for h in history]
        == [h["epoch"] for h in resumed.state.history]
        == list(range(1, epochs + 2))
    )
    assert (
        not resumed.interrupted
        and json.loads((out / "report.json").read_text())["training"]["epochs"] == epochs + 1
    )


def test_run_trains_on_images_audio_and_negatives(tiny_run: Path, report: dict) -> None:
    """Every source is in training and validation, and validation is reported by source."""
    config = report["config"]
    assert config["images"].endswith("small_logmel.tar.gz") and len(config["negatives"]) == 1
    assert report["frontend"]["log"] == "pixel" and report["frontend"]["centre_clips"]
    for history in report["training"]["history"]:
        assert {"val_accuracy_images", "val_accuracy_audio", "val_accuracy_negatives"} <= set(history)
    sources = report["validation_by_source"]["int8 litert"]
    assert set(sources) == {"images", "audio", "negatives"}
    # The union is the clip-weighted mean of its sources.
    assert min(sources.values()) <= report["accuracy"]["validation"]["int8 litert"] <= max(sources.values())
    assert "Validation by source" in (tiny_run / "report.md").read_text()


def test_negative_windows_per_epoch_keep_their_number_and_stay_inside() -> None:
    from kws.train import TrainingData

    data = TrainingData.__new__(TrainingData)
    data.frontend = FRONTENDS["logmel_image"]
    rng = np.random.default_rng(0)
    for hop, length in [(8000, 40_000), (8000, 16_000), (8000, 9_000), (None, 40_000), (None, 9_000)]:
        data.negative_hop = hop
        counts = set()
        for _ in range(50):
            starts = data.negative_starts(length, rng)
            counts.add(len(starts))
            assert all(s >= 0 and (s + 16000 <= length or (length <= 16000 and s == 0)) for s in starts)
            assert all(b - a == hop for a, b in itertools.pairwise(starts))
        assert counts == {len(data.negative_starts(length))}
    data.negative_hop = 8000
    assert len(data.negative_starts(40_000)) == 4  # 0, 0.5, 1.0, 1.5 s


def test_hard_negative_mining_picks_the_most_keyword_like_windows() -> None:
    from kws.training.mining import hard_negatives
    from kws.training.prepare import TrainingData

    class Scores:
        """Stands in for the model: fixed probabilities for each mining window."""

        def __init__(self, probabilities: np.ndarray) -> None:
            self.probabilities = probabilities

        def predict(self, x: np.ndarray, **kwargs: object) -> np.ndarray:
            assert len(x) == len(self.probabilities)
            return self.probabilities

    data = TrainingData.__new__(TrainingData)
    data.mining = [(0, 0), (0, 1600), (1, 0), (1, 1600), (1, 3200)]
    data.mining_x = np.zeros((5, 50, 10), np.float32)
    # Columns: silence, unknown, two keywords; the windows' keyword-likeness: 0.1, 0.7, 0.2, 0.9, 0.5.
    p = np.array(
        [
            [0.8, 0.1, 0.1, 0.0],
            [0.1, 0.2, 0.0, 0.7],
            [0.0, 0.8, 0.2, 0.0],
            [0.0, 0.1, 0.9, 0.0],
            [0.5, 0.0, 0.5, 0.0],
        ]
    )
    assert hard_negatives(Scores(p), data, 3) == [(1, 1600), (0, 1600), (1, 3200)]
    assert hard_negatives(Scores(p), data, 0) == []


def test_mining_windows_cover_the_training_negatives_and_extend_the_epoch(
    tiny_run: Path, report: dict, small_speech_commands: Path, small_negatives: Path
) -> None:
    from kws.data import held_out_negative
    from kws.train import TrainConfig, prepare_data
    from kws.training.fit import augmented_features

    assert report["config"]["hard_negatives"] == 20  # the shared training run mines
    config = TrainConfig(data=str(small_speech_commands), negatives=(str(small_negatives),), hard_negatives=5)
    data = prepare_data(config, progress=False)
    trained_on = [p for p in sorted(small_negatives.iterdir()) if not held_out_negative(p)]
    assert list(data.sources.negatives[: len(data.negative_lengths)]) == trained_on
    n, hop = data.frontend.clip_samples, 1600
    for i, length in enumerate(data.negative_lengths):
        assert length == len(load_audio(trained_on[i]))
        starts = [at for j, at in data.mining if j == i]
        assert starts == list(range(0, length - n + 1, hop))  # every 0.1 s, inside the recording
    assert data.mining_x.shape == (len(data.mining), data.frontend.clip_frames, data.frontend.n_mfcc)
    base = augmented_features(data, config, epoch=1)
    extended = augmented_features(data, config, epoch=1, hard=data.mining[:5])
    assert len(base) == len(data.train_y) and len(extended) == len(base) + 5
    np.testing.assert_array_equal(extended[: len(base)], base)  # the usual examples are unchanged


def test_sequences_join_examples_and_weigh_each_frame() -> None:
    from kws.train import TrainConfig
    from kws.training.fit import epoch_batches, sequence_targets

    n, frames, settle = 7, 10, 3
    config = TrainConfig(data="", sequence_clips=3, batch_size=2)
    batches = epoch_batches(n, config, epoch=0)
    assert batches.shape == (1, 2, 3)  # 7 examples: two sequences of 3, the 7th sits out
    assert len(set(batches.ravel())) == 6 and set(batches.ravel()) <= set(range(n))
    assert not np.array_equal(batches, epoch_batches(n, config, epoch=1))  # a new order each epoch
    y = np.array([2, 1, 0, 3, 2, 1, 3])  # labels 0 and 1 are silence and unknown
    weights = np.array([0.5, 4.0, 1.0, 2.0])
    labels = y[batches[0]]
    ys, ws = sequence_targets(labels, weights, [0, 1], frames, settle)
    assert ys.shape == ws.shape == (2, 30)
    for s in range(2):
        for k in range(3):
            part = slice(k * frames, (k + 1) * frames)
            assert np.all(ys[s, part] == labels[s, k])
            w = ws[s, part]
            assert w[-1] == weights[labels[s, k]]  # every example: its label's weight at its last frame
            if labels[s, k] in (0, 1):  # silence and unknown: also every frame after the settling time
                assert np.all(w[:settle] == 0) and np.all(w[settle:-1] > 0)
                assert w[settle:-1].sum() == pytest.approx(weights[labels[s, k]])
            else:
                assert np.all(w[:-1] == 0)


def test_a_sequence_model_shares_the_clip_models_weights_and_outputs() -> None:
    from kws.model import build, copy_weights

    clip = build("lstm", 5, 20, 10, units=8)
    sequence = copy_weights(clip, build("lstm", 5, 20, 10, units=8, sequences=True))
    x = np.random.default_rng(1).normal(size=(3, 20, 10)).astype(np.float32)
    every_frame = sequence.predict(x, verbose=0)
    assert every_frame.shape == (3, 20, 5)
    np.testing.assert_allclose(every_frame[:, -1], clip.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match="only recurrent models"):
        build("dscnn", 5, 20, 10, sequences=True)


def test_what_kws_train_held_is_still_there_with_a_deprecation_warning() -> None:
    """kws.train's stages are modules of kws.training now; the old names still answer, and say where."""
    import importlib

    import kws.train

    for name, module in kws.train._MOVED.items():
        with pytest.warns(DeprecationWarning, match=rf"kws.train.{name} is {module}.{name} now"):
            moved = getattr(kws.train, name)
        assert moved is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError):
        kws.train.no_such_name  # noqa: B018
