"""The training report: every model file measured on validation and the benchmark set.

Writes ``report.json`` (for machines), ``report.md`` (for people) and a confusion-matrix
PNG for the int8 model, all atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kws.artifact import tflite_ops
from kws.evaluate import EvalResult, LabelledFeatures, agreement, evaluate, load_features
from kws.fileio import atomic_path, write_text_atomic
from kws.runtime import load_runner

if TYPE_CHECKING:
    from kws.model import keras
    from kws.train import TrainConfig, TrainingData, TrainState


def _evaluations(
    paths: dict[str, Path],
    model: keras.Model,
    data: LabelledFeatures,
    runtimes: Sequence[str],
    progress: bool,
) -> dict[str, EvalResult]:
    """Every model file (and runtime) over one labelled set."""
    out = {"float keras": EvalResult(data.label_names, data.labels, model.predict(data.features, verbose=0))}
    out["float tflite"] = evaluate(load_runner(paths["float"]), data, progress=progress)
    for key, name in (("int8", "int8"), ("int8_step", "int8 step")):
        if key in paths:
            for runtime in runtimes:
                out[f"{name} {runtime}"] = evaluate(load_runner(paths[key], runtime), data, progress=progress)
    return out


def draw_confusion(ax: Any, confusion: np.ndarray, names: Sequence[str], title: str) -> None:
    """Draw a confusion matrix on a matplotlib axis: rows true, columns predicted, shaded by recall."""
    c = np.asarray(confusion)
    ax.imshow(c / np.maximum(c.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            if c[i, j]:
                ax.text(
                    j,
                    i,
                    str(c[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if i == j else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)


def plot_confusion(result: EvalResult, path: Path, title: str) -> None:
    """Save a confusion matrix (rows true, columns predicted) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    draw_confusion(ax, result.confusion, list(result.label_names), title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"# Training report: {report['arch']} ({report['run_dir']})", ""]
    if report["interrupted"]:
        lines += ["**Interrupted**: models exported from the best epoch reached.", ""]
    t = report["training"]
    lines += [
        f"- data: `{report['config']['data']}`; keywords: {', '.join(report['labels'][2:])}",
        f"- epochs: {t['epochs']} (best {t['best_epoch']}, validation accuracy {t['best_val_accuracy']:.2%}); "
        f"training time {t['seconds'] / 60:.1f} min",
        f"- parameters: {report['params']:,}",
        "",
        "| file | bytes |",
        "| --- | ---: |",
    ]
    lines += [f"| `{name}` | {size:,} |" for name, size in report["sizes"].items()]
    lines += [""] + [f"{name} ops: {', '.join(ops)}" for name, ops in report["ops"].items()] + [""]
    sets = list(report["accuracy"])
    lines += ["| model | " + " | ".join(sets) + " |", "| --- |" + " ---: |" * len(sets)]
    for name in report["accuracy"][sets[0]]:
        lines.append(f"| {name} | " + " | ".join(f"{report['accuracy'][s][name]:.2%}" for s in sets) + " |")
    sources = report["validation_by_source"]
    if sources:
        names = list(next(iter(sources.values())))
        lines += ["", "Validation by source:", "", "| model | " + " | ".join(names) + " |"]
        lines.append("| --- |" + " ---: |" * len(names))
        lines += [f"| {m} | " + " | ".join(f"{a[n]:.2%}" for n in names) + " |" for m, a in sources.items()]
    lines.append("")
    for s, a in report["tflm_vs_litert"].items():
        lines.append(
            f"- TFLM vs LiteRT ({s}): top-1 agreement {a['top1_agreement']:.2%}, "
            f"largest probability difference {a['max_abs_diff']:.4f}"
        )
    main = report["per_class_recall"]
    lines += [
        "",
        f"Per-class recall, {main['model']} ({main['set']}):",
        "",
        "| label | recall |",
        "| --- | ---: |",
    ]
    lines += [f"| {k} | {'n/a' if v is None else f'{v:.1%}'} |" for k, v in main["recall"].items()]
    if report["thresholds"]:
        lines += [
            "",
            "Streaming thresholds (tuned on a validation stream, stored in the model files):",
            "",
            "| file | stream | target FA/h | hit rate | FA/h | thresholds |",
            "| --- | --- | ---: | ---: | ---: | --- |",
        ]
        for name, t in report["thresholds"].items():
            th = ", ".join(f"{k} {v:.2f}" for k, v in t["thresholds"].items())
            lines.append(
                f"| `{name}` | {t['minutes']:g} min {t['split']} | {t['target_false_alarms_per_hour']:g} | "
                f"{t['hit_rate']:.1%} | {t['false_alarms_per_hour']:.1f} | {th} |"
            )
    lines += ["", f"![confusion matrix]({report['confusion_png']})", ""]
    return "\n".join(lines)


def write_report(
    run_dir: Path,
    config: TrainConfig,
    state: TrainState,
    paths: dict[str, Path],
    model: keras.Model,
    data: TrainingData,
    *,
    benchmark: str | Path | None,
    interrupted: bool,
    progress: bool,
    runtimes: Sequence[str],
    thresholds: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Evaluate every model file and write report.json, report.md and confusion.png.

    ``thresholds`` maps a model file's name to its threshold tuning (thresholds and scores).
    """
    sets = {"validation": LabelledFeatures(data.val_x, data.val_y, tuple(data.labels), "validation")}
    if benchmark is not None:
        sets["benchmark"] = load_features(benchmark, "test", data.labels, data.frontend, progress=progress)
    results = {name: _evaluations(paths, model, s, runtimes, progress) for name, s in sets.items()}
    main_set = "benchmark" if "benchmark" in results else "validation"
    main_name = "int8 litert" if "int8 litert" in results[main_set] else "float tflite"
    main = results[main_set][main_name]
    png = run_dir / "confusion.png"
    plot_confusion(main, png, f"{main_name} {config.arch}, {main_set}: {main.accuracy:.1%}")
    report: dict[str, Any] = {
        "run_dir": str(run_dir),
        "arch": config.arch,
        "labels": list(data.labels),
        "interrupted": interrupted,
        "config": config.to_dict(),
        "frontend": data.frontend.to_dict(),
        "training": {
            "epochs": state.epoch,
            "best_epoch": state.best_epoch,
            "best_val_accuracy": state.best_accuracy,
            "seconds": state.train_seconds,
            "history": state.history,
        },
        "params": int(model.count_params()),
        "sizes": {p.name: p.stat().st_size for p in paths.values()},
        "ops": {k: tflite_ops(p.read_bytes()) for k, p in paths.items() if p.suffix == ".tflite"},
        "accuracy": {s: {name: r.accuracy for name, r in res.items()} for s, res in results.items()},
        "tflm_vs_litert": {},
        "validation_by_source": {
            name: {
                source: float(np.mean(r.y_pred[part] == r.y_true[part]))
                for source, part in data.val_sources.items()
            }
            for name, r in results["validation"].items()
        },
        "per_class_recall": {"set": main_set, "model": main_name, "recall": main.recall},
        "results": {s: {name: r.to_dict() for name, r in res.items()} for s, res in results.items()},
        "confusion_png": png.name,
        "thresholds": thresholds,
    }
    if "tflm" in runtimes and "litert" in runtimes:
        for s, res in results.items():
            for name in ("int8", "int8 step"):
                if f"{name} tflm" in res:
                    top1, diff = agreement(res[f"{name} litert"], res[f"{name} tflm"])
                    report["tflm_vs_litert"][f"{name}, {s}"] = {"top1_agreement": top1, "max_abs_diff": diff}
    write_text_atomic(run_dir / "report.json", json.dumps(report, indent=1))
    write_text_atomic(run_dir / "report.md", _markdown(report))
    return report
