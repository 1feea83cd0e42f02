"""``kws train`` from start to end, one way: each stage takes the previous one's output in
memory, and each file is written once.

    prepare data (kws.training.prepare) -> fit (kws.training.fit) -> convert (kws.convert)
         -> tune thresholds (kws.streameval) -> write the model files
         -> measure and write the report (kws.report)

Needs TensorFlow (the ``train`` extra).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from kws.artifact import KERAS_FILE, RUN_FILES
from kws.convert import convert_models, save_keras
from kws.errors import KwsError
from kws.fileio import write_bytes_atomic, write_text_atomic
from kws.inputs import DEFAULT_DISTRIBUTE, DEFAULT_INPUT_WORKERS
from kws.progress import stage
from kws.report import TrainReport, measure, write_report
from kws.runtime import runner_from_bytes
from kws.streameval import DEFAULT_TARGET_FA, DEFAULT_TUNE_MINUTES, tune_detector, tuned
from kws.training.checkpoint import CHECKPOINT_DIR, check_finetune_source, check_resume
from kws.training.config import TrainConfig
from kws.training.distribute import is_chief, make_strategy
from kws.training.fit import fit
from kws.training.prepare import calibration_set, model_info, prepare_data


def run(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    benchmark: str | Path | None = None,
    progress: bool = True,
    runtimes: Sequence[str] = ("litert", "tflm"),
    tune_minutes: float = DEFAULT_TUNE_MINUTES,
    target_false_alarms_per_hour: float = DEFAULT_TARGET_FA,
    input_workers: int = DEFAULT_INPUT_WORKERS,
    distribute: str = DEFAULT_DISTRIBUTE,
) -> TrainReport | None:
    """Train, convert, tune, and write every model file and the report into ``run_dir``.

    Parameters
    ----------
    config : TrainConfig
    run_dir : path
        Output folder (created).
    resume : bool
        Continue from ``run_dir/checkpoint`` (same settings; ``epochs`` may grow).
    benchmark : path or None
        A data folder (e.g. the 12-class test set) to report every accuracy on as well.
    progress : bool
        Progress bars and per-epoch lines on stderr.
    runtimes : sequence of str
        Runtimes to evaluate the int8 models in for the report.
    tune_minutes : float
        Length of the validation stream the int8 models' streaming thresholds are tuned
        on (0: no tuning; the detector then uses its default threshold).
    target_false_alarms_per_hour : float
        What the thresholds are tuned for, all keywords together.
    input_workers : int
        Processes computing the training features (0: this one).
    distribute : {"none", "mirrored", "multiworker"}
        Replicas to train on (:func:`kws.training.distribute.make_strategy`): one device, every local
        GPU, or the machines of ``TF_CONFIG`` (each runs this same call; the chief writes
        the files).

    Returns
    -------
    TrainReport or None
        What ``report.json`` holds (:meth:`TrainReport.to_dict`); None on a worker that is
        not the chief.
    """
    strategy = make_strategy(distribute)  # before any other TensorFlow operation
    chief = is_chief(strategy)
    run_dir = Path(run_dir)
    if resume:
        check_resume(config, run_dir)
    elif chief and (run_dir / CHECKPOINT_DIR).exists():  # other workers write nothing there
        raise KwsError(f"{run_dir}: holds a previous run; use --resume to continue it, or another --out")
    source = check_finetune_source(config) if config.finetune_from is not None else None
    data = prepare_data(config, progress=progress, normalised=source, input_workers=input_workers)
    if chief:
        write_text_atomic(run_dir / CHECKPOINT_DIR / "config.json", json.dumps(config.to_dict(), indent=1))
    model, state, interrupted = fit(
        config,
        data,
        run_dir,
        resume=resume,
        progress=progress,
        input_workers=input_workers,
        strategy=strategy,
    )
    if not chief:
        return None
    info = model_info(config, data)
    models = convert_models(
        model, info, calibration_set(data, config), units=config.units, layers=config.layers
    )

    thresholds = {}
    if interrupted and tune_minutes > 0:
        print("interrupted: thresholds not tuned (run kws tune on the int8 files)", file=sys.stderr)
    elif tune_minutes > 0:
        held_out = "negatives" in data.val_sources  # else none to tune on
        for key in ("int8", "int8_step"):
            if key not in models:
                continue
            name = RUN_FILES[key]
            stage(
                f"tuning the thresholds of {name} on {tune_minutes:g} min of validation stream"
                + (" and the validation negatives" if held_out else ""),
                progress,
            )
            runner = runner_from_bytes(models[key], run_dir / name)
            settings, tuning = tune_detector(
                runner,
                config.data,
                target_false_alarms_per_hour=target_false_alarms_per_hour,
                negatives=config.negatives if held_out else (),
                val_negatives=config.val_negatives if held_out else (),
                minutes=tune_minutes,
                progress=progress,
            )
            models[key] = tuned(runner, settings, tuning)
            thresholds[name] = {**tuning, "thresholds": settings.thresholds}

    save_keras(model, run_dir / KERAS_FILE, info.with_kind("clip"))
    for key, data_bytes in models.items():
        write_bytes_atomic(run_dir / RUN_FILES[key], data_bytes)
    sizes = {KERAS_FILE: (run_dir / KERAS_FILE).stat().st_size}
    sizes |= {RUN_FILES[key]: len(b) for key, b in models.items()}
    report = measure(
        run_dir,
        config,
        state,
        models,
        model,
        data,
        benchmark=benchmark,
        interrupted=interrupted,
        progress=progress,
        runtimes=runtimes,
        thresholds=thresholds,
        sizes=sizes,
    )
    write_report(report)
    return report
