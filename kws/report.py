"""The training report: every model of a run measured on validation and the benchmark set.

:func:`measure` evaluates the models as they are in memory (a :class:`TrainReport`);
:func:`write_report` writes ``report.json`` (for machines, :meth:`TrainReport.to_dict`),
``report.md`` (for people) and a confusion-matrix PNG for the int8 model, all atomically.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kws.artifact import RUN_FILES, tflite_ops
from kws.data import keywords_of
from kws.evaluate import EvalResult, LabelledFeatures, agreement, evaluate, load_features
from kws.features import FrontendConfig
from kws.fileio import atomic_path, write_text_atomic
from kws.runtime import runner_from_bytes

if TYPE_CHECKING:  # for annotations only: bench draws confusion matrices without TensorFlow
    from kws.model import keras
    from kws.training.checkpoint import TrainState
    from kws.training.config import TrainConfig
    from kws.training.prepare import TrainingData

CONFUSION_PNG = "confusion.png"
# Report names of the int8 models, by model.
INT8_NAMES = {"int8": "int8", "int8_step": "int8 step"}


@dataclass(frozen=True)
class TrainReport:
    """What a training run measured (:meth:`to_dict` is ``report.json``).

    Parameters
    ----------
    run_dir : Path
    config : TrainConfig
    labels : tuple of str
    frontend : FrontendConfig
        With the normalisation the models use.
    state : TrainState
        Epochs, best epoch, history, training time.
    interrupted : bool
        Stopped by Ctrl-C: the models are the best epoch's so far.
    params : int
        Trainable and other parameters of the Keras model.
    sizes : dict
        File name -> bytes, for every model file written.
    ops : dict
        Model ("float", "int8", "int8_step") -> its TFLite ops.
    results : dict
        Set ("validation", "benchmark") -> model and runtime ("float keras", "int8 litert",
        "int8 step tflm", ...) -> its :class:`kws.evaluate.EvalResult`.
    validation_sources : dict
        Validation source ("images", "audio", "negatives") -> its rows of validation.
    thresholds : dict
        Model file name -> its threshold tuning (thresholds, stream, scores).
    """

    run_dir: Path
    config: TrainConfig
    labels: tuple[str, ...]
    frontend: FrontendConfig
    state: TrainState
    interrupted: bool
    params: int
    sizes: dict[str, int]
    ops: dict[str, list[str]]
    results: dict[str, dict[str, EvalResult]]
    validation_sources: dict[str, slice]
    thresholds: dict[str, dict[str, Any]]

    @property
    def main_set(self) -> str:
        """The set the headline figures come from: the benchmark if there is one."""
        return "benchmark" if "benchmark" in self.results else "validation"

    @property
    def main_model(self) -> str:
        """The model and runtime the headline figures are of: int8 in LiteRT if there is one."""
        return "int8 litert" if "int8 litert" in self.results[self.main_set] else "float tflite"

    @property
    def accuracy(self) -> dict[str, dict[str, float]]:
        """Set -> model and runtime -> accuracy."""
        return {s: {name: r.accuracy for name, r in res.items()} for s, res in self.results.items()}

    @property
    def tflm_vs_litert(self) -> dict[str, dict[str, float]]:
        """ "<int8 model>, <set>" -> top-1 agreement and largest probability difference of TFLM and LiteRT."""
        out = {}
        for s, res in self.results.items():
            for name in INT8_NAMES.values():
                if f"{name} tflm" in res and f"{name} litert" in res:
                    top1, diff = agreement(res[f"{name} litert"], res[f"{name} tflm"])
                    out[f"{name}, {s}"] = {"top1_agreement": top1, "max_abs_diff": diff}
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-serialisable data (``report.json``)."""
        main = self.results[self.main_set][self.main_model]
        return {
            "run_dir": str(self.run_dir),
            "arch": self.config.arch,
            "labels": list(self.labels),
            "interrupted": self.interrupted,
            "config": self.config.to_dict(),
            "frontend": self.frontend.to_dict(),
            "training": {
                "epochs": self.state.epoch,
                "best_epoch": self.state.best_epoch,
                "best_val_accuracy": self.state.best_accuracy,
                "seconds": self.state.train_seconds,
                "history": self.state.history,
            },
            "params": self.params,
            "sizes": self.sizes,
            "ops": self.ops,
            "accuracy": self.accuracy,
            "tflm_vs_litert": self.tflm_vs_litert,
            "validation_by_source": {
                name: {
                    source: float(np.mean(r.y_pred[part] == r.y_true[part]))
                    for source, part in self.validation_sources.items()
                }
                for name, r in self.results["validation"].items()
            },
            "per_class_recall": {"set": self.main_set, "model": self.main_model, "recall": main.recall},
            "results": {s: {name: r.to_dict() for name, r in res.items()} for s, res in self.results.items()},
            "confusion_png": CONFUSION_PNG,
            "thresholds": self.thresholds,
        }

    def __getitem__(self, key: str) -> Any:
        warnings.warn(
            "kws train's report is a TrainReport: use its attributes, or to_dict() for report.json's keys",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.to_dict()[key]


def _evaluations(
    run_dir: Path,
    models: dict[str, bytes],
    keras_model: keras.Model,
    data: LabelledFeatures,
    runtimes: Sequence[str],
    progress: bool,
) -> dict[str, EvalResult]:
    """Every model (and runtime) over one labelled set."""
    out = {
        "float keras": EvalResult(
            data.label_names, data.labels, keras_model.predict(data.features, verbose=0)
        )
    }
    out["float tflite"] = evaluate(
        runner_from_bytes(models["float"], run_dir / RUN_FILES["float"]), data, progress=progress
    )
    for key, name in INT8_NAMES.items():
        if key in models:
            for runtime in runtimes:
                runner = runner_from_bytes(models[key], run_dir / RUN_FILES[key], runtime)
                out[f"{name} {runtime}"] = evaluate(runner, data, progress=progress)
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
        f"- data: `{report['config']['data']}`; keywords: {', '.join(keywords_of(report['labels']))}",
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


def measure(
    run_dir: Path,
    config: TrainConfig,
    state: TrainState,
    models: dict[str, bytes],
    keras_model: keras.Model,
    data: TrainingData,
    *,
    benchmark: str | Path | None,
    interrupted: bool,
    progress: bool,
    runtimes: Sequence[str],
    thresholds: dict[str, dict[str, Any]],
    sizes: dict[str, int],
) -> TrainReport:
    """Evaluate every model of a run, as it is in memory, on validation and ``benchmark``.

    ``models`` are the ``.tflite`` models by key (:data:`kws.artifact.RUN_FILES`), ``sizes``
    the bytes of every file written, ``thresholds`` each int8 file's threshold tuning.
    """
    sets = {"validation": LabelledFeatures(data.val_x, data.val_y, tuple(data.labels), "validation")}
    if benchmark is not None:
        sets["benchmark"] = load_features(benchmark, "test", data.labels, data.frontend, progress=progress)
    return TrainReport(
        run_dir=run_dir,
        config=config,
        labels=tuple(data.labels),
        frontend=data.frontend,
        state=state,
        interrupted=interrupted,
        params=int(keras_model.count_params()),
        sizes=sizes,
        ops={key: tflite_ops(model) for key, model in models.items()},
        results={
            name: _evaluations(run_dir, models, keras_model, s, runtimes, progress)
            for name, s in sets.items()
        },
        validation_sources=data.val_sources,
        thresholds=thresholds,
    )


def write_report(report: TrainReport) -> None:
    """Write ``report.json``, ``report.md`` and the confusion matrix into the run folder."""
    main = report.results[report.main_set][report.main_model]
    plot_confusion(
        main,
        report.run_dir / CONFUSION_PNG,
        f"{report.main_model} {report.config.arch}, {report.main_set}: {main.accuracy:.1%}",
    )
    d = report.to_dict()
    write_text_atomic(report.run_dir / "report.json", json.dumps(d, indent=1))
    write_text_atomic(report.run_dir / "report.md", _markdown(d))
