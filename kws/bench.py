"""``kws bench``: accuracy, size, compute, latency and long-stream figures of models, side by side.

Every figure is measured here, on this host, for each model:

- accuracy of the float model, the int8 model in LiteRT and in the TFLM interpreter, on
  one data set, with per-class recall (int8, LiteRT) and TFLM/LiteRT top-1 agreement;
- parameters and multiply-accumulates per inference (from the flatbuffer), flash (the
  model file's bytes, i.e. the C array) and the TFLM tensor arena (host interpreter);
- latency of one inference, median and 95th percentile, LiteRT and TFLM;
- the streaming front-end's cost and the whole streaming pipeline's real-time factor
  (CPU seconds per second of audio: below 1 keeps up), on a long stream built from the
  data's clips, with its hit rate, false alarms per hour and latency at the model's
  thresholds, and the false-reject / false-alarm trade-off over one shared threshold.

Timings depend on the machine and its load: compare models within one run.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kws.data import keywords_of, negative_files
from kws.errors import KwsError, install_command
from kws.evaluate import EvalResult, agreement, evaluate, false_accepts, load_features
from kws.features import StreamingFrontend
from kws.footprint import model_cost, tflm_arena_bytes
from kws.progress import bar, stage
from kws.runtime import Runner, load_runner
from kws.stream import Detector
from kws.streameval import NEGATIVE_SNRS, det_curve, lower_envelope, record, replay, score
from kws.streams import Word, build_negative_stream, build_stream

# A stream's audio and its ground truth.
Stream = tuple[np.ndarray, list[Word]]


def siblings(path: Path) -> dict[str, Path]:
    """A whole-clip int8 model's companion files found by name: its float and step models.

    ``int8.tflite`` -> ``float.tflite``, ``int8_step.tflite`` (a ``kws train`` run);
    ``lstm_int8.tflite`` -> ``lstm_float.tflite``, ``lstm_int8_step.tflite`` (bundled).
    """
    found = {"int8": path}
    for variant in ("float", "int8_step"):
        candidate = path.with_name(path.name.replace("int8", variant, 1))
        if "int8" in path.name and candidate.is_file():
            found[variant] = candidate
    return found


def latency_ms(runner: Runner, x: np.ndarray, repeats: int) -> tuple[float, float]:
    """Median and 95th-percentile wall time of one invoke, in milliseconds."""
    times = []
    runner.invoke(x)  # warm-up
    for _ in range(repeats):
        start = time.perf_counter()
        runner.invoke(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3), float(np.percentile(times, 95) * 1e3)


def frontend_cost(detector: Detector, audio: np.ndarray, chunk: int = 320) -> float:
    """CPU seconds per second of audio of the streaming front-end alone (20-ms chunks)."""
    frontend = StreamingFrontend(detector.frontend.config)
    start = time.process_time()
    for i in range(0, len(audio), chunk):
        frontend.push(audio[i : i + chunk])
    return (time.process_time() - start) / (len(audio) / detector.frontend.config.sample_rate)


def bench_model(
    path: Path,
    data: Path,
    *,
    stream: Stream,
    negatives: Path | None = None,
    negative_streams: Sequence[tuple[float, Stream, Stream]] = (),
    repeats: int = 200,
    progress: bool = True,
    tflm_sources: str | None = None,
) -> dict[str, Any]:
    """Every figure of one model (see the module docstring); ``path`` is its whole-clip int8 file.

    With ``negatives`` (a folder of speech without keywords), also the share of its 1-s
    windows the int8 model names a keyword (:func:`kws.evaluate.false_accepts`), and for
    each ``(snr_db, keyword stream, negative stream)`` of ``negative_streams`` the
    detector's hit rate and false alarms at its thresholds, with the DET curve (misses on
    the keyword stream, false alarms on the negative stream). The streaming file's
    firmware on the emulated Cortex-M4F (:func:`firmware_figures`).
    """
    stage(f"benchmarking {path}", progress)
    files = siblings(path)
    int8 = load_runner(path, require_int8=True)
    if int8.info.kind != "clip":
        raise KwsError(f"{path}: give the whole-clip int8 model; its step model is found beside it")
    tflm = load_runner(path, "tflm")
    info = int8.info
    test = load_features(data, "test", info.labels, info.frontend, progress=progress)
    results: dict[str, EvalResult] = {
        "int8 litert": evaluate(int8, test, progress=progress),
        "int8 tflm": evaluate(tflm, test, progress=progress),
    }
    if "float" in files:
        results["float"] = evaluate(load_runner(files["float"]), test, progress=progress)
    top1, _ = agreement(results["int8 litert"], results["int8 tflm"])
    data_bytes = int8.model_bytes
    cost = model_cost(data_bytes, str(path))
    clip = test.features[0]
    row: dict[str, Any] = {
        "model": str(path),
        "arch": info.arch,
        "clips": len(test.labels),
        "accuracy": {name: r.accuracy for name, r in results.items()},
        "tflm_litert_top1_agreement": top1,
        "recall": results["int8 litert"].recall,
        "confusion": results["int8 litert"].confusion.tolist(),
        "labels": list(info.labels),
        "params": cost.params,
        "macs_per_inference": cost.macs,
        "flash_bytes": len(data_bytes),
        "arena_bytes": tflm_arena_bytes(data_bytes),
        "latency_ms": {
            "litert": latency_ms(int8, clip, repeats),
            "tflm": latency_ms(tflm, clip, repeats),
        },
    }
    if negatives is not None:
        row["negatives"] = {
            "folder": str(negatives),
            **false_accepts(int8, negatives, progress=progress).to_dict(),
        }
    # Streaming: the step model (stateful mode) where there is one, else the whole-clip one.
    streaming = load_runner(files.get("int8_step", path))
    detector = Detector(streaming)
    audio, words = stream
    stage("timing the streaming front-end on the keyword stream", progress)
    row["frontend_cpu_per_audio_s"] = frontend_cost(detector, audio)
    trace = record(detector, audio, what="keyword stream (20 dB)", progress=progress)
    s = score(replay(trace, detector.smoother.keyword_thresholds), words, trace.seconds)
    step_bytes = streaming.model_bytes
    row["streaming"] = {
        "model": str(streaming.path),
        "mode": detector.mode,
        # Every copy of the model runs on each posterior (two staggered step models by default).
        "macs_per_second": model_cost(step_bytes).macs
        * len(detector.runners)
        * len(trace.times)
        / trace.seconds,
        "invokes_per_posterior": len(detector.runners),
        "arena_bytes": tflm_arena_bytes(step_bytes),
        "latency_ms": {
            "litert": latency_ms(streaming, test.features[0][: streaming.input_shape[1]], repeats),
            "tflm": latency_ms(
                load_runner(streaming.path, "tflm"), test.features[0][: streaming.input_shape[1]], repeats
            ),
        },
        "real_time_factor": trace.cpu_seconds / trace.seconds,
        "minutes": trace.seconds / 60,
        **s.to_dict(),
        "det": det_curve((trace, words), progress=progress),
    }
    if negative_streams:
        row["false_alarms"] = [
            false_alarm_figures(
                detector, snr, keyword_stream, negative_stream, reuse=(trace, words), progress=progress
            )
            for snr, keyword_stream, negative_stream in negative_streams
        ]
    row["firmware"] = firmware_figures(streaming.path, data, tflm_sources, progress=progress)
    return row


def false_alarm_figures(
    detector: Detector,
    snr_db: float,
    keyword_stream: Stream,
    negative_stream: Stream,
    reuse: tuple[Any, list[Word]] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Hits on a keyword stream and false alarms on a negative stream at the detector's thresholds.

    ``reuse`` is a trace already recorded on ``keyword_stream``'s words (the main stream).
    """
    audio, words = keyword_stream
    keyword = (
        reuse
        if reuse is not None and reuse[1] is words
        else (record(detector, audio, what=f"keyword stream ({snr_db:g} dB)", progress=progress), words)
    )
    negative_audio, negative_words = negative_stream
    negative = (
        record(detector, negative_audio, what=f"negative stream ({snr_db:g} dB)", progress=progress),
        negative_words,
    )
    thresholds = detector.smoother.keyword_thresholds
    hits = score(replay(keyword[0], thresholds), keyword[1], keyword[0].seconds)
    alarms = score(replay(negative[0], thresholds), negative[1], negative[0].seconds)
    det = det_curve(keyword, [negative], progress=progress)
    return {
        "snr_db": snr_db,
        "hit_rate": hits.hit_rate,
        "keywords": hits.keywords,
        "recordings": len(negative_words),
        "minutes": negative[0].seconds / 60,
        "false_alarms": alarms.false_alarms,
        "false_alarms_per_hour": alarms.false_alarms_per_hour,
        "false_alarms_per_hour_upper95": alarms.false_alarms_per_hour_upper95,
        "false_alarms_by_label": alarms.to_dict()["false_alarms_by_label"],
        "det": det,
        "det_envelope": lower_envelope(det),
    }


def firmware_figures(
    path: Path, data: Path, tflm_sources: str | None, *, progress: bool = False
) -> dict[str, Any] | None:
    """The firmware of ``path`` on the emulated Cortex-M4F (:func:`kws.board.figures`, as
    exported by default): measured live (20 clips, 30-s stream) where TFLM's sources
    (``tflm_sources``), the Cortex-M toolchain and QEMU are at hand, else the figures stored with
    a bundled model, else None. ``source`` says which; ``progress``: the measuring's steps on stderr."""
    from kws import board
    from kws.bundled import stored_firmware_figures

    if tflm_sources and not board.missing_tools(board.BOARD, qemu=True):
        with tempfile.TemporaryDirectory(prefix="kws-bench-") as work:
            report = board.measure(
                path,
                board.tflm_tree(tflm_sources),
                data,
                Path(work),
                clips=20,
                minutes=0.5,
                progress=progress,
            )
        return {"source": "measured", **board.figures(report)}
    stored = stored_firmware_figures(path)
    return {"source": "stored", **stored} if stored else None


def bench(
    models: Sequence[Path],
    data: Path,
    *,
    minutes: float = 20.0,
    negatives: Path | None = None,
    snrs: Sequence[float] = NEGATIVE_SNRS,
    seed: int = 0,
    repeats: int = 200,
    progress: bool = True,
    tflm_sources: str | None = None,
) -> list[dict[str, Any]]:
    """:func:`bench_model` for each model, all on the same data and the same long streams.

    The main keyword stream is at 20 dB SNR; with ``negatives``, a keyword stream and a
    stream of every negative recording once are built at each of ``snrs``.
    """
    first = load_runner(models[0])
    labels = first.info.labels
    stage(f"building the {minutes:g}-min keyword stream (20 dB)", progress)
    stream = build_stream(data, labels, minutes=minutes, seed=seed)
    negative_streams = []
    if negatives is not None:
        files = negative_files(negatives, keywords_of(labels))
        for snr in snrs:
            keyword_stream = stream
            if snr != 20.0:
                stage(f"building the {minutes:g}-min keyword stream ({snr:g} dB)", progress)
                keyword_stream = build_stream(data, labels, minutes=minutes, seed=seed, snr_db=snr)
            stage(f"building the negative stream ({snr:g} dB) of {len(files)} recordings", progress)
            negative_streams.append(
                (snr, keyword_stream, build_negative_stream(files, data, labels, snr_db=snr, seed=seed))
            )
    rows = []
    shown = progress and len(models) > 1  # a bar for one model says nothing
    for path in bar(models, desc="benchmarking", unit=" models", enabled=shown, leave=False):
        if load_runner(path).info.labels != first.info.labels:
            raise KwsError(f"{path}: its labels differ from {models[0]}'s; bench models of one label set")
        rows.append(
            bench_model(
                path,
                data,
                stream=stream,
                negatives=negatives,
                negative_streams=negative_streams,
                repeats=repeats,
                progress=progress,
                tflm_sources=tflm_sources,
            )
        )
    return rows


def _table(rows: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """(figure, value per model) lines of the main table."""

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2%}"

    def ms(pair: tuple[float, float]) -> str:
        return f"{pair[0]:.3f} / {pair[1]:.3f}"

    lines = [
        ("model", [Path(r["model"]).name for r in rows]),
        ("architecture", [r["arch"] for r in rows]),
        ("accuracy float", [pct(r["accuracy"].get("float")) for r in rows]),
        ("accuracy int8 LiteRT", [pct(r["accuracy"]["int8 litert"]) for r in rows]),
        ("accuracy int8 TFLM", [pct(r["accuracy"]["int8 tflm"]) for r in rows]),
        ("TFLM = LiteRT top-1", [pct(r["tflm_litert_top1_agreement"]) for r in rows]),
        ("parameters", [f"{r['params']:,}" for r in rows]),
        ("MACs per inference", [f"{r['macs_per_inference']:,}" for r in rows]),
        ("flash (model bytes)", [f"{r['flash_bytes']:,}" for r in rows]),
        ("TFLM arena bytes (host)", [f"{r['arena_bytes']:,}" for r in rows]),
        ("latency ms LiteRT (median / p95)", [ms(r["latency_ms"]["litert"]) for r in rows]),
        ("latency ms TFLM (median / p95)", [ms(r["latency_ms"]["tflm"]) for r in rows]),
        ("front-end CPU s per audio s", [f"{r['frontend_cpu_per_audio_s']:.4f}" for r in rows]),
        ("streaming model", [Path(r["streaming"]["model"]).name for r in rows]),
        ("streaming mode", [r["streaming"]["mode"] for r in rows]),
        ("streaming MACs per audio s", [f"{r['streaming']['macs_per_second']:,.0f}" for r in rows]),
        ("streaming arena bytes (host)", [f"{r['streaming']['arena_bytes']:,}" for r in rows]),
        ("streaming invokes per posterior", [str(r["streaming"]["invokes_per_posterior"]) for r in rows]),
        (
            "streaming latency ms per invoke LiteRT",
            [ms(r["streaming"]["latency_ms"]["litert"]) for r in rows],
        ),
        ("streaming latency ms per invoke TFLM", [ms(r["streaming"]["latency_ms"]["tflm"]) for r in rows]),
        ("real-time factor (CPU s per audio s)", [f"{r['streaming']['real_time_factor']:.4f}" for r in rows]),
        ("stream hit rate", [pct(r["streaming"]["hit_rate"]) for r in rows]),
        ("stream false alarms per hour", [f"{r['streaming']['false_alarms_per_hour']:.1f}" for r in rows]),
        ("stream median latency s", [f"{r['streaming']['median_latency_s']:.2f}" for r in rows]),
    ]
    fw = [r.get("firmware") for r in rows]

    def firmware(text: Callable[[dict[str, Any]], str]) -> list[str]:
        return [f"{text(f)} ({f['source']})" if f else "n/a (kws firmware)" for f in fw]

    lines += [
        ("M4F instructions per 20-ms frame", firmware(lambda f: f"{f['frame_instructions']['total']:,.0f}")),
        (
            "M4F instructions per invoke (invokes/frame)",
            firmware(lambda f: f"{f['invoke_instructions']:,.0f} ({f['invokes_per_frame']:g})"),
        ),
        (
            "M4F share of 64 / 80 MHz (1 instr/cycle)",
            firmware(lambda f: " / ".join(f"{v:.1%}" for v in f["share_of_core"].values())),
        ),
        ("M4F firmware flash / RAM bytes", firmware(lambda f: f"{f['flash_bytes']:,} / {f['ram_bytes']:,}")),
        ("M4F arena used bytes", firmware(lambda f: f"{f['arena_used']:,}")),
    ]
    if "negatives" in rows[0]:
        n = rows[0]["negatives"]
        lines.append(
            (
                f"keyword false accepts, {Path(n['folder']).name} ({n['windows']} 1-s windows)",
                [
                    f"{pct(r['negatives']['false_accept_rate'])} ({r['negatives']['keyword_windows']}; "
                    f"95% CI {pct(r['negatives']['interval95'][0])}-{pct(r['negatives']['interval95'][1])})"
                    for r in rows
                ],
            )
        )
    folder = Path(rows[0]["negatives"]["folder"]).name if "negatives" in rows[0] else ""
    for i, fa in enumerate(rows[0].get("false_alarms", [])):
        lines.append(
            (
                f"hits / false alarms on {folder} at {fa['snr_db']:g} dB ({fa['minutes']:.1f} min)",
                [
                    f"{f['hit_rate']:.1%} / {f['false_alarms']} ({f['false_alarms_per_hour']:.1f}/h, "
                    f"95% ≤ {f['false_alarms_per_hour_upper95']:.1f}/h)"
                    for f in (r["false_alarms"][i] for r in rows)
                ],
            )
        )
    for label in rows[0]["labels"]:
        lines.append((f"recall {label}", [pct(r["recall"][label]) for r in rows]))
    return lines


def format_table(rows: list[dict[str, Any]], markdown: bool = False) -> str:
    """The bench table, one column per model, as aligned text or Markdown."""
    lines = _table(rows)
    if markdown:
        out = ["| " + " | ".join([lines[0][0], *lines[0][1]]) + " |", "| --- |" + " ---: |" * len(rows)]
        out += ["| " + " | ".join([name, *values]) + " |" for name, values in lines[1:]]
        return "\n".join(out)
    width = max(len(name) for name, _ in lines)
    cols = [max(len(values[i]) for _, values in lines) for i in range(len(rows))]
    return "\n".join(
        f"{name:<{width}}  " + "  ".join(f"{v:>{c}}" for v, c in zip(values, cols, strict=True))
        for name, values in lines
    )


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """PNG with each model's confusion matrix and the detection-error trade-off curves."""
    try:
        import matplotlib
    except ImportError:
        raise KwsError(
            f"--plot needs matplotlib: pip install matplotlib (or the train extra: {install_command('train')})"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kws.fileio import atomic_path
    from kws.report import draw_confusion

    fig, axes = plt.subplots(1, len(rows) + 1, figsize=(6 * (len(rows) + 1), 5.5))
    for ax, r in zip(axes, rows, strict=False):
        names = [n.strip("_")[:7] for n in r["labels"]]
        title = f"{Path(r['model']).name}: {r['accuracy']['int8 litert']:.1%} int8"
        draw_confusion(ax, np.array(r["confusion"]), names, title)
    det = axes[-1]
    for r in rows:
        name = f"{Path(r['streaming']['model']).name} ({r['streaming']['mode']})"
        # False alarms on the negative streams where measured, else on the keyword stream.
        curves = [(f"{name}, {f['snr_db']:g} dB", f["det_envelope"]) for f in r.get("false_alarms", [])]
        for label, points in curves or [(name, lower_envelope(r["streaming"]["det"]))]:
            det.plot(
                [p["false_alarms_per_hour"] for p in points],
                [p["false_reject_rate"] for p in points],
                marker=".",
                drawstyle="steps-post",
                label=label,
            )
    det.set_xscale("symlog", linthresh=1)
    where = (
        f"{Path(rows[0]['negatives']['folder']).name} stream"
        if rows[0].get("false_alarms")
        else f"the {rows[0]['streaming']['minutes']:.0f}-min keyword stream"
    )
    det.set_xlabel(f"false alarms per hour on {where}")
    det.set_ylabel("false-reject rate (keyword stream)")
    det.set_title("detection-error trade-off (lower envelope, shared thresholds)")
    det.grid(True, alpha=0.3)
    det.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
