"""kws bench: its figures checked against independent measurements on a small set."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import run_kws

from kws.audio import load_audio
from kws.bench import format_table
from kws.bundled import MODELS_DIR, bundled_model
from kws.data import negative_files
from kws.features import clip_features
from kws.runtime import load_runner
from kws.stream import Detector, detect
from kws.streameval import poisson_upper, score
from kws.streams import build_negative_stream, build_stream

pytestmark = pytest.mark.system  # kws bench on the bundled models


@pytest.fixture(scope="module")
def small_test12(tmp_path_factory: pytest.TempPathFactory, test12: Path) -> Path:
    """Six clips of each class of the 12-class test set (symlinks)."""
    root = tmp_path_factory.mktemp("small_test12")
    for folder in sorted(p for p in test12.iterdir() if p.is_dir()):
        (root / folder.name).mkdir()
        for f in sorted(folder.glob("*.wav"))[:6]:
            (root / folder.name / f.name).symlink_to(f)
    return root


@pytest.fixture(scope="module")
def small_jarvis(tmp_path_factory: pytest.TempPathFactory, test12: Path) -> Path:
    """Ten recordings of the measuring phrase "jarvis" (symlinks): speech without keywords."""
    root = tmp_path_factory.mktemp("jarvis")
    for f in sorted((test12.parent / "negatives" / "picovoice" / "jarvis").glob("*.flac"))[:10]:
        (root / f.name).symlink_to(f)
    return root


@pytest.fixture(scope="module")
def bench_run(small_test12: Path, small_jarvis: Path) -> subprocess.CompletedProcess[str]:
    result = run_kws(
        "bench",
        "--data",
        str(small_test12),
        "--minutes",
        "1",
        "--repeats",
        "5",
        "--negatives",
        str(small_jarvis),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def bench_json(bench_run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(bench_run.stdout)
    return out


def kws_eval(model: Path, data: Path, runtime: str) -> float:
    result = run_kws("eval", "--model", str(model), "--data", str(data), "--runtime", runtime, "--json")
    assert result.returncode == 0, result.stderr
    return float(json.loads(result.stdout)["accuracy"])


def test_bench_defaults_to_the_bundled_lstm_and_dscnn(bench_json: dict[str, Any]) -> None:
    models = [Path(r["model"]) for r in bench_json["models"]]
    assert models == [bundled_model("lstm"), bundled_model("dscnn")]
    lstm, dscnn = bench_json["models"]
    assert lstm["streaming"]["mode"] == "stateful" and dscnn["streaming"]["mode"] == "windowed"


def test_bench_json_says_its_stages_on_stderr(bench_run: subprocess.CompletedProcess[str]) -> None:
    """With --json, stdout is the JSON alone and the progress goes to stderr: one line a stage
    (stderr is a pipe here, no terminal), the streams first, then each model's stages."""
    lines = bench_run.stderr.splitlines()
    assert "\r" not in bench_run.stderr and "Traceback" not in bench_run.stderr
    assert lines[:5] == [
        "building the 1-min keyword stream (20 dB)",
        "building the negative stream (20 dB) of 10 recordings",
        "building the 1-min keyword stream (10 dB)",
        "building the negative stream (10 dB) of 10 recordings",
        "benchmarking: 2 models",
    ]
    lstm, dscnn = (lines.index(f"benchmarking {bundled_model(name)}") for name in ("lstm", "dscnn"))
    assert lstm == 5 and dscnn > lstm
    for model in (lines[lstm:dscnn], lines[dscnn:]):
        assert model[1] == f"features test: {12 * 6} clips"
        for stage in (
            "detector on the keyword stream (20 dB): 60 s",
            "detector on the keyword stream (10 dB): 60 s",
            "DET curve: 71 thresholds",
        ):
            assert stage in model


def test_accuracy_equals_kws_eval(bench_json: dict[str, Any], small_test12: Path) -> None:
    for row in bench_json["models"]:
        model = Path(row["model"])
        assert row["clips"] == 72
        assert row["accuracy"]["int8 litert"] == kws_eval(model, small_test12, "litert")
        assert row["accuracy"]["int8 tflm"] == kws_eval(model, small_test12, "tflm")
        assert row["accuracy"]["float"] == kws_eval(
            model.with_name(model.name.replace("int8", "float")), small_test12, "litert"
        )


def test_sizes_and_compute_match_the_files(bench_json: dict[str, Any]) -> None:
    lstm = bench_json["models"][0]
    for row in bench_json["models"]:
        assert row["flash_bytes"] == Path(row["model"]).stat().st_size
    # Stacked LSTM: 4 gates x units x (inputs + units) per frame and layer, then the classifier.
    info = load_runner(lstm["model"]).info
    units, layers = info.extra["train"]["units"], info.extra["train"]["layers"]
    n_in, frames, n_labels = info.frontend.n_mfcc, info.frontend.clip_frames, len(info.labels)
    per_frame = sum(4 * units * ((n_in if i == 0 else units) + units) for i in range(layers))
    assert lstm["macs_per_inference"] == frames * per_frame + units * n_labels
    keras_params = (
        sum(4 * units * ((n_in if i == 0 else units) + units + 1) for i in range(layers))
        + (units + 1) * n_labels
    )
    assert keras_params <= lstm["params"] <= keras_params + 16  # plus the slice op's few constant operands
    # Two staggered step models each do one frame's work per 20-ms hop: 50 frames a second.
    assert lstm["streaming"]["invokes_per_posterior"] == 2
    assert lstm["streaming"]["macs_per_second"] == pytest.approx(
        2 * 50 * (per_frame + units * n_labels), rel=0.01
    )


@pytest.mark.parametrize("which", [0, 1])
def test_arena_figure_is_enough_for_the_tflm_interpreter(bench_json: dict[str, Any], which: int) -> None:
    row = bench_json["models"][which]
    for model, arena in (
        (row["model"], row["arena_bytes"]),
        (row["streaming"]["model"], row["streaming"]["arena_bytes"]),
    ):
        # In a subprocess: TFLM crashes rather than failing cleanly when the arena is too small.
        code = (
            "import sys, numpy as np\n"
            "from tflite_micro.python.tflite_micro import runtime\n"
            f"i = runtime.Interpreter.from_bytes(open({model!r}, 'rb').read(), arena_size=int(sys.argv[1]))\n"
            "d = i.get_input_details(0)\n"
            "i.set_input(np.zeros(d['shape'], d['dtype']), 0)\n"
            "i.invoke()\n"
        )
        enough = subprocess.run([sys.executable, "-c", code, str(arena)], capture_output=True, check=False)
        assert enough.returncode == 0, enough.stderr
        short = subprocess.run(
            [sys.executable, "-c", code, str(arena - 64)], capture_output=True, check=False
        )
        assert short.returncode != 0


def test_stream_figures_equal_the_live_detector(bench_json: dict[str, Any], small_test12: Path) -> None:
    for row in bench_json["models"]:
        streaming = row["streaming"]
        runner = load_runner(streaming["model"])
        audio, words = build_stream(small_test12, runner.info.labels, minutes=1, seed=0)
        live = score(detect(Detector(runner), audio), words, len(audio) / 16000)
        assert (streaming["hits"], streaming["false_alarms"]) == (live.hits, live.false_alarms)
        assert streaming["hit_rate"] == pytest.approx(live.hit_rate)
        # A DET point (one threshold for every keyword, replayed from the trace) is what a live
        # detector set to that threshold gives.
        point = next(p for p in streaming["det"] if p["threshold"] == 0.5)
        shared = score(detect(Detector(runner, thresholds=0.5), audio), words, len(audio) / 16000)
        assert point["false_reject_rate"] == pytest.approx(1 - shared.hit_rate)
        assert point["false_alarms"] == shared.false_alarms


def test_false_alarm_figures_equal_the_live_detector_on_the_negative_streams(
    bench_json: dict[str, Any], small_test12: Path, small_jarvis: Path
) -> None:
    for row in bench_json["models"]:
        runner = load_runner(row["streaming"]["model"])
        labels = runner.info.labels
        assert [f["snr_db"] for f in row["false_alarms"]] == [20.0, 10.0]
        for figures in row["false_alarms"]:
            audio, _words = build_negative_stream(
                negative_files(small_jarvis, runner.info.keywords),
                small_test12,
                labels,
                snr_db=figures["snr_db"],
                seed=0,
            )
            live = detect(Detector(runner), audio)  # every event on speech without keywords is false
            minutes = len(audio) / 16000 / 60
            assert figures["false_alarms"] == len(live) and figures["recordings"] == 10
            assert figures["minutes"] == pytest.approx(minutes)
            assert figures["false_alarms_per_hour"] == pytest.approx(len(live) * 60 / minutes)
            assert figures["false_alarms_per_hour_upper95"] == pytest.approx(
                poisson_upper(len(live)) * 60 / minutes
            )
            assert sum(figures["false_alarms_by_label"].values()) == len(live)
            keywords, keyword_words = build_stream(
                small_test12, labels, minutes=1, seed=0, snr_db=figures["snr_db"]
            )
            hits = score(detect(Detector(runner), keywords), keyword_words, len(keywords) / 16000)
            assert figures["hit_rate"] == pytest.approx(hits.hit_rate)
            # The DET curve counts false alarms on the negative stream: at the shared
            # threshold 0.5, the live detector's count there.
            at_half = next(p for p in figures["det"] if p["threshold"] == 0.5)
            assert at_half["false_alarms"] == len(detect(Detector(runner, thresholds=0.5), audio))
            envelope = figures["det_envelope"]
            assert all(
                a["false_alarms_per_hour"] <= b["false_alarms_per_hour"]
                for a, b in itertools.pairwise(envelope)
            )
            assert all(
                a["false_reject_rate"] > b["false_reject_rate"] for a, b in itertools.pairwise(envelope)
            )


def test_table_has_every_figure_for_every_model(bench_json: dict[str, Any]) -> None:
    rows = bench_json["models"]
    text = format_table(rows)
    markdown = format_table(rows, markdown=True).splitlines()
    for figure in (
        "accuracy int8 TFLM",
        "MACs per inference",
        "TFLM arena bytes",
        "real-time factor",
        "recall _unknown_",
        "hits / false alarms on jarvis0 at 20 dB",
        "hits / false alarms on jarvis0 at 10 dB",
    ):
        assert figure in text
    assert all(line.count("|") == len(rows) + 2 for line in markdown)
    assert "lstm_int8.tflite" in markdown[0] and "dscnn_int8.tflite" in markdown[0]


def test_firmware_figures_are_the_bundled_models_stored_ones(bench_json: dict[str, Any]) -> None:
    """Without TFLM's sources, bench shows the emulated-board figures card.json stores for
    the bundled files (measured by ``kws firmware``; tests/test_board.py measures them live)."""
    card = json.loads((MODELS_DIR / "card.json").read_text())
    for row, name in zip(bench_json["models"], ("lstm", "dscnn"), strict=True):
        firmware = row["firmware"]
        assert firmware["source"] == "stored"
        assert {k: v for k, v in firmware.items() if k != "source"} == card[name]["firmware"]
        streaming = Path(row["streaming"]["model"]).read_bytes()
        assert firmware["model_sha256"] == hashlib.sha256(streaming).hexdigest()
    lstm = bench_json["models"][0]["firmware"]
    assert (
        lstm["frame_instructions"]["total"] <= 320_000 and lstm["board_equals_host"] and lstm["events_match"]
    )
    assert "M4F instructions per 20-ms frame" in format_table(bench_json["models"])


def test_bench_without_data_says_what_it_needs() -> None:
    result = run_kws("bench")
    assert result.returncode == 1 and "--data DIR" in result.stderr and "Traceback" not in result.stderr


def test_false_accepts_equal_kws_eval_and_a_count_by_hand(
    bench_json: dict[str, Any], small_jarvis: Path
) -> None:
    for row in bench_json["models"]:
        model = Path(row["model"])
        result = run_kws("eval", "--model", str(model), "--negatives", str(small_jarvis), "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["negatives"] == row["negatives"]
        # By hand: 1-s windows every 0.5 s of each recording, the top label a keyword.
        runner = load_runner(model)
        config = runner.info.frontend
        named, windows, seconds = 0, 0, 0.0
        for path in sorted(small_jarvis.iterdir()):
            audio = load_audio(path)
            seconds += len(audio) / 16000
            starts = range(0, len(audio) - 16000 + 1, 8000) if len(audio) > 16000 else [0]
            for start in starts:
                top = int(np.argmax(runner.run_clip(clip_features(audio[start : start + 16000], config))))
                named += top >= 2
                windows += 1
        n = row["negatives"]
        assert (n["windows"], n["keyword_windows"]) == (windows, named) and windows >= 30
        assert n["minutes"] == pytest.approx(seconds / 60)
        assert n["false_accept_rate"] == pytest.approx(named / windows)
        assert n["interval95"][0] <= n["false_accept_rate"] <= n["interval95"][1]
        assert sum(n["by_keyword"].values()) == named
    assert "keyword false accepts, " in format_table(bench_json["models"])


def test_eval_needs_data_or_negatives() -> None:
    result = run_kws("eval")
    assert result.returncode == 1 and "--negatives DIR" in result.stderr and "Traceback" not in result.stderr
