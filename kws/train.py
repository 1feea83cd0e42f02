"""Training: data -> a trained float Keras model, with checkpoints (:mod:`kws.pipeline` runs
the whole of ``kws train``: conversion, tuning and the report come after).

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

from kws.artifact import RECURRENT, ModelInfo
from kws.audio import load_audio
from kws.augment import AugmentConfig, augment_clip, mask_features
from kws.data import (
    DEFAULT_KEYWORDS,
    SILENCE,
    UNKNOWN,
    examples,
    held_out_negative,
    labels_for,
    load_example,
    negative_files,
    scan,
)
from kws.errors import KwsError
from kws.evaluate import negative_windows, window_starts
from kws.features import (
    FRONTENDS,
    FrontendConfig,
    clip_features,
    clip_log_mel,
    fit_normalisation,
    log_mel_to_cepstra,
)
from kws.fileio import atomic_path, write_text_atomic
from kws.images import (
    ImageSet,
    audio_image,
    augment_images,
    image_features,
    read_images,
    row_frontend,
    row_step,
)
from kws.model import build, copy_weights, keras, save_h5

CHECKPOINT_DIR = "checkpoint"
MINING_HOP_S = 0.1  # seconds between hard-negative mining windows
# Sequence training: seconds into a non-keyword example before its label holds at every
# frame (the posterior of a keyword just before it may still be falling).
SEQUENCE_SETTLE_S = 0.3


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
    """The training sources (augmented anew each epoch) and fixed validation features.

    Training examples are, in this order: the log-mel images, the audio clips, the
    negatives (``train_y`` follows the same order). Validation is the union of the
    sources present, each a slice of ``val_x`` named in ``val_sources``.
    """

    labels: list[str]
    frontend: FrontendConfig  # with normalisation fitted on the training sources
    train_audio: np.ndarray  # (n, clip_samples)
    train_audio_y: np.ndarray
    noise_files: list[Path]
    images: ImageSet | None  # training images
    noise_images: np.ndarray  # training background images, (k, 98, 40)
    negatives: list[np.ndarray]  # audio of any length, all _unknown_
    val_x: np.ndarray  # (m, frames, n_mfcc)
    val_y: np.ndarray
    val_sources: dict[str, slice]
    negative_hop: int | None  # samples between a negative recording's training windows
    # Hard-negative mining candidates: (negative index, start sample) and un-augmented features.
    mining: list[tuple[int, int]]
    mining_x: np.ndarray

    def negative_starts(self, audio: np.ndarray, rng: np.random.Generator | None = None) -> list[int]:
        """Where this epoch's 1-s training windows of a negative recording start (rng None: from 0).

        With ``negative_hop`` None, one window at a random place; otherwise windows
        ``negative_hop`` apart from a random offset small enough to keep their number fixed.
        """
        n = self.frontend.clip_samples
        slack = max(len(audio) - n, 0)
        if self.negative_hop is None:
            return [0 if rng is None else int(rng.integers(0, slack + 1))]
        count = 1 + slack // self.negative_hop
        spare = slack - (count - 1) * self.negative_hop
        offset = 0 if rng is None else int(rng.integers(0, spare + 1))
        return [offset + k * self.negative_hop for k in range(count)]

    @property
    def train_y(self) -> np.ndarray:
        image_y = self.images.labels if self.images is not None else np.zeros(0, dtype=int)
        windows = sum(len(self.negative_starts(a)) for a in self.negatives)
        negative_y = np.full(windows, self.labels.index(UNKNOWN))
        return np.concatenate([image_y, self.train_audio_y, negative_y]).astype(int)


def prepare_data(
    config: TrainConfig, *, progress: bool = True, normalised: FrontendConfig | None = None
) -> TrainingData:
    """Read every source's train and validation parts and fit the front-end normalisation.

    ``normalised``, a front-end with its normalisation, is used instead of fitting one
    (fine-tuning keeps its source run's).
    """
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
        audio = np.empty((len(chosen), n), dtype=np.float32)  # filled in place: one copy in memory
        for i, e in enumerate(tqdm(chosen, desc=f"read {split}", disable=not progress)):
            audio[i] = load_example(e, n)
        return audio, np.array([labels.index(e.label) for e in chosen])

    train_audio, train_y = read("train")
    val_audio, val_audio_y = read("validation")

    images = val_images = None
    noise_images = np.zeros((0, 0, 0), dtype=np.uint8)
    if config.images is not None:
        row_step(frontend)  # a clear error before the archive is read
        every = read_images(config.images, labels, progress=progress)
        images, val_images = every.subset("train"), every.subset("validation")
        noise_images = images.pixels[images.labels == labels.index(SILENCE)]

    negatives: list[np.ndarray] = []
    val_negatives: list[np.ndarray] = []
    for folder in config.negatives:
        for path in tqdm(
            negative_files(folder, config.keywords), desc=f"read {folder}", disable=not progress
        ):
            audio = load_audio(path, frontend.sample_rate)
            if held_out_negative(path):
                val_negatives += negative_windows(audio, frontend)
            else:
                negatives.append(audio)

    if normalised is not None:
        frontend = normalised
    else:  # normalisation from un-augmented training features of every source
        frontend = fit_normalisation(
            _raw_cepstra(train_audio, negatives, images, frontend, config.seed), frontend
        )

    val_parts: list[tuple[str, np.ndarray, np.ndarray]] = []
    if val_images is not None:
        phases = np.zeros(len(val_images.labels), dtype=int)
        val_parts.append(("images", image_features(val_images.pixels, phases, frontend), val_images.labels))
    val_parts.append(("audio", np.stack([clip_features(a, frontend) for a in val_audio]), val_audio_y))
    if val_negatives:
        x = np.stack([clip_features(a, frontend) for a in val_negatives])
        val_parts.append(("negatives", x, np.full(len(x), labels.index(UNKNOWN))))
    sources, start = {}, 0
    for name, x, _ in val_parts:
        sources[name] = slice(start, start + len(x))
        start += len(x)
    mining = []
    if config.hard_negatives:
        hop = round(MINING_HOP_S * frontend.sample_rate)
        mining = [(i, start) for i, a in enumerate(negatives) for start in window_starts(len(a), n, hop)]
    mining_x = (
        np.stack([clip_features(negatives[i][at : at + n], frontend) for i, at in mining])
        if mining
        else np.zeros((0, frontend.clip_frames, frontend.n_mfcc), np.float32)
    )
    return TrainingData(
        labels,
        frontend,
        train_audio,
        train_y,
        index.noise_files,
        images,
        noise_images,
        negatives,
        np.concatenate([x for _, x, _ in val_parts]),
        np.concatenate([y for _, _, y in val_parts]).astype(int),
        sources,
        None if config.negative_hop_s is None else round(config.negative_hop_s * frontend.sample_rate),
        mining,
        mining_x,
    )


def _raw_cepstra(
    audio: np.ndarray,
    negatives: Sequence[np.ndarray],
    images: ImageSet | None,
    frontend: FrontendConfig,
    seed: int,
    chunk: int = 1024,
) -> Iterator[np.ndarray]:
    """Un-augmented cepstra of every training clip, each negative's first second and a seeded
    5,000 of the images, ``chunk`` clips at a time (the normalisation is measured on them)."""
    n = frontend.clip_samples
    clips = [*audio, *(a[:n] for a in negatives)]
    for start in range(0, len(clips), chunk):
        log_mel = np.stack([clip_log_mel(a, frontend) for a in clips[start : start + chunk]])
        yield log_mel_to_cepstra(log_mel, frontend)
    if images is not None:
        sample = np.random.default_rng(seed).permutation(len(images.labels))[:5000]
        for start in range(0, len(sample), chunk):
            rows = images.pixels[sample[start : start + chunk], :: row_step(frontend)]
            yield log_mel_to_cepstra(rows.astype(np.float64)[:, : frontend.clip_frames], frontend)


def _audio_example(
    audio: np.ndarray, data: TrainingData, rng: np.random.Generator, config: TrainConfig
) -> np.ndarray:
    """Features of one augmented audio example; made an image first when images are trained on too."""
    augmented = augment_clip(audio, rng, data.noise_files, config.augment)
    if data.images is None:
        return clip_features(augmented, data.frontend)
    phase = rng.integers(0, row_step(data.frontend), 1)
    return image_features(audio_image(augmented, data.frontend)[None], phase, data.frontend)[0]


def clip_probabilities(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Each clip's label probabilities at its last frame (a clip model's output, or a sequence model's last)."""
    probabilities = model.predict(x, verbose=0, batch_size=256)
    return probabilities[:, -1] if probabilities.ndim == 3 else probabilities


def hard_negatives(model: keras.Model, data: TrainingData, count: int) -> list[tuple[int, int]]:
    """The ``count`` mining windows (:attr:`TrainingData.mining`) the model finds most keyword-like."""
    if not count or not data.mining:
        return []
    probabilities = clip_probabilities(model, data.mining_x)
    keyword_like = probabilities[:, 2:].max(axis=1)
    return [data.mining[i] for i in np.argsort(-keyword_like, kind="stable")[:count]]


def augmented_features(
    data: TrainingData,
    config: TrainConfig,
    epoch: int,
    hard: Sequence[tuple[int, int]] = (),
    chunk: int = 2048,
) -> np.ndarray:
    """This epoch's augmented training features (seeded by run seed and epoch), in ``train_y``'s
    order, then the ``hard`` negative windows ((negative index, start sample))."""
    rng = np.random.default_rng([config.seed, epoch])
    parts = []
    if data.images is not None:
        step = row_step(data.frontend)
        shift_rows = round(config.augment.time_shift_ms / row_frontend(data.frontend).hop_ms)
        for start in range(0, len(data.images.labels), chunk):
            pixels = augment_images(
                data.images.pixels[start : start + chunk],
                rng,
                data.frontend,
                data.noise_images,
                gain_db=config.augment.gain_db,
                noise_probability=config.augment.noise_probability,
                snr_db=config.augment.snr_db,
                max_shift_rows=shift_rows,
            )
            parts.append(image_features(pixels, rng.integers(0, step, len(pixels)), data.frontend))
    parts.append(np.stack([_audio_example(a, data, rng, config) for a in data.train_audio]))
    n = data.frontend.clip_samples
    for audio in data.negatives:
        for start in data.negative_starts(audio, rng):
            parts.append(_audio_example(audio[start : start + n], data, rng, config)[None])
    x = np.concatenate(parts)
    del parts  # one copy of the epoch's features at a time
    for i, f in enumerate(x):
        x[i] = mask_features(f, rng, config.augment)
    if not hard:
        return x
    # The mined windows draw from their own generator: mining leaves the usual examples as they are.
    rng = np.random.default_rng([config.seed, epoch, 1])
    mined = [_audio_example(data.negatives[i][start : start + n], data, rng, config) for i, start in hard]
    return np.concatenate([x, np.stack([mask_features(f, rng, config.augment) for f in mined])])


def sequences(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray,
    negative_labels: Sequence[int],
    clips: int,
    settle_frames: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Examples joined ``clips`` at a time, in a random order, into sequences with a label and
    a loss weight per frame (:attr:`TrainConfig.sequence_clips`).

    Parameters
    ----------
    x : np.ndarray, shape (n, frames, n_mfcc)
        Features of each example.
    y : np.ndarray, shape (n,)
        Labels.
    weights : np.ndarray, shape (n_labels,)
        Each label's loss weight (:func:`class_weights`).
    negative_labels : sequence of int
        Labels trained on at every frame from ``settle_frames`` on, not only the last;
        their weight is spread over those frames.
    clips : int
        Examples a sequence; the ``n % clips`` left over sit this epoch out.
    settle_frames : int
        Frames into a ``negative_labels`` example before its label is trained on.
    rng : np.random.Generator

    Returns
    -------
    x, y, w : np.ndarray
        Shapes (n // clips, clips * frames, n_mfcc), (n // clips, clips * frames) twice.
    """
    n, frames, n_mfcc = x.shape
    order = rng.permutation(n)[: n // clips * clips].reshape(-1, clips)
    labels = y[order]  # (sequences, clips)
    w = np.zeros((len(order), clips, frames), dtype=np.float32)
    w[:, :, -1] = weights[labels]
    dense = np.isin(labels, negative_labels) * weights[labels] / (frames - 1 - settle_frames)
    w[:, :, settle_frames:-1] += dense[:, :, None]
    return (
        x[order].reshape(len(order), clips * frames, n_mfcc),
        np.repeat(labels, frames, axis=1),
        w.reshape(len(order), clips * frames),
    )


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
    """Train with checkpoints in ``run_dir/checkpoint``; return the best model (a clip model), its
    state, interrupted?"""
    ckpt = run_dir / CHECKPOINT_DIR
    keras.utils.set_random_seed(config.seed)
    use_sequences = config.sequence_clips > 1

    def fresh(sequence_model: bool) -> keras.Model:
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
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss="sparse_categorical_crossentropy",
            # Sequence training weighs most frames 0: accuracy over the weighted ones.
            **{"weighted_metrics" if sequence_model else "metrics": ["accuracy"]},
        )
        return model

    state = TrainState()
    if resume or config.finetune_from is not None:
        source = ckpt if resume else Path(str(config.finetune_from)) / CHECKPOINT_DIR
        model = keras.models.load_model(source / "last.h5")
        saved = TrainState(**json.loads((source / "state.json").read_text()))
        # Fine-tuning: patience counts from the source's last epoch; the best is chosen among the new ones.
        state = saved if resume else TrainState(epoch=saved.epoch, best_epoch=saved.epoch)
        if (len(model.output_shape) == 3) != use_sequences:  # same weights, the other form (new optimiser)
            model = copy_weights(model, fresh(use_sequences))
    else:
        model = fresh(use_sequences)
    weights = class_weights(
        data.train_y, len(data.labels), {data.labels.index(UNKNOWN): config.unknown_weight}
    )
    negative_labels = [data.labels.index(SILENCE), data.labels.index(UNKNOWN)]
    settle_frames = round(SEQUENCE_SETTLE_S / data.frontend.frame_seconds)
    interrupted = False
    try:
        for epoch in range(state.epoch, config.epochs):
            if epoch - state.best_epoch >= config.patience and state.best_accuracy >= 0:
                break
            start = time.monotonic()
            keras.backend.set_value(model.optimizer.learning_rate, learning_rate(config, epoch))
            # Mined with the weights the epoch starts from (a resumed run mines the same).
            hard = hard_negatives(model, data, config.hard_negatives) if epoch > 0 else []
            x = augmented_features(data, config, epoch, hard)
            y = np.concatenate([data.train_y, np.full(len(hard), data.labels.index(UNKNOWN))])
            fit_weights: dict[str, Any] = {"class_weight": weights}
            if use_sequences:
                w = np.array([weights[i] for i in range(len(data.labels))])
                rng = np.random.default_rng([config.seed, epoch, 2])
                x, y, frame_weights = sequences(
                    x, y, w, negative_labels, config.sequence_clips, settle_frames, rng
                )
                fit_weights = {"sample_weight": frame_weights}
            keras.utils.set_random_seed(config.seed * 1000 + epoch)  # batch order, dropout
            desc = f"epoch {epoch + 1}/{config.epochs}"
            with tqdm(
                total=math.ceil(len(y) / config.batch_size),
                desc=desc,
                disable=not progress,
                leave=False,
                file=sys.stderr,
            ) as bar:
                h = model.fit(
                    x,
                    y,
                    batch_size=config.batch_size,
                    epochs=1,
                    verbose=0,
                    shuffle=True,
                    callbacks=[_BatchProgress(bar)],
                    **fit_weights,
                )
            probabilities = clip_probabilities(model, data.val_x)
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
            _save_checkpoint(model, state, ckpt, best)
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
    model.load_weights(ckpt / "best_weights.h5")
    if use_sequences:  # the models converted and reported are clip models
        model = copy_weights(model, fresh(False))
    return model, state, interrupted


def calibration_set(data: TrainingData, config: TrainConfig) -> np.ndarray:
    """Un-augmented training features for int8 calibration, a seeded choice across sources and classes."""
    rng = np.random.default_rng(config.seed)
    n_images = 0 if data.images is None else len(data.images.labels)
    chosen = rng.permutation(n_images + len(data.train_audio))[: config.calibration_clips]
    out = []
    for i in chosen:
        if i < n_images and data.images is not None:
            out.append(image_features(data.images.pixels[i][None], np.zeros(1, dtype=int), data.frontend)[0])
        else:
            out.append(clip_features(data.train_audio[i - n_images], data.frontend))
    return np.stack(out)


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
