"""Fitting: data -> a trained float Keras model, with checkpoints (:mod:`kws.pipeline` runs
the whole of ``kws train``: conversion, tuning and the report come after).

Each epoch sees a fresh augmentation of every training clip (speed, shift, gain, noise,
then SpecAugment masks on the features), streamed to the model batch by batch from worker
processes (:mod:`kws.inputs`); a strategy (``--distribute``) shares each batch among
replicas and machines. The learning rate follows a cosine schedule computed from the
epoch number, and the random streams are seeded per epoch (and per example), so a run
resumed from its checkpoint continues exactly as if it had not stopped. Early stopping
watches validation accuracy and the best epoch's weights are the ones exported.

Ctrl-C stops after the current batch; the checkpoint of the last finished epoch is kept
and the best weights so far are exported as usual, so an interrupted run still leaves
usable models.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kws.data import SILENCE, UNKNOWN
from kws.errors import KwsError
from kws.inputs import NEGATIVE, ORDER_STREAM, WINDOW_STREAM, Refs, Workers, batch_dataset, example_features
from kws.model import build, copy_weights, keras
from kws.progress import Bar, bar, stage
from kws.training.checkpoint import CHECKPOINT_DIR, TrainState, load_checkpoint, save_checkpoint
from kws.training.config import TrainConfig
from kws.training.distribute import is_chief
from kws.training.mining import clip_probabilities, hard_negatives
from kws.training.prepare import TrainingData

if TYPE_CHECKING:
    import tensorflow as tf

# Sequence training: seconds into a non-keyword example before its label holds at every
# frame (the posterior of a keyword just before it may still be falling).
SEQUENCE_SETTLE_S = 0.3


def epoch_examples(
    data: TrainingData, config: TrainConfig, epoch: int, hard: Sequence[tuple[int, int]] = ()
) -> tuple[Refs, np.ndarray]:
    """This epoch's training examples and their labels: the images and clips, every training
    negative recording's windows (placed by the epoch's seeded generator), then the ``hard``
    negative windows ((negative index, start sample))."""
    rng = np.random.default_rng([config.seed, epoch, WINDOW_STREAM])
    windows = [
        (i, at)
        for i, length in enumerate(data.negative_lengths)
        for at in data.negative_starts(int(length), rng)
    ]
    windows += list(hard)
    refs = Refs.concat([data.refs, Refs.of(NEGATIVE, [i for i, _ in windows], [at for _, at in windows])])
    y = np.concatenate([data.refs_y, np.full(len(windows), data.labels.index(UNKNOWN))]).astype(int)
    return refs, y


def augmented_features(
    data: TrainingData, config: TrainConfig, epoch: int, hard: Sequence[tuple[int, int]] = ()
) -> np.ndarray:
    """Every augmented example of an epoch at once, in :func:`epoch_examples`' order (training
    streams them instead; this is for checks and tools)."""
    refs, _ = epoch_examples(data, config, epoch, hard)
    return example_features(data.sources, refs, data.frontend, config.seed, epoch)


def epoch_batches(count: int, config: TrainConfig, epoch: int) -> np.ndarray:
    """The epoch's batches as places in its example list, (steps, batch_size, sequence_clips):
    a seeded order; the examples left over (fewer than a batch) sit this epoch out."""
    clips = config.sequence_clips
    order = np.random.default_rng([config.seed, epoch, ORDER_STREAM]).permutation(count)
    units = order[: count // clips * clips].reshape(-1, clips)
    steps = len(units) // config.batch_size
    if not steps:
        raise KwsError(
            f"{count} training examples make no batch of {config.batch_size}"
            f"{f' sequences of {clips}' if clips > 1 else ''}: give a smaller --batch-size"
        )
    return units[: steps * config.batch_size].reshape(steps, config.batch_size, clips)


def sequence_targets(
    labels: np.ndarray,
    weights: np.ndarray,
    negative_labels: Sequence[int],
    frames: int,
    settle_frames: int,
) -> tuple[np.ndarray, np.ndarray]:
    """A label and a loss weight for every frame of sequences of examples (:attr:`TrainConfig.sequence_clips`).

    Parameters
    ----------
    labels : np.ndarray, shape (n, clips)
        Each sequence's examples' labels, in order.
    weights : np.ndarray, shape (n_labels,)
        Each label's loss weight (:func:`class_weights`).
    negative_labels : sequence of int
        Labels trained on at every frame from ``settle_frames`` on, not only the last;
        their weight is spread over those frames.
    frames : int
        Frames an example.
    settle_frames : int
        Frames into a ``negative_labels`` example before its label is trained on.

    Returns
    -------
    y, w : np.ndarray
        Shapes (n, clips * frames) both.
    """
    n, clips = labels.shape
    w = np.zeros((n, clips, frames), dtype=np.float32)
    w[:, :, -1] = weights[labels]
    dense = np.isin(labels, negative_labels) * weights[labels] / (frames - 1 - settle_frames)
    w[:, :, settle_frames:-1] += dense[:, :, None]
    return np.repeat(labels, frames, axis=1), w.reshape(n, clips * frames)


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """Cosine decay from ``learning_rate`` to 5% of it over ``epochs``."""
    return config.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs)))


def class_weights(y: np.ndarray, n_labels: int, boost: dict[int, float] | None = None) -> dict[int, float]:
    """Weights inversely proportional to class frequency (every class the same share of the
    loss), a class in ``boost`` that many shares."""
    counts = np.bincount(y, minlength=n_labels).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (n_labels * np.maximum(counts, 1)), 0.0)
    for label, factor in (boost or {}).items():
        weights[label] *= factor
    return {i: float(w) for i, w in enumerate(weights)}


class _BatchProgress(keras.callbacks.Callback):
    """A bar per epoch with the running loss and accuracy (``metrics`` False: the bar only;
    tf-keras's per-batch logs of a multi-worker run are summed over replicas, not means)."""

    def __init__(self, bar: Bar, metrics: bool = True) -> None:
        super().__init__()
        self.bar = bar
        self.metrics = metrics

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        self.bar.update(1)
        if logs and self.metrics:
            self.bar.set_postfix(loss=f"{logs['loss']:.3f}", acc=f"{logs['accuracy']:.3f}")


@dataclass(frozen=True)
class EpochInput:
    """One epoch's training batches as ``tf.data`` datasets, one per input pipeline."""

    workers: Workers
    data: TrainingData
    config: TrainConfig
    epoch: int
    refs: Refs
    y: np.ndarray
    batches: np.ndarray  # (steps, global batch, sequence_clips) places in refs
    label_weights: np.ndarray

    def batches_of(self, context: tf.distribute.InputContext) -> tf.data.Dataset:
        """This input pipeline's share of each global batch: one part per local replica."""
        replicas = context.num_replicas_in_sync // context.num_input_pipelines
        size = context.get_per_replica_batch_size(self.config.batch_size)
        frontend, clips = self.data.frontend, self.config.sequence_clips
        frames = frontend.clip_frames
        labels = self.data.labels
        negative_labels = [labels.index(SILENCE), labels.index(UNKNOWN)]
        settle_frames = round(SEQUENCE_SETTLE_S / frontend.frame_seconds)

        def load(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            step, replica = divmod(k, replicas)
            part = context.input_pipeline_id * replicas + replica
            rows = self.batches[step, part * size : (part + 1) * size]  # (size, clips)
            x = self.workers.run(
                example_features,
                self.refs.take(rows.ravel()),
                frontend,
                self.config.seed,
                self.epoch,
                rows.ravel(),
            )
            y = self.y[rows]
            if clips > 1:
                y_frames, w = sequence_targets(y, self.label_weights, negative_labels, frames, settle_frames)
                return x.reshape(size, clips * frames, frontend.n_mfcc), y_frames.astype(np.int32), w
            return x, y[:, 0].astype(np.int32), self.label_weights[y[:, 0]]

        y_shape = (size, clips * frames) if clips > 1 else (size,)
        return batch_dataset(
            load, len(self.batches) * replicas, (size, clips * frames, frontend.n_mfcc), y_shape
        )


def fit(
    config: TrainConfig,
    data: TrainingData,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    input_workers: int = 0,
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[keras.Model, TrainState, bool]:
    """Train with checkpoints in ``run_dir/checkpoint``; return the best model (a clip model), its
    state, interrupted?

    ``input_workers``: processes computing the augmented features (:class:`kws.inputs.Workers`;
    0: this one). ``strategy`` (:func:`make_strategy`; None: the default) replicates the model;
    ``batch_size`` is the global batch, split evenly among replicas. Every worker of a
    cluster runs the same epochs on its share of each batch and validates on the whole
    validation set; only the chief (:func:`is_chief`) writes into ``run_dir``.
    """
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    distributed = strategy is not tf.distribute.get_strategy()
    if config.batch_size % strategy.num_replicas_in_sync:
        raise KwsError(
            f"--batch-size {config.batch_size}: the global batch must divide evenly among the "
            f"{strategy.num_replicas_in_sync} replicas"
        )
    chief = is_chief(strategy)
    ckpt = run_dir / CHECKPOINT_DIR
    # Other workers save too (saving may need every worker), where nobody reads it.
    save_to = ckpt if chief else Path(tempfile.mkdtemp(prefix="kws-worker-"))
    keras.utils.set_random_seed(config.seed)
    use_sequences = config.sequence_clips > 1

    def fresh(sequence_model: bool, compiled: bool = True) -> keras.Model:
        model = build(
            config.arch,
            len(data.labels),
            data.frontend.clip_frames,
            data.frontend.n_mfcc,
            units=config.units,
            layers=config.layers,
            dropout=config.dropout,
            sequences=sequence_model,
        )
        if compiled:
            model.compile(
                optimizer=keras.optimizers.Adam(config.learning_rate),
                loss="sparse_categorical_crossentropy",
                # Sequence training weighs most frames 0: accuracy over the weighted ones.
                **{"weighted_metrics" if sequence_model else "metrics": ["accuracy"]},
            )
        return model

    state = TrainState()
    with strategy.scope():
        if resume or config.finetune_from is not None:
            source = ckpt if resume else Path(str(config.finetune_from)) / CHECKPOINT_DIR
            model, saved = load_checkpoint(source)
            # Fine-tuning: patience counts from the source's last epoch; the best is chosen among the new ones.
            state = saved if resume else TrainState(epoch=saved.epoch, best_epoch=saved.epoch)
            if (
                len(model.output_shape) == 3
            ) != use_sequences:  # same weights, the other form (new optimiser)
                model = copy_weights(model, fresh(use_sequences))
        else:
            model = fresh(use_sequences)
    # Validation and mining run on a plain copy: every worker alike, no collectives.
    local = fresh(use_sequences, compiled=False) if distributed else model
    weights = class_weights(
        data.train_y, len(data.labels), {data.labels.index(UNKNOWN): config.unknown_weight}
    )
    label_weights = np.array([weights[i] for i in range(len(data.labels))], dtype=np.float32)
    interrupted = False
    try:
        with Workers(data.sources, input_workers) as workers:
            for epoch in range(state.epoch, config.epochs):
                if epoch - state.best_epoch >= config.patience and state.best_accuracy >= 0:
                    break
                start = time.monotonic()
                keras.backend.set_value(model.optimizer.learning_rate, learning_rate(config, epoch))
                if distributed:
                    local.set_weights(model.get_weights())
                # Mined with the weights the epoch starts from (a resumed run mines the same).
                hard = hard_negatives(local, data, config.hard_negatives) if epoch > 0 else []
                refs, y = epoch_examples(data, config, epoch, hard)
                batches = epoch_batches(len(refs), config, epoch)

                dataset = EpochInput(workers, data, config, epoch, refs, y, batches, label_weights)
                keras.utils.set_random_seed(config.seed * 1000 + epoch)  # dropout
                desc = f"epoch {epoch + 1}/{config.epochs}"
                with bar(
                    desc=desc, total=len(batches), unit=" batches", enabled=progress, leave=False
                ) as shown:
                    h = model.fit(
                        keras.utils.experimental.DatasetCreator(dataset.batches_of),
                        epochs=1,
                        steps_per_epoch=len(batches),
                        verbose=0,
                        callbacks=[_BatchProgress(shown, metrics=not distributed)],
                    )
                if distributed:
                    local.set_weights(model.get_weights())
                probabilities = clip_probabilities(local, data.val_x)
                right = probabilities.argmax(axis=1) == data.val_y
                val_acc = float(right.mean())
                val_loss = float(
                    -np.log(np.maximum(probabilities[np.arange(len(right)), data.val_y], 1e-7)).mean()
                )
                state.epoch = epoch + 1
                state.train_seconds += time.monotonic() - start
                state.history.append(
                    {
                        "epoch": epoch + 1,
                        "loss": float(h.history["loss"][0]),
                        "accuracy": float(h.history["accuracy"][0]),
                        "val_loss": val_loss,
                        "val_accuracy": val_acc,
                        **{f"val_accuracy_{k}": float(right[v].mean()) for k, v in data.val_sources.items()},
                    }
                )
                best = val_acc > state.best_accuracy
                if best:
                    state.best_accuracy, state.best_epoch = float(val_acc), epoch + 1
                save_checkpoint(model, state, save_to, best)
                stage(
                    f"{desc}: loss {h.history['loss'][0]:.3f} acc {h.history['accuracy'][0]:.3f}"
                    f" | val loss {val_loss:.3f} acc {val_acc:.3f}"
                    f" ({', '.join(f'{k} {right[v].mean():.3f}' for k, v in data.val_sources.items())})"
                    f"{'  (best)' if best else ''}",
                    progress,
                )
    except KeyboardInterrupt:
        interrupted = True
        if state.best_accuracy < 0:  # the interrupt goes on (status 130, or 143 for SIGTERM)
            print("interrupted before the first epoch finished: no model to save", file=sys.stderr)
            raise
        print(
            f"interrupted: keeping the checkpoint of epoch {state.epoch}; exporting the best epoch "
            f"({state.best_epoch}) — Ctrl-C again to abandon the export",
            file=sys.stderr,
        )
    local.load_weights(save_to / "best_weights.h5")
    if not chief:
        shutil.rmtree(save_to, ignore_errors=True)
    # The models converted and reported are clip models, outside any strategy.
    return (copy_weights(local, fresh(False)) if use_sequences else local), state, interrupted
