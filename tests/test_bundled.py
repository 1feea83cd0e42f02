"""The bundled models and the demo: what a new user runs first."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import run_kws

from kws.bundled import MODELS, MODELS_DIR, bundled_model, sample_clips
from kws.data import negative_files
from kws.evaluate import agreement, evaluate, false_accepts, load_features
from kws.runtime import load_runner
from kws.stream import Detector, detect
from kws.streams import build_negative_stream

pytestmark = pytest.mark.system  # the bundled models against the figures of their model cards

CARD = json.loads((MODELS_DIR / "card.json").read_text())


@pytest.mark.parametrize(("name", "variant"), [(n, v) for n in MODELS for v in MODELS[n] if v != "float"])
def test_bundled_model_meets_its_model_card_on_the_benchmark(name: str, variant: str, test12: Path) -> None:
    key = "int8" if variant == "int8" else "int8 step"
    litert = load_runner(bundled_model(name, variant))
    data = load_features(test12, "test", litert.info.labels, litert.info.frontend)
    result = evaluate(litert, data)
    tflm = evaluate(load_runner(bundled_model(name, variant), "tflm"), data)
    card = CARD[name]["accuracy"]["benchmark"]
    assert result.accuracy >= card[f"{key} litert"] - 0.01
    assert tflm.accuracy >= card[f"{key} tflm"] - 0.01
    top1, _ = agreement(result, tflm)
    assert top1 >= 0.995
    # Thresholds tuned on validation streams travel with the file.
    assert litert.info.detector is not None and isinstance(litert.info.detector.thresholds, dict)
    assert set(litert.info.detector.thresholds) == set(litert.info.keywords)


@pytest.mark.parametrize("name", list(MODELS))
def test_bundled_false_accepts_on_the_measuring_phrase_are_the_cards(name: str, test12: Path) -> None:
    """ "jarvis" was never trained or tuned on: the card's figure is what the file does on it."""
    jarvis = test12.parent / "negatives" / "picovoice" / "jarvis"
    result = false_accepts(load_runner(bundled_model(name, "int8")), jarvis).to_dict()
    card = CARD[name]["negatives"]
    assert card["folder"] == "jarvis" and result["windows"] == card["windows"] > 1500
    assert result["keyword_windows"] == card["keyword_windows"]


def test_the_default_detectors_false_alarms_on_the_measuring_phrase_are_the_cards(test12: Path) -> None:
    """The operating point in the card: every "jarvis" recording once at 20 dB, fed live."""
    runner = load_runner(bundled_model(variant="int8_step"))
    labels = runner.info.labels
    jarvis = test12.parent / "negatives" / "picovoice" / "jarvis"
    audio, _ = build_negative_stream(
        negative_files(jarvis, runner.info.keywords), test12, labels, snr_db=20.0
    )
    events = detect(Detector(runner), audio)
    card = CARD["lstm"]["operating_point"]
    stream = next(s for s in card["streams"] if s["snr_db"] == 20.0)
    assert card["folder"] == "jarvis" and stream["recordings"] == 384
    assert stream["minutes"] == pytest.approx(len(audio) / 16000 / 60)
    assert stream["false_alarms"] == len(events)
    assert stream["false_alarms_by_label"] == dict(Counter(e.label for e in events).most_common())


def test_model_card_states_the_data_licence_and_the_measured_accuracy() -> None:
    card = (MODELS_DIR / "MODEL_CARD.md").read_text()
    assert "CC BY 4.0" in card and "arXiv:1804.03209" in card
    for name in MODELS:
        assert f"{CARD[name]['accuracy']['benchmark']['int8 litert']:.2%}" in card
        assert f"{CARD[name]['negatives']['false_accept_rate']:.2%}" in card
    assert "logmel_image" in card and '"jarvis" (384 recordings) is never trained or tuned on' in card
    for stream in CARD["lstm"]["operating_point"]["streams"]:
        row = f"| lstm | {stream['snr_db']:g} dB | {stream['hit_rate']:.1%} of {stream['keywords']} | {stream['false_alarms']} |"
        assert row in card


def test_demo_prints_the_words_of_the_sample_clips() -> None:
    result = run_kws("demo")
    assert result.returncode == 0, result.stderr
    labels = load_runner(bundled_model()).info.labels
    keywords = [p.stem for p in sample_clips() if p.stem in labels]
    detected = next(line for line in result.stdout.splitlines() if line.startswith("detected:"))
    assert detected.split()[1:] == keywords
    for path in sample_clips():
        expected = path.stem if path.stem in labels else "_unknown_"
        assert any(line.split()[:3] == [path.name, "->", expected] for line in result.stdout.splitlines())
    assert "kws listen" in result.stdout


def test_python_api_from_the_readme() -> None:
    code = (
        "import sys, kws\n"
        "assert 'kws.runtime' not in sys.modules  # names load on first use\n"
        "model = kws.load_runner(kws.bundled_model())\n"
        f"label, p, _ = kws.classify(model, kws.load_audio({str(sample_clips()[-1])!r}))\n"
        "detector = kws.Detector(kws.load_runner(kws.bundled_model(variant='int8_step')))\n"
        "audio = kws.load_audio(" + repr(str(sample_clips()[-1])) + ")\n"
        "events = kws.detect(detector, audio)\n"
        "print(label, [e.label for e in events])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    word = sample_clips()[-1].stem  # yes.wav
    assert result.stdout.split() == [word, f"['{word}']"]
