"""Train the bundled default models and write them, with their model card, into kws/models/.

    python tools/train_default.py [--runs runs] [--shared ../shared/data] [--tflm TFLM_TREE_OR_ARCHIVE]

The recipe is `kws train`'s defaults: the stacked LSTM and the DS-CNN peer, seed 0, on
the full Speech Commands as log-mel images beside the audio folder and three of the four
negative phrases (never "jarvis", the measuring set), with the 12-class test set as
benchmark (training on the CPU is deterministic: the same command gives the same
models). Equivalent to

    kws train --data SHARED/speech_commands --images SHARED/speech_commands_logmel.tar.gz \
        --negatives SHARED/negatives/picovoice/alexa --negatives .../computer --negatives .../snowboy \
        --out runs/lstm [--arch dscnn] --benchmark SHARED/speech_commands_test12 --tune-minutes 0

then, for the LSTM, a fine-tuning stage for false alarms (:data:`FINETUNE`):

    kws train (the same sources) --finetune-from runs/lstm --negative-hop 0.5 --unknown-weight 4 \
        --hard-negatives 2000 --epochs 50 --out runs/lstm_finetuned --benchmark ... --tune-minutes 0

A run folder that already holds a finished run is reused, not retrained. Thresholds are
tuned (``kws tune --negatives`` with the training negatives: validation speakers and the
negatives' held-out 10%, for :data:`BUNDLED_TARGET_FA`) where a model file was not tuned
so yet. The int8 files are measured once on the "jarvis" recordings (keyword false
accepts on 1-s windows, and the default detector's hits and false alarms per hour on
streams at 20 and 10 dB SNR). Then the files are copied into ``kws/models/`` and
``MODEL_CARD.md`` is written from the runs' reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kws import board
from kws.artifact import RUN_FILES
from kws.bench import false_alarm_figures
from kws.bundled import MODELS, MODELS_DIR, stored_firmware_figures
from kws.data import negative_files
from kws.evaluate import false_accepts
from kws.fileio import write_text_atomic
from kws.pipeline import run
from kws.runtime import load_runner
from kws.stream import Detector
from kws.streameval import NEGATIVE_SNRS, tune_model
from kws.streams import build_negative_stream, build_stream
from kws.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared/data"
TRAINING_NEGATIVES = ("alexa", "computer", "snowboy")
MEASURING_NEGATIVES = "jarvis"  # never trained or tuned on
FIRMWARE_COMMAND = (
    "kws firmware --data speech_commands_test12 (100 clips, 2-min stream; QEMU 7.2 mps2-an386, "
    "arm-none-eabi-gcc 12.2, TFLM 90b983c with CMSIS-NN)"
)


# Second stage of a model's recipe: settings changed from the first, fine-tuned from its
# finished run (`kws train --finetune-from`) into run folder "<name>_finetuned".
FINETUNE: dict[str, dict[str, Any]] = {
    "lstm": {"negative_hop_s": 0.5, "unknown_weight": 4.0, "hard_negatives": 2000, "epochs": 50},
}
# False alarms an hour (all keywords) the bundled thresholds are tuned for, on the
# validation speakers' stream and the training negatives' held-out 10%.
BUNDLED_TARGET_FA = 5.0


def recipe(arch: str, shared: Path) -> TrainConfig:
    """The bundled models' training settings: every default, on the shared data."""
    return TrainConfig(
        data=str(shared / "speech_commands"),
        images=str(shared / "speech_commands_logmel.tar.gz"),
        negatives=tuple(str(shared / "negatives" / "picovoice" / p) for p in TRAINING_NEGATIVES),
        arch=arch,
    )


def train_or_reuse(config: TrainConfig, run_dir: Path, shared: Path) -> dict[str, Any]:
    report = run_dir / "report.json"
    if report.is_file():
        print(f"{config.arch}: reusing the finished run in {run_dir}")
    else:
        print(f"{config.arch}: training into {run_dir}")
        run(config, run_dir, benchmark=shared / "speech_commands_test12", tune_minutes=0)
    result: dict[str, Any] = json.loads(report.read_text())
    if result["interrupted"]:
        raise SystemExit(f"{run_dir}: the run was interrupted; finish it with kws train --resume")
    return result


def train_model(name: str, runs: Path, shared: Path) -> tuple[Path, dict[str, Any]]:
    """A bundled model's run folder and report: its recipe, then its fine-tuning stage if any."""
    run_dir = runs / name
    report = train_or_reuse(recipe(name, shared), run_dir, shared)
    if name in FINETUNE:
        config = dataclasses.replace(recipe(name, shared), **FINETUNE[name], finetune_from=str(run_dir))
        run_dir = runs / f"{name}_finetuned"
        report = train_or_reuse(config, run_dir, shared)
    return run_dir, report


def tuning_of(path: Path, data: Path, negatives: list[Path], minutes: float) -> dict[str, Any]:
    """The file's threshold tuning, tuning it first if it has none with the held-out negatives."""
    info = load_runner(path).info
    if "negatives" not in info.extra.get("threshold_tuning", {}):
        print(f"tuning thresholds of {path} on {minutes:g} min of validation stream and held-out negatives")
        tune_model(
            path, data, target_false_alarms_per_hour=BUNDLED_TARGET_FA, negatives=negatives, minutes=minutes
        )
        info = load_runner(path).info
    assert info.detector is not None  # tuned just now if it was not
    return {"thresholds": info.detector.thresholds, **info.extra["threshold_tuning"]}


def operating_point(path: Path, benchmark: Path, jarvis: Path, minutes: float = 20.0) -> list[dict[str, Any]]:
    """The default detector at its stored thresholds: hits on a keyword stream of the
    benchmark speakers and false alarms on every "jarvis" recording once, at each SNR
    (:func:`kws.bench.false_alarm_figures`)."""
    runner = load_runner(path)
    labels = runner.info.labels
    files = negative_files(jarvis, runner.info.keywords)
    figures = []
    for snr in NEGATIVE_SNRS:
        keywords = build_stream(benchmark, labels, minutes=minutes, snr_db=snr)
        negatives = build_negative_stream(files, benchmark, labels, snr_db=snr)
        figures.append(false_alarm_figures(Detector(runner), snr, keywords, negatives))
    return figures


def model_card(
    reports: dict[str, dict[str, Any]],
    tunings: dict[str, dict[str, Any]],
    negatives: dict[str, dict[str, Any]],
    points: dict[str, list[dict[str, Any]]],
) -> str:
    first = next(iter(reports.values()))
    frontend = first["frontend"]
    lines = [
        "# Bundled models: model card",
        "",
        "Keyword spotters for the ten Speech Commands keywords (yes, no, up, down, left, right, on,",
        "off, stop, go), plus `_silence_` and `_unknown_`, from 1 s of 16 kHz audio (49 frames x",
        f"{frontend['n_mfcc']} MFCCs of the `logmel_image` front-end: {frontend['window_ms']:g}-ms window, "
        f"{frontend['hop_ms']:g}-ms hop, {frontend['n_fft']}-point FFT,",
        f"{frontend['n_mels']} mel bands {frontend['fmin']:g}-{frontend['fmax']:g} Hz linear in mel, "
        "`10 ln(1 + mel / 4.5e-7)` up to 255, orthonormal DCT).",
        "Full-int8 TensorFlow Lite for microcontrollers (TFLM) and host (LiteRT).",
        "",
        "## Data",
        "",
        "- Speech Commands v0.02 (Warden, P., *Speech Commands: A Dataset for Limited-Vocabulary",
        "  Speech Recognition*, arXiv:1804.03209, 2018; released by Google under the Creative Commons",
        "  Attribution 4.0 International licence, CC BY 4.0, https://creativecommons.org/licenses/by/4.0/):",
        "  every training- and validation-split speaker of the full set as log-mel images",
        "  (`speech_commands_logmel.tar.gz`: 41,473 word images and 1,000 noise images, as published in",
        "  the PICO-tinyML-benchmark repository), plus the audio subset `speech_commands/` (3,690 clips",
        "  of other speakers, official validation and test lists). These models are derived from it.",
        "- Non-keyword speech as `_unknown_`: the Picovoice wake-word benchmark's recordings of",
        '  "alexa", "computer" and "snowboy" (Apache-2.0; 10% of each held out for validation).',
        '  "jarvis" (384 recordings) is never trained or tuned on: it measures false accepts below.',
        "- Benchmark: the test speakers of `speech_commands/` in the canonical 12-class layout",
        "  (`speech_commands_test12`, 574 clips, 173 of them `_silence_`, 34 `_unknown_`); none of",
        "  its speakers is in training or validation.",
        "",
        "## Recipe",
        "",
        "`python tools/train_default.py`, which runs `kws train --data DATA --images IMAGES",
        "--negatives ... --out runs/ARCH [--arch dscnn] --benchmark BENCH` with every other setting at",
        "its default (deterministic on the CPU), then `kws tune` for the thresholds:",
        "",
    ]
    for name, finished in reports.items():
        r = finished.get("first_stage", finished)
        c = r["config"]
        lines.append(
            f"- `{name}`: {r['arch']}, {r['params']:,} parameters; {c['epochs']} epochs (best {r['training']['best_epoch']}), "
            f"batch {c['batch_size']}, learning rate {c['learning_rate']} (cosine), dropout {c['dropout']}, "
            f"seed {c['seed']}; "
            + (
                f"negative windows every {c['negative_hop_s']} s; "
                if c.get("negative_hop_s")
                else "one negative window a recording each epoch; "
            )
            + f"augmentation {json.dumps(c['augment'])}; "
            f"{r['training']['seconds'] / 60:.1f} min of training on a 2-core CPU."
        )
        if name in FINETUNE:
            changed = ", ".join(f"`{k}` {v}" for k, v in FINETUNE[name].items())
            lines.append(
                f"  Then fine-tuned (`kws train --finetune-from`): the first run's last checkpoint trained on "
                f"with {changed} (the cosine schedule continued), the best of the new epochs kept "
                f"({finished['training']['best_epoch']})."
            )
    lines += ["", "## Accuracy (measured by `kws train`'s report)", ""]
    lines += [
        "| model | file | KB | validation | benchmark float | benchmark int8 LiteRT | benchmark int8 TFLM | TFLM = LiteRT (top-1, benchmark) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in reports.items():
        acc, bench = r["accuracy"], r["accuracy"]["benchmark"]
        for variant, file in MODELS[name].items():
            if variant == "float":
                continue
            key = "int8" if variant == "int8" else "int8 step"
            agree = r["tflm_vs_litert"][f"{key}, benchmark"]["top1_agreement"]
            lines.append(
                f"| {name} | `{file}` | {r['sizes'][RUN_FILES[variant]] / 1000:.1f} | "
                f"{acc['validation'][key + ' litert']:.2%} | {bench['float tflite']:.2%} | "
                f"{bench[key + ' litert']:.2%} | {bench[key + ' tflm']:.2%} | {agree:.2%} |"
            )
    lines += ["", "Per-class recall on the benchmark (int8, LiteRT):", ""]
    names = list(reports)
    lines += ["| label | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    labels = reports[names[0]]["labels"]
    for label in labels:
        lines.append(
            f"| {label} | "
            + " | ".join(f"{reports[n]['per_class_recall']['recall'][label]:.1%}" for n in names)
            + " |"
        )
    lines += [
        "",
        f'## Keyword false accepts on "{MEASURING_NEGATIVES}" (never trained or tuned on)',
        "",
        "Share of 1-s windows (every 0.5 s) of the recordings whose top label is a keyword (int8, LiteRT):",
        "",
        "| model | windows | minutes | keyword windows | rate | 95% interval |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, n in negatives.items():
        low, high = n["interval95"]
        lines.append(
            f"| {name} | {n['windows']:,} | {n['minutes']:.1f} | {n['keyword_windows']} | "
            f"{n['false_accept_rate']:.2%} | {low:.2%}-{high:.2%} |"
        )
    lines += [
        "",
        "## Streaming thresholds",
        "",
        "Per-keyword thresholds stored in each file, chosen by `kws tune --negatives` on a stream",
        "built from the validation speakers (keywords and unknown words over background noise,",
        "20 dB SNR) and streams of the training negatives' held-out 10% (at 20 and 10 dB), for",
        f"{BUNDLED_TARGET_FA:g} false alarms per hour over all keywords (an equal share each).",
        "",
        "| file | tuning streams | hit rate | false alarms / h | thresholds |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for file, t in tunings.items():
        th = ", ".join(f"{k} {v:.3g}" for k, v in t["thresholds"].items())
        held = f" + {t['negatives']['minutes']:.1f} min negatives" if "negatives" in t else ""
        lines.append(
            f"| `{file}` | {t['minutes']:g} min {t['split']}{held} | {t['hit_rate']:.1%} | "
            f"{t['false_alarms_per_hour']:.1f} | {th} |"
        )
    lines += [
        "",
        f'## Operating point: hits and false alarms per hour on "{MEASURING_NEGATIVES}"',
        "",
        "The default detector (`kws listen`'s) at the stored thresholds: hits on a 20-min stream of",
        "the benchmark speakers' keywords and unknown words, false alarms on a stream of every",
        f'"{MEASURING_NEGATIVES}" recording once, 1-3 s apart, both over the benchmark\'s background noise',
        "(`kws bench --negatives`). The bound is the exact one-sided 95% Poisson upper bound.",
        "",
        "| model | SNR | keyword hits | false alarms | minutes | per hour (95% bound) | by keyword |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, figures in points.items():
        for f in figures:
            by = ", ".join(f"{k} {v}" for k, v in f["false_alarms_by_label"].items()) or "none"
            lines.append(
                f"| {name} | {f['snr_db']:g} dB | {f['hit_rate']:.1%} of {f['keywords']} | {f['false_alarms']} | "
                f"{f['minutes']:.1f} | {f['false_alarms_per_hour']:.1f} ({f['false_alarms_per_hour_upper95']:.1f}) | {by} |"
            )
    lines += [
        "",
        "Lower envelope of the trade-off at one threshold shared by every keyword (20 dB):",
        "",
        "| model | threshold | false-reject rate | false alarms (per hour) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, figures in points.items():
        for p in figures[0]["det_envelope"]:
            lines.append(
                f"| {name} | {p['threshold']:g} | {p['false_reject_rate']:.1%} | "
                f"{p['false_alarms']} ({p['false_alarms_per_hour']:.1f}) |"
            )
    lines += [
        "",
        "## Limits",
        "",
        "- About 3,400 training examples a keyword from some 2,000 speakers, most of them as images",
        "  (the log-mel front-end, not the audio): accuracy on other voices, microphones and rooms",
        "  will be lower. Other speech is the main source of false alarms. Retrain on your own data",
        "  with `kws train`.",
        "- English only; the ten keywords above only.",
    ]
    return "\n".join(lines) + "\n"


def firmware_of(name: str, tflm: str | None, benchmark: Path) -> dict[str, Any] | None:
    """The bundled model's streaming file on the emulated Cortex-M4F (``kws firmware``'s
    figures): measured where TFLM's sources (``tflm``) and the toolchain are at hand, else
    those card.json already holds for the same bytes, else None."""
    path = MODELS_DIR / MODELS[name].get("int8_step", MODELS[name]["int8"])
    if tflm is None or board.missing_tools(board.BOARD, qemu=True):
        return stored_firmware_figures(path)
    with tempfile.TemporaryDirectory() as work:
        report = board.measure(path, board.tflm_tree(tflm), benchmark, Path(work))
    print(board.format_report(report))
    return {"measured_with": FIRMWARE_COMMAND, **board.figures(report)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=Path, default=ROOT / "runs", help="folder for the run folders")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    parser.add_argument(
        "--tune-minutes", type=float, default=60.0, help="validation stream for the thresholds"
    )
    parser.add_argument(
        "--tflm", help="TFLM's sources (tree or .tar.gz): measure the firmware on the emulated board"
    )
    args = parser.parse_args()
    data = args.shared / "speech_commands"
    jarvis = args.shared / "negatives" / "picovoice" / MEASURING_NEGATIVES
    benchmark = args.shared / "speech_commands_test12"
    training_negatives = [args.shared / "negatives" / "picovoice" / p for p in TRAINING_NEGATIVES]
    reports, tunings, negatives, points = {}, {}, {}, {}
    for name in MODELS:
        run_dir, reports[name] = train_model(name, args.runs, args.shared)
        if name in FINETUNE:
            first = json.loads((args.runs / name / "report.json").read_text())
            reports[name] = {**reports[name], "first_stage": first}
        for variant, file in MODELS[name].items():
            source = run_dir / RUN_FILES[variant]
            if variant != "float":
                tunings[file] = tuning_of(source, data, training_negatives, args.tune_minutes)
            if variant == "int8":
                negatives[name] = false_accepts(load_runner(source), jarvis).to_dict()
            shutil.copyfile(source, MODELS_DIR / file)
            print(f"copied {source} -> {MODELS_DIR / file}")
        points[name] = operating_point(
            MODELS_DIR / MODELS[name].get("int8_step", MODELS[name]["int8"]), benchmark, jarvis
        )
    write_text_atomic(MODELS_DIR / "MODEL_CARD.md", model_card(reports, tunings, negatives, points))
    # The card's figures for machines (the bundled-model test checks them).
    card = {
        name: {
            "files": MODELS[name],
            "accuracy": r["accuracy"],
            "tflm_vs_litert": r["tflm_vs_litert"],
            "benchmark": "speech_commands_test12",
            "negatives": {"folder": MEASURING_NEGATIVES, **negatives[name]},
            "operating_point": {"folder": MEASURING_NEGATIVES, "streams": points[name]},
            "firmware": firmware_of(name, args.tflm, args.shared / "speech_commands_test12"),
        }
        for name, r in reports.items()
    }
    write_text_atomic(MODELS_DIR / "card.json", json.dumps(card, indent=1) + "\n")
    print(f"wrote {MODELS_DIR / 'MODEL_CARD.md'} and card.json")


if __name__ == "__main__":
    main()
