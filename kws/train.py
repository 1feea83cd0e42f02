"""Training: data -> float Keras model -> int8 TFLite models, with checkpoints and a report.

Each epoch sees a fresh augmentation of every training clip (speed, shift, gain, noise,
then SpecAugment masks on the features). The learning rate follows a cosine schedule
computed from the epoch number, and the random streams are seeded per epoch, so a run
resumed from its checkpoint continues exactly as if it had not stopped. Early stopping
watches validation accuracy and the best epoch's weights are the ones exported.

Ctrl-C stops after the current batch; the checkpoint of the last finished epoch is kept
and the best weights so far are exported as usual, so an interrupted run still leaves
usable models.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from tqdm import tqdm

from kws.artifact import ModelInfo
from kws.augment import AugmentConfig, augment_clip, mask_features
from kws.data import DEFAULT_KEYWORDS, examples, labels_for, load_example, scan
from kws.errors import KwsError
from kws.features import FrontendConfig, clip_features, fit_normalisation
from kws.fileio import atomic_path, write_text_atomic
from kws.model import build, keras, save_h5
from kws.streameval import DEFAULT_TARGET_FA

CHECKPOINT_DIR = "checkpoint"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved in the checkpoint and the report).

    Parameters
    ----------
    data : str
        Speech Commands folder (official layout) with train and validation splits.
    arch : {"lstm", "gru", "dscnn"}
    keywords : tuple of str
        Words to spot; all others are ``_unknown_``.
    epochs : int
        Most epochs to train (early stopping may end sooner).
    batch_size : int
    learning_rate : float
        Peak learning rate of the cosine schedule.
    units, layers, dropout
        Model size and regularisation (see :func:`kws.model.build`).
    patience : int
        Stop when validation accuracy has not improved for this many epochs.
    seed : int
        Seeds the data choice, augmentation, weight initialisation and shuffling.
    augment : AugmentConfig
    frontend : FrontendConfig
        Front-end parameters; its normalisation is measured on the training split.
    calibration_clips : int
        Training clips used to calibrate the int8 quantisation.
    """

    data: str
    arch: str = "lstm"
    keywords: tuple[str, ...] = DEFAULT_KEYWORDS
    epochs: int = 80
    batch_size: int = 32
    learning_rate: float = 1e-3
    units: int = 80
    layers: int = 2
    dropout: float = 0.2
    patience: int = 20
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    calibration_clips: int = 300

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["keywords"] = list(self.keywords)
        d["frontend"] = self.frontend.to_dict()
        return d


@dataclass
class TrainingData:
    """Training audio (augmented anew each epoch) and fixed validation features."""

    labels: list[str]
    frontend: FrontendConfig  # with normalisation fitted on the training clips
    train_audio: np.ndarray  # (n, clip_samples)
    train_y: np.ndarray
    val_x: np.ndarray  # (m, frames, n_mfcc)
    val_y: np.ndarray
    noise_files: list[Path]


def prepare_data(config: TrainConfig, *, progress: bool = True) -> TrainingData:
    """Read the train and validation splits and fit the front-end normalisation."""
    index = scan(config.data)
    if index.layout != "speech_commands":
        raise KwsError(
            f"{config.data}: training needs the official Speech Commands layout with a train split"
        )
    labels = labels_for(config.keywords)
    frontend = dataclasses.replace(config.frontend, mean=None, std=None)
    n = frontend.clip_samples

    def read(split: str) -> tuple[np.ndarray, np.ndarray]:
        chosen = examples(index, split, config.keywords, clip_samples=n, seed=config.seed)
        if not chosen:
            raise KwsError(f"{config.data}: no {split} clips")
        audio = np.stack(
            [load_example(e, n) for e in tqdm(chosen, desc=f"read {split}", disable=not progress)]
        )
        return audio, np.array([labels.index(e.label) for e in chosen])

    train_audio, train_y = read("train")
    val_audio, val_y = read("validation")
    frontend = fit_normalisation(np.stack([clip_features(a, frontend) for a in train_audio]), frontend)
    val_x = np.stack([clip_features(a, frontend) for a in val_audio])
    return TrainingData(labels, frontend, train_audio, train_y, val_x, val_y, index.noise_files)


def augmented_features(data: TrainingData, config: TrainConfig, epoch: int) -> np.ndarray:
    """This epoch's augmented training features (seeded by run seed and epoch)."""
    rng = np.random.default_rng([config.seed, epoch])
    return np.stack(
        [
            mask_features(
                clip_features(augment_clip(a, rng, data.noise_files, config.augment), data.frontend),
                rng,
                config.augment,
            )
            for a in data.train_audio
        ]
    )


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """Cosine decay from ``learning_rate`` to 5% of it over ``epochs``."""
    return config.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs)))


def class_weights(y: np.ndarray, n_labels: int) -> dict[int, float]:
    """Weights inversely proportional to class frequency (mean weight 1)."""
    counts = np.bincount(y, minlength=n_labels).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (n_labels * np.maximum(counts, 1)), 0.0)
    return {i: float(w) for i, w in enumerate(weights)}


class _BatchProgress(keras.callbacks.Callback):
    """A tqdm bar per epoch with the running loss and accuracy."""

    def __init__(self, bar: tqdm) -> None:
        super().__init__()
        self.bar = bar

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        self.bar.update(1)
        if logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.3f}", acc=f"{logs['accuracy']:.3f}")


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C while a checkpoint is written, then raise it: no half-updated checkpoint."""
    caught: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


@dataclass
class TrainState:
    """Progress saved with each checkpoint."""

    epoch: int = 0  # epochs finished
    best_accuracy: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0


def _save_checkpoint(model: keras.Model, state: TrainState, ckpt: Path, best: bool) -> None:
    with _deferred_interrupt():
        with atomic_path(ckpt / "last.h5", suffix=".h5") as tmp:
            save_h5(model, tmp)
        if best:
            with atomic_path(ckpt / "best_weights.h5", suffix=".h5") as tmp:
                model.save_weights(tmp)
        write_text_atomic(ckpt / "state.json", json.dumps(dataclasses.asdict(state), indent=1))


def fit(
    config: TrainConfig, data: TrainingData, run_dir: Path, *, resume: bool = False, progress: bool = True
) -> tuple[keras.Model, TrainState, bool]:
    """Train with checkpoints in ``run_dir/checkpoint``; return the best model, its state, interrupted?"""
    ckpt = run_dir / CHECKPOINT_DIR
    keras.utils.set_random_seed(config.seed)
    state = TrainState()
    if resume:
        model = keras.models.load_model(ckpt / "last.h5")
        state = TrainState(**json.loads((ckpt / "state.json").read_text()))
    else:
        model = build(
            config.arch,
            len(data.labels),
            data.frontend.clip_frames,
            data.frontend.n_mfcc,
            units=config.units,
            layers=config.layers,
            dropout=config.dropout,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    weights = class_weights(data.train_y, len(data.labels))
    steps = math.ceil(len(data.train_y) / config.batch_size)
    interrupted = False
    try:
        for epoch in range(state.epoch, config.epochs):
            if epoch - state.best_epoch >= config.patience and state.best_accuracy >= 0:
                break
            start = time.monotonic()
            keras.backend.set_value(model.optimizer.learning_rate, learning_rate(config, epoch))
            x = augmented_features(data, config, epoch)
            keras.utils.set_random_seed(config.seed * 1000 + epoch)  # batch order, dropout
            desc = f"epoch {epoch + 1}/{config.epochs}"
            with tqdm(total=steps, desc=desc, disable=not progress, leave=False, file=sys.stderr) as bar:
                h = model.fit(
                    x,
                    data.train_y,
                    batch_size=config.batch_size,
                    epochs=1,
                    verbose=0,
                    shuffle=True,
                    class_weight=weights,
                    callbacks=[_BatchProgress(bar)],
                )
            val_loss, val_acc = model.evaluate(data.val_x, data.val_y, verbose=0, batch_size=256)
            state.epoch = epoch + 1
            state.train_seconds += time.monotonic() - start
            state.history.append(
                {
                    "epoch": epoch + 1,
                    "loss": float(h.history["loss"][0]),
                    "accuracy": float(h.history["accuracy"][0]),
                    "val_loss": float(val_loss),
                    "val_accuracy": float(val_acc),
                }
            )
            best = val_acc > state.best_accuracy
            if best:
                state.best_accuracy, state.best_epoch = float(val_acc), epoch + 1
            _save_checkpoint(model, state, ckpt, best)
            if progress:
                print(
                    f"{desc}: loss {h.history['loss'][0]:.3f} acc {h.history['accuracy'][0]:.3f}"
                    f" | val loss {val_loss:.3f} acc {val_acc:.3f}{'  (best)' if best else ''}",
                    file=sys.stderr,
                )
    except KeyboardInterrupt:
        interrupted = True
        if state.best_accuracy < 0:
            raise KwsError("interrupted before the first epoch finished: no model to save") from None
        print(
            f"interrupted: keeping the checkpoint of epoch {state.epoch}; exporting the best epoch "
            f"({state.best_epoch}) — Ctrl-C again to abandon the export",
            file=sys.stderr,
        )
    model.load_weights(ckpt / "best_weights.h5")
    return model, state, interrupted


def calibration_set(data: TrainingData, config: TrainConfig) -> np.ndarray:
    """Un-augmented training features for int8 calibration, a seeded choice across classes."""
    rng = np.random.default_rng(config.seed)
    chosen = rng.permutation(len(data.train_audio))[: config.calibration_clips]
    return np.stack([clip_features(data.train_audio[i], data.frontend) for i in chosen])


def model_info(config: TrainConfig, data: TrainingData) -> ModelInfo:
    """The metadata every model file of the run carries."""
    return ModelInfo(
        labels=tuple(data.labels),
        frontend=data.frontend,
        kind="clip",
        arch=config.arch,
        extra={"train": {k: v for k, v in config.to_dict().items() if k not in ("frontend",)}},
    )


def check_resume(config: TrainConfig, run_dir: Path) -> None:
    """Refuse to resume a run with settings that differ from the checkpoint's."""
    saved = run_dir / CHECKPOINT_DIR / "config.json"
    if not saved.is_file():
        raise KwsError(f"{run_dir}: no checkpoint to resume from")
    # Compare as JSON: tuples come back as lists.
    old = json.loads(saved.read_text())
    new = json.loads(json.dumps(config.to_dict()))
    differ = [k for k in new if k != "epochs" and old.get(k) != new[k]]
    if differ:
        raise KwsError(f"{run_dir}: cannot resume with different settings ({', '.join(differ)})")


def run(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    benchmark: str | Path | None = None,
    progress: bool = True,
    runtimes: Sequence[str] = ("litert", "tflm"),
    tune_minutes: float = 30.0,
    target_false_alarms_per_hour: float = DEFAULT_TARGET_FA,
) -> dict[str, Any]:
    """Train, export every model file, and write report.json / report.md into ``run_dir``.

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
        Length of the validation stream the int8 files' streaming thresholds are tuned
        on (0: no tuning; the detector then uses its default threshold).
    target_false_alarms_per_hour : float
        What the thresholds are tuned for, all keywords together.
    """
    from kws.convert import export_models
    from kws.report import write_report
    from kws.streameval import tune_model

    run_dir = Path(run_dir)
    if resume:
        check_resume(config, run_dir)
    elif (run_dir / CHECKPOINT_DIR).exists():
        raise KwsError(f"{run_dir}: holds a previous run; use --resume to continue it, or another --out")
    data = prepare_data(config, progress=progress)
    write_text_atomic(run_dir / CHECKPOINT_DIR / "config.json", json.dumps(config.to_dict(), indent=1))
    model, state, interrupted = fit(config, data, run_dir, resume=resume, progress=progress)
    info = model_info(config, data)
    paths = export_models(
        model, info, calibration_set(data, config), run_dir, units=config.units, layers=config.layers
    )
    thresholds = {}
    if interrupted and tune_minutes > 0:
        print("interrupted: thresholds not tuned (run kws tune on the int8 files)", file=sys.stderr)
    elif tune_minutes > 0:
        for key in ("int8", "int8_step"):
            if key in paths:
                if progress:
                    print(
                        f"tuning the thresholds of {paths[key].name} on {tune_minutes:g} min of validation stream",
                        file=sys.stderr,
                    )
                thresholds[paths[key].name] = tune_model(
                    paths[key],
                    config.data,
                    target_false_alarms_per_hour=target_false_alarms_per_hour,
                    minutes=tune_minutes,
                )
    return write_report(
        run_dir,
        config,
        state,
        paths,
        model,
        data,
        benchmark=benchmark,
        interrupted=interrupted,
        progress=progress,
        runtimes=runtimes,
        thresholds=thresholds,
    )
