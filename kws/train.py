"""Training: data -> a trained float Keras model, with checkpoints (:mod:`kws.pipeline` runs
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

import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from kws.artifact import RECURRENT, ModelInfo
from kws.augment import AugmentConfig
from kws.data import (
    DEFAULT_KEYWORDS,
    SILENCE,
    UNKNOWN,
    examples,
    held_out_negative,
    labels_for,
    negative_files,
    scan,
)
from kws.errors import KwsError
from kws.evaluate import NEGATIVE_HOP_SECONDS, window_starts
from kws.features import FRONTENDS, FrontendConfig, fit_normalisation
from kws.fileio import atomic_path, write_text_atomic
from kws.images import cached_images, row_step
from kws.inputs import (
    CLIP,
    DISTRIBUTE,
    IMAGE,
    NEGATIVE,
    ORDER_STREAM,
    WINDOW_STREAM,
    ClipTable,
    Refs,
    Sources,
    Workers,
    audio_lengths,
    batch_dataset,
    example_features,
    on_disk,
    raw_cepstra,
)
from kws.model import build, copy_weights, keras, save_h5

if TYPE_CHECKING:
    import tensorflow as tf

CHECKPOINT_DIR = "checkpoint"
MINING_HOP_S = 0.1  # seconds between hard-negative mining windows
# Sequence training: seconds into a non-keyword example before its label holds at every
# frame (the posterior of a keyword just before it may still be falling).
SEQUENCE_SETTLE_S = 0.3
# The normalisation is measured on every training image and clip up to these many (a seeded
# choice beyond), and on every training negative recording's first second.
NORMALISATION_IMAGES = 5000
NORMALISATION_CLIPS = 20_000


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved in the checkpoint and the report).

    Parameters
    ----------
    data : str
        Speech Commands folder (official layout) with train and validation splits.
    images : str or None
        The full set's log-mel image archive (``speech_commands_logmel.tar.gz``) or its
        extracted folder, trained on beside ``data``; needs the ``logmel_image`` front-end.
    negatives : tuple of str
        Folders of non-keyword speech (any audio files, at any depth), trained on as
        ``_unknown_``. A fixed 10% of each folder's files (by name hash,
        :func:`kws.data.held_out_negative`) is held out for validation and tuning.
    negative_hop_s : float or None
        Each epoch, every training recording of ``negatives`` gives 1-s windows this far
        apart, from a random start (the number of windows stays the same); None: one 1-s
        window at a random place.
    unknown_weight : float
        The ``_unknown_`` class's share of the loss relative to one keyword's (classes are
        otherwise balanced): above 1 trades keyword recall for fewer false alarms on
        other speech.
    hard_negatives : int
        Hard-negative mining: each epoch after the first, the training negatives' 1-s
        windows (every 0.1 s) that the model scored most keyword-like at the end of the
        previous epoch, this many, are trained on again (augmented) as ``_unknown_``.
    sequence_clips : int
        Recurrent models: train on sequences of this many augmented examples in a row,
        the state carried from one to the next as the step model streams (1: each clip
        alone from a zero state). Each example's label is trained on at its last frame
        and, for ``_unknown_`` and ``_silence_``, at every frame from
        :data:`SEQUENCE_SETTLE_S` into it as well: nothing may fire anywhere in other
        speech, whatever came before. The files written are the same clip and step
        models; fine-tuning a run of the other kind keeps its weights and starts a new
        optimiser state.
    finetune_from : str or None
        A finished run folder to continue from: its last checkpoint (weights, optimiser
        state, epoch count) trained on with these settings up to ``epochs`` on the same
        cosine schedule; model selection and early stopping start anew. Needs the same
        model and front-end normalisation (the same training sources).
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
    images: str | None = None
    negatives: tuple[str, ...] = ()
    negative_hop_s: float | None = None
    unknown_weight: float = 1.0
    hard_negatives: int = 0
    sequence_clips: int = 1
    finetune_from: str | None = None
    arch: str = "lstm"
    keywords: tuple[str, ...] = DEFAULT_KEYWORDS
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-3
    units: int = 80
    layers: int = 2
    dropout: float = 0.2
    patience: int = 10
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    frontend: FrontendConfig = FRONTENDS["logmel_image"]
    calibration_clips: int = 300

    def __post_init__(self) -> None:
        if self.sequence_clips < 1 or (self.sequence_clips > 1 and self.arch not in RECURRENT):
            raise KwsError(
                f"sequence_clips {self.sequence_clips}: at least 1, and above 1 only for a recurrent "
                f"model ({', '.join(RECURRENT)}), not {self.arch}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["keywords"] = list(self.keywords)
        d["negatives"] = list(self.negatives)
        d["frontend"] = self.frontend.to_dict()
        return d


@dataclass
class TrainingData:
    """The training examples by reference (augmented anew each epoch by :mod:`kws.inputs`)
    and fixed validation features.

    Training examples are, in this order: the log-mel images, the audio clips (``refs``,
    labels ``refs_y``), then each epoch's windows of the negative recordings
    (``sources.negatives[:len(negative_lengths)]``); ``train_y`` follows the same order.
    Validation is the union of the sources present, each a slice of ``val_x`` named in
    ``val_sources``.
    """

    labels: list[str]
    frontend: FrontendConfig  # with normalisation fitted on the training sources
    sources: Sources
    refs: Refs
    refs_y: np.ndarray
    negative_lengths: np.ndarray  # samples of each training negative recording
    val_x: np.ndarray  # (m, frames, n_mfcc), memory-mapped from a temporary file
    val_y: np.ndarray
    val_sources: dict[str, slice]
    negative_hop: int | None  # samples between a negative recording's training windows
    # Hard-negative mining candidates: (negative index, start sample) and un-augmented features.
    mining: list[tuple[int, int]]
    mining_x: np.ndarray

    def negative_starts(self, length: int, rng: np.random.Generator | None = None) -> list[int]:
        """Where this epoch's 1-s training windows of a ``length``-sample negative recording
        start (rng None: from 0).

        With ``negative_hop`` None, one window at a random place; otherwise windows
        ``negative_hop`` apart from a random offset small enough to keep their number fixed.
        """
        n = self.frontend.clip_samples
        slack = max(length - n, 0)
        if self.negative_hop is None:
            return [0 if rng is None else int(rng.integers(0, slack + 1))]
        count = 1 + slack // self.negative_hop
        spare = slack - (count - 1) * self.negative_hop
        offset = 0 if rng is None else int(rng.integers(0, spare + 1))
        return [offset + k * self.negative_hop for k in range(count)]

    @property
    def train_y(self) -> np.ndarray:
        windows = sum(len(self.negative_starts(int(length))) for length in self.negative_lengths)
        return np.concatenate([self.refs_y, np.full(windows, self.labels.index(UNKNOWN))]).astype(int)


def _clip_tables(
    config: TrainConfig, clip_samples: int
) -> tuple[tuple[ClipTable, ...], np.ndarray, tuple[Path, ...]]:
    """The audio data set's train and validation examples (:class:`kws.inputs.ClipTable`), their
    labels, and its noise recordings."""
    index = scan(config.data)
    if index.layout != "speech_commands":
        raise KwsError(
            f"{config.data}: training needs the official Speech Commands layout with a train split"
        )
    labels = labels_for(config.keywords)
    tables, label_ids = [], []
    for split in ("train", "validation"):
        chosen = examples(index, split, config.keywords, clip_samples=clip_samples, seed=config.seed)
        if not chosen:
            raise KwsError(f"{config.data}: no {split} clips")
        tables.append(ClipTable.of(chosen, index.root, index.noise_files))
        label_ids += [labels.index(e.label) for e in chosen]
    return tuple(tables), np.array(label_ids), tuple(index.noise_files)


def prepare_data(
    config: TrainConfig,
    *,
    progress: bool = True,
    normalised: FrontendConfig | None = None,
    input_workers: int = 0,
) -> TrainingData:
    """Index every source's train and validation parts, fit the front-end normalisation and
    compute the validation features.

    ``normalised``, a front-end with its normalisation, is used instead of fitting one
    (fine-tuning keeps its source run's). ``input_workers``: processes computing features
    (:class:`kws.inputs.Workers`; 0: this one).
    """
    labels = labels_for(config.keywords)
    frontend = dataclasses.replace(config.frontend, mean=None, std=None)
    n = frontend.clip_samples
    if input_workers:  # the index's million little objects live and die in another process
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as indexer:
            clips, clip_y, noise_files = indexer.submit(_clip_tables, config, n).result()
    else:
        clips, clip_y, noise_files = _clip_tables(config, n)
    train_clips = np.arange(len(clips[0]))
    val_clips = np.arange(len(clips[0]), len(clip_y))

    store = None
    train_rows = val_rows = np.zeros(0, dtype=np.int64)
    image_y = np.zeros(0, dtype=int)
    noise_pixels = np.zeros((0, 0, 0), dtype=np.uint8)
    if config.images is not None:
        row_step(frontend)  # a clear error before the archive is read
        store = cached_images(config.images, progress=progress)
        image_y = store.labels(labels)
        train_rows, val_rows = (
            np.flatnonzero(store.splits == "train"),
            np.flatnonzero(store.splits == "validation"),
        )
        noise_pixels = np.array(store.pixels()[train_rows[image_y[train_rows] == labels.index(SILENCE)]])

    train_negatives: list[Path] = []
    val_negatives: list[Path] = []
    for folder in config.negatives:
        for path in negative_files(folder, config.keywords):
            (val_negatives if held_out_negative(path) else train_negatives).append(path)
    negatives = train_negatives + val_negatives
    sources = Sources(clips, tuple(negatives), store, noise_pixels, noise_files, config.augment)
    with Workers(sources, input_workers) as workers:
        everything = Refs.of(NEGATIVE, range(len(negatives)))
        lengths = np.concatenate(
            [np.zeros(0, np.int64), *workers.chunks(audio_lengths, everything, frontend)]
        )
        if normalised is not None:
            frontend = normalised
        else:  # from un-augmented training features of every source, a seeded sample of the large ones
            rng = np.random.default_rng(config.seed)
            sample = Refs.concat(
                [
                    Refs.of(IMAGE, train_rows[rng.permutation(len(train_rows))[:NORMALISATION_IMAGES]]),
                    Refs.of(
                        CLIP, train_clips[np.sort(rng.permutation(len(train_clips))[:NORMALISATION_CLIPS])]
                    ),
                    Refs.of(NEGATIVE, range(len(train_negatives))),
                ]
            )
            chunks = workers.chunks(raw_cepstra, sample, frontend)
            frontend = fit_normalisation(
                tqdm(chunks, desc="normalisation", total=-(-len(sample) // 256), disable=not progress),
                frontend,
            )

        def features(refs: Refs, what: str) -> np.ndarray:
            parts = workers.chunks(example_features, refs, frontend)
            bar = tqdm(parts, desc=what, total=-(-len(refs) // 256), disable=not progress)
            return on_disk(bar, (frontend.clip_frames, frontend.n_mfcc))

        hop = round(NEGATIVE_HOP_SECONDS * frontend.sample_rate)
        val_windows = [
            (i, at)
            for i in range(len(train_negatives), len(negatives))
            for at in window_starts(lengths[i], n, hop)
        ]
        val_parts = [
            ("images", Refs.of(IMAGE, val_rows), image_y[val_rows]),
            ("audio", Refs.of(CLIP, val_clips), clip_y[val_clips]),
            (
                "negatives",
                Refs.of(NEGATIVE, [i for i, _ in val_windows], [at for _, at in val_windows]),
                np.full(len(val_windows), labels.index(UNKNOWN)),
            ),
        ]
        val_parts = [part for part in val_parts if len(part[1])]
        val_x = features(Refs.concat([refs for _, refs, _ in val_parts]), "validation features")
        mining = []
        if config.hard_negatives:
            hop = round(MINING_HOP_S * frontend.sample_rate)
            mining = [
                (i, at) for i in range(len(train_negatives)) for at in window_starts(lengths[i], n, hop)
            ]
        mining_x = features(
            Refs.of(NEGATIVE, [i for i, _ in mining], [at for _, at in mining]), "mining windows"
        )
    sources_at, start = {}, 0
    for name, refs, _ in val_parts:
        sources_at[name] = slice(start, start + len(refs))
        start += len(refs)
    return TrainingData(
        labels,
        frontend,
        sources,
        Refs.concat([Refs.of(IMAGE, train_rows), Refs.of(CLIP, train_clips)]),
        np.concatenate([image_y[train_rows], clip_y[train_clips]]).astype(int),
        lengths[: len(train_negatives)],
        val_x,
        np.concatenate([y for _, _, y in val_parts]).astype(int),
        sources_at,
        None if config.negative_hop_s is None else round(config.negative_hop_s * frontend.sample_rate),
        mining,
        mining_x,
    )


def clip_probabilities(model: keras.Model, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Each clip's label probabilities at its last frame (a clip model's output, or a sequence
    model's last), ``chunk`` clips at a time (``x`` may be a memory map on disk)."""
    parts = []
    for start in range(0, len(x), chunk):
        probabilities = model.predict(np.asarray(x[start : start + chunk]), verbose=0, batch_size=256)
        parts.append(probabilities[:, -1] if probabilities.ndim == 3 else probabilities)
    return np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]), np.float32)


def hard_negatives(model: keras.Model, data: TrainingData, count: int) -> list[tuple[int, int]]:
    """The ``count`` mining windows (:attr:`TrainingData.mining`) the model finds most keyword-like."""
    if not count or not data.mining:
        return []
    probabilities = clip_probabilities(model, data.mining_x)
    keyword_like = probabilities[:, 2:].max(axis=1)
    return [data.mining[i] for i in np.argsort(-keyword_like, kind="stable")[:count]]


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
    """A tqdm bar per epoch with the running loss and accuracy (``metrics`` False: the bar only;
    tf-keras's per-batch logs of a multi-worker run are summed over replicas, not means)."""

    def __init__(self, bar: tqdm, metrics: bool = True) -> None:
        super().__init__()
        self.bar = bar
        self.metrics = metrics

    def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        self.bar.update(1)
        if logs and self.metrics:
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


def make_strategy(distribute: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy of ``--distribute``: none (TensorFlow's default),
    mirrored (every local GPU, else the CPU) or multiworker (the machines of ``TF_CONFIG``).
    Make it before any other TensorFlow operation runs (collectives are set up at start-up)."""
    import tensorflow as tf

    if distribute == "none":
        return tf.distribute.get_strategy()
    if distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    if distribute == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise KwsError(
                "--distribute multiworker needs TF_CONFIG on every machine: "
                '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": I}}'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise KwsError(f"--distribute {distribute}: choose one of {', '.join(DISTRIBUTE)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, but on a multi-worker cluster
    (the chief task, else worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().jobs
    )


@dataclass(frozen=True)
class _EpochInput:
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
            model = keras.models.load_model(source / "last.h5")
            saved = TrainState(**json.loads((source / "state.json").read_text()))
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

                dataset = _EpochInput(workers, data, config, epoch, refs, y, batches, label_weights)
                keras.utils.set_random_seed(config.seed * 1000 + epoch)  # dropout
                desc = f"epoch {epoch + 1}/{config.epochs}"
                with tqdm(
                    total=len(batches), desc=desc, disable=not progress, leave=False, file=sys.stderr
                ) as bar:
                    h = model.fit(
                        keras.utils.experimental.DatasetCreator(dataset.batches_of),
                        epochs=1,
                        steps_per_epoch=len(batches),
                        verbose=0,
                        callbacks=[_BatchProgress(bar, metrics=not distributed)],
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
                _save_checkpoint(model, state, save_to, best)
                if progress:
                    print(
                        f"{desc}: loss {h.history['loss'][0]:.3f} acc {h.history['accuracy'][0]:.3f}"
                        f" | val loss {val_loss:.3f} acc {val_acc:.3f}"
                        f" ({', '.join(f'{k} {right[v].mean():.3f}' for k, v in data.val_sources.items())})"
                        f"{'  (best)' if best else ''}",
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
    local.load_weights(save_to / "best_weights.h5")
    if not chief:
        shutil.rmtree(save_to, ignore_errors=True)
    # The models converted and reported are clip models, outside any strategy.
    return (copy_weights(local, fresh(False)) if use_sequences else local), state, interrupted


def calibration_set(data: TrainingData, config: TrainConfig) -> np.ndarray:
    """Un-augmented training features for int8 calibration, a seeded choice across sources and classes."""
    chosen = np.random.default_rng(config.seed).permutation(len(data.refs))[: config.calibration_clips]
    return example_features(data.sources, data.refs.take(chosen), data.frontend)


def model_info(config: TrainConfig, data: TrainingData) -> ModelInfo:
    """The metadata every model file of the run carries."""
    return ModelInfo(
        labels=tuple(data.labels),
        frontend=data.frontend,
        kind="clip",
        arch=config.arch,
        extra={"train": {k: v for k, v in config.to_dict().items() if k not in ("frontend",)}},
    )


def _as_read_back(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` as it reads back from a JSON file (tuples become lists), to compare with one."""
    result: dict[str, Any] = json.loads(json.dumps(d))
    return result


def check_resume(config: TrainConfig, run_dir: Path) -> None:
    """Refuse to resume a run with settings that differ from the checkpoint's."""
    saved = run_dir / CHECKPOINT_DIR / "config.json"
    if not saved.is_file():
        raise KwsError(f"{run_dir}: no checkpoint to resume from")
    old = json.loads(saved.read_text())
    new = _as_read_back(config.to_dict())
    # A setting added since the checkpoint was written had its default then.
    defaults = _as_read_back(TrainConfig(data="").to_dict())
    differ = [k for k in new if k != "epochs" and old.get(k, defaults[k]) != new[k]]
    if differ:
        raise KwsError(f"{run_dir}: cannot resume with different settings ({', '.join(differ)})")


def check_finetune_source(config: TrainConfig) -> FrontendConfig:
    """Refuse to fine-tune from a run that is unfinished, of another model or front-end, or already as long.

    Returns the source's front-end with its normalisation, which fine-tuning keeps (its
    weights were trained on it), whatever sources the fine-tuning adds.
    """
    source = Path(str(config.finetune_from))
    report = source / "report.json"
    if not (source / CHECKPOINT_DIR / "last.h5").is_file() or not report.is_file():
        raise KwsError(
            f"{source}: not a finished kws train run (no report.json and checkpoint) to fine-tune from"
        )
    finished = json.loads(report.read_text())
    model = {k: finished["config"].get(k) for k in ("arch", "units", "layers", "keywords")}
    settings = _as_read_back(config.to_dict())
    if model != {k: settings[k] for k in model}:
        raise KwsError(
            f"{source}: a different model ({model}); fine-tuning keeps the architecture and keywords"
        )
    frontend = FrontendConfig.from_dict(finished["frontend"])
    if dataclasses.replace(frontend, mean=None, std=None) != dataclasses.replace(
        config.frontend, mean=None, std=None
    ):
        raise KwsError(f"{source}: trained on another front-end; fine-tuning keeps the front-end")
    epochs = json.loads((source / CHECKPOINT_DIR / "state.json").read_text())["epoch"]
    if config.epochs <= epochs:
        raise KwsError(f"--epochs {config.epochs}: the run to fine-tune already trained {epochs}; give more")
    return frontend


def __getattr__(name: str) -> Any:
    # kws 0.1's kws.train.run, now kws.pipeline.run (which imports this module, not the reverse).
    if name == "run":
        import warnings

        from kws import pipeline

        warnings.warn("kws.train.run is kws.pipeline.run now", DeprecationWarning, stacklevel=2)
        return pipeline.run
    raise AttributeError(f"module 'kws.train' has no attribute {name!r}")
