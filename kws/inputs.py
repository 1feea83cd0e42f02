"""Training input: examples by reference, their features computed in worker processes and
fed to Keras through ``tf.data``.

Training holds no audio and no image in memory: an example is a reference (its source, the
clip, image or negative recording, and where the 1-s window starts), and a worker reads it
from disk, augments it and computes its features when a batch needs it. Each example draws
its randomness from its own generator, seeded by (run seed, epoch, its place in the
epoch), so its features do not depend on how many workers compute them, in what order, or
on how many machines share the epoch: resumed, parallel and distributed runs see the same
examples.

Workers are processes (``multiprocessing``, spawned), not threads: the NumPy front-end
holds the GIL, and threads measured 0.5-1.1x one loop where two processes gave 1.7x.
``tf.data`` does the rest: each parallel map call hands one batch to the pool and waits
for it, in order, with prefetching.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kws.audio import load_audio
from kws.augment import AugmentConfig, augment_clip, mask_features
from kws.data import Example, NoiseSlice, load_example
from kws.features import FrontendConfig, clip_features, clip_log_mel, log_mel_to_cepstra
from kws.images import (
    ImageAugmentation,
    ImageStore,
    apply_image_augmentation,
    audio_image,
    draw_image_augmentation,
    image_features,
    row_frontend,
    row_step,
)

if TYPE_CHECKING:
    import tensorflow as tf

# Feature processes beside the training process: one a core (they overlap with training).
DEFAULT_INPUT_WORKERS = os.cpu_count() or 1
# Training on one device, every local GPU, or several machines (kws.training.distribute.make_strategy);
# one device unless told.
DISTRIBUTE = ("none", "mirrored", "multiworker")
DEFAULT_DISTRIBUTE = "none"
# How often a thread waiting on a worker checks that the workers are still open (seconds).
CLOSED_POLL_S = 0.25
# Where an example comes from (Refs.source).
IMAGE, CLIP, NEGATIVE = 0, 1, 2
# Random streams of an epoch: numpy.random.default_rng([seed, epoch, stream, ...]).
ORDER_STREAM = 3  # the epoch's order of examples (or of sequences)
WINDOW_STREAM = 4  # where each negative recording's training windows start
EXAMPLE_STREAM = 5  # one generator per example: [seed, epoch, EXAMPLE_STREAM, position]


@dataclass(frozen=True)
class ClipTable:
    """Examples of an audio data set as flat arrays, a few dozen bytes a clip (Python objects
    for a million clips would take gigabytes, in every worker).

    A clip is ``names[offsets[i]:offsets[i + 1]]`` (UTF-8, relative to ``root``), or, where
    that is empty, generated silence: ``noise_files[noise[i]]`` from ``start[i]`` in its
    ``split`` region at level ``rms[i]`` (:class:`kws.data.NoiseSlice`).
    """

    root: Path
    names: bytes
    offsets: np.ndarray
    noise_files: tuple[Path, ...]
    noise: np.ndarray
    start: np.ndarray
    rms: np.ndarray
    split: tuple[str, ...]  # of each silence slice: "train" or "validation"

    @staticmethod
    def of(chosen: Sequence[Example], root: Path, noise_files: Sequence[Path]) -> ClipTable:
        names = [b"" if e.path is None else str(e.path.relative_to(root)).encode() for e in chosen]
        noise = [e.noise for e in chosen]
        files = list(noise_files)
        return ClipTable(
            root,
            b"".join(names),
            np.cumsum([0, *map(len, names)], dtype=np.int64),
            tuple(files),
            np.array([-1 if n is None else files.index(n.path) for n in noise], np.int16),
            np.array([0 if n is None else n.start for n in noise], np.int64),
            np.array([0.0 if n is None else n.rms for n in noise], np.float64),
            tuple(sorted({n.split for n in noise if n is not None})),
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> Example:
        name = self.names[self.offsets[i] : self.offsets[i + 1]].decode()
        if name:
            return Example("", self.root / name)
        (split,) = self.split  # silence of one split a table
        slice_ = NoiseSlice(self.noise_files[self.noise[i]], split, int(self.start[i]), float(self.rms[i]))
        return Example("", noise=slice_)


@dataclass(frozen=True)
class Sources:
    """What examples are read from: file names, the image store and settings only (each
    worker process gets a copy when it starts).

    Parameters
    ----------
    clips : sequence of ClipTable
        The audio data set's clips (or generated silence), a table a split: an example's
        index counts through them in order.
    negatives : tuple of path
        Training recordings of non-keyword speech.
    images : ImageStore or None
        The decoded log-mel images (every split; references are rows of it).
    noise_pixels : np.ndarray, (k, 98, 40) uint8
        Training background images mixed into images as noise.
    noise_files : tuple of path
        Background-noise recordings mixed into audio.
    augment : AugmentConfig
    """

    clips: tuple[ClipTable, ...]
    negatives: tuple[Path, ...]
    images: ImageStore | None
    noise_pixels: np.ndarray
    noise_files: tuple[Path, ...]
    augment: AugmentConfig


@dataclass(frozen=True)
class Refs:
    """Examples by reference, as parallel arrays: ``source`` (IMAGE, CLIP, NEGATIVE),
    ``index`` (the image row, clip or negative recording) and ``start`` (the sample a
    negative window starts at; 0 otherwise)."""

    source: np.ndarray
    index: np.ndarray
    start: np.ndarray

    @staticmethod
    def of(source: int, index: Iterable[int], start: Iterable[int] | None = None) -> Refs:
        indices = np.fromiter(index, np.int64)  # no Python list of a whole data set's indices
        starts = np.zeros(len(indices), np.int64) if start is None else np.fromiter(start, np.int64)
        return Refs(np.full(len(indices), source, np.int8), indices, starts)

    @staticmethod
    def concat(parts: Sequence[Refs]) -> Refs:
        return Refs(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("source", "index", "start")))

    def __len__(self) -> int:
        return len(self.index)

    def take(self, rows: np.ndarray) -> Refs:
        return Refs(self.source[rows], self.index[rows], self.start[rows])


def example_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    """The generator of the example at ``position`` in ``epoch``'s list."""
    return np.random.default_rng([seed, epoch, EXAMPLE_STREAM, position])


def _audio(sources: Sources, source: int, index: int, start: int, frontend: FrontendConfig) -> np.ndarray:
    n, rate = frontend.clip_samples, frontend.sample_rate
    if source == CLIP:
        for table in sources.clips:
            if index < len(table):
                return load_example(table[index], n, rate)
            index -= len(table)
        raise IndexError("clip index out of range")
    return load_audio(sources.negatives[index], rate)[start : start + n]


def audio_lengths(sources: Sources, refs: Refs, frontend: FrontendConfig) -> np.ndarray:
    """Samples of each referenced negative recording at the front-end's rate."""
    return np.array(
        [len(load_audio(sources.negatives[i], frontend.sample_rate)) for i in refs.index], np.int64
    )


def example_features(
    sources: Sources,
    refs: Refs,
    frontend: FrontendConfig,
    seed: int | None = None,
    epoch: int = 0,
    positions: np.ndarray | None = None,
) -> np.ndarray:
    """Features of examples, augmented or not.

    Parameters
    ----------
    sources : Sources
    refs : Refs
        The examples.
    frontend : FrontendConfig
        The model's front-end, normalised.
    seed, epoch : int
        With ``seed`` given, each example is augmented (audio: speed, shift, gain, noise,
        then made an image when images are trained on too; images: gain, noise, shift,
        a row phase) and masked, with :func:`example_rng` at its ``positions``; with
        None, the plain features (images from row phase 0).
    positions : np.ndarray of int or None
        Each example's place in the epoch's list (default 0, 1, ...).

    Returns
    -------
    np.ndarray, float32, (len(refs), clip_frames, n_mfcc)
    """
    out = np.empty((len(refs), frontend.clip_frames, frontend.n_mfcc), np.float32)
    positions = np.arange(len(refs)) if positions is None else positions
    augment = sources.augment
    step = row_step(frontend)
    rngs = [None if seed is None else example_rng(seed, epoch, int(p)) for p in positions]
    # Images: each one's parameters drawn from its own generator, then applied all at once.
    images = np.flatnonzero(refs.source == IMAGE)
    if len(images):
        assert sources.images is not None
        order = np.argsort(refs.index[images])  # the memory map read in file order
        pixels = np.empty((len(images), *sources.images.pixels().shape[1:]), np.uint8)
        pixels[order] = sources.images.pixels()[refs.index[images][order]]
        phases = np.zeros(len(images), int)
        if seed is not None:
            shift_rows = round(augment.time_shift_ms / row_frontend(frontend).hop_ms)
            drawn = []
            for k, i in enumerate(images):
                rng = rngs[i]
                assert rng is not None
                drawn.append(
                    draw_image_augmentation(
                        rng,
                        1,
                        len(sources.noise_pixels),
                        gain_db=augment.gain_db,
                        noise_probability=augment.noise_probability,
                        snr_db=augment.snr_db,
                        max_shift_rows=shift_rows,
                    )
                )
                phases[k] = rng.integers(0, step)
            augmentation = ImageAugmentation.concat(drawn)
            pixels = apply_image_augmentation(pixels, augmentation, frontend, sources.noise_pixels)
        out[images] = image_features(pixels, phases, frontend)
    for i in np.flatnonzero(refs.source != IMAGE):
        audio = _audio(sources, refs.source[i], refs.index[i], refs.start[i], frontend)
        rng = rngs[i]
        if rng is None:
            out[i] = clip_features(audio, frontend)
            continue
        augmented = augment_clip(audio, rng, sources.noise_files, augment)
        if sources.images is None:
            out[i] = clip_features(augmented, frontend)
        else:  # audio made an image first, as the images were
            phase = rng.integers(0, step, 1)
            out[i] = image_features(audio_image(augmented, frontend)[None], phase, frontend)[0]
    for k, generator in enumerate(rngs):  # the masks last, each from its example's generator
        if generator is not None:
            out[k] = mask_features(out[k], generator, augment)
    return out


def raw_cepstra(sources: Sources, refs: Refs, frontend: FrontendConfig) -> np.ndarray:
    """Un-augmented, un-normalised cepstra of examples (images: every ``row_step``-th row
    from row 0), that the normalisation is measured on."""
    out = np.empty((len(refs), frontend.clip_frames, frontend.n_mfcc))
    for i, (source, index, start) in enumerate(zip(refs.source, refs.index, refs.start, strict=True)):
        if source == IMAGE:
            assert sources.images is not None
            rows = sources.images.pixels()[index][:: row_step(frontend)][: frontend.clip_frames]
            out[i] = log_mel_to_cepstra(rows.astype(np.float64)[None], frontend)[0]
        else:
            log_mel = clip_log_mel(_audio(sources, source, index, start, frontend), frontend)
            out[i] = log_mel_to_cepstra(log_mel[None], frontend)[0]
    return out


def on_disk(chunks: Iterable[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Float32 arrays of ``shape`` after the first axis, concatenated into an unnamed
    temporary file and memory-mapped read-only: held by the page cache, not the process."""
    with tempfile.TemporaryFile(prefix="kws-features-") as file:  # the map outlives the file object
        count = 0
        for chunk in chunks:
            file.write(np.ascontiguousarray(chunk, np.float32).tobytes())
            count += len(chunk)
        if not count:
            return np.zeros((0, *shape), np.float32)
        file.flush()
        return np.memmap(file, np.float32, "r", shape=(count, *shape))


_worker_sources: Sources | None = None  # a worker process's copy


def _start_worker(sources: Sources) -> None:
    global _worker_sources
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the training process's to handle
    _worker_sources = sources


def _call(function: Callable[..., np.ndarray], args: tuple[Any, ...]) -> np.ndarray:
    assert _worker_sources is not None
    return function(_worker_sources, *args)


class WorkersClosed(RuntimeError):
    """:meth:`Workers.run` was waiting when the workers were closed."""


class Workers:
    """Processes that compute features from :class:`Sources`; a context manager.

    Parameters
    ----------
    sources : Sources
    processes : int
        Worker processes (0: compute in the calling process).
    """

    def __init__(self, sources: Sources, processes: int) -> None:
        self.sources = sources
        self.processes = processes
        self._closed = threading.Event()
        self._pool = (
            multiprocessing.get_context("spawn").Pool(processes, _start_worker, (sources,))
            if processes
            else None
        )

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()  # before the pool goes: no caller is left waiting on it
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()

    def run(self, function: Callable[..., np.ndarray], *args: Any) -> np.ndarray:
        """``function(sources, *args)`` in a worker (or here), waiting for it.

        Raises :class:`WorkersClosed` in a thread still waiting when the workers are closed
        (a ``tf.data`` thread prefetching a batch when Ctrl-C ends training): a terminated
        pool never answers, and a thread waiting on it forever hung the process at exit.
        """
        if self._pool is None:
            return function(self.sources, *args)
        if self._closed.is_set():
            raise WorkersClosed("the feature workers are closed")
        result = self._pool.apply_async(_call, (function, args))
        while not self._closed.is_set():
            try:
                return result.get(timeout=CLOSED_POLL_S)
            except multiprocessing.TimeoutError:
                continue
        raise WorkersClosed("the feature workers were closed while a batch was being computed")

    def chunks(
        self, function: Callable[..., np.ndarray], refs: Refs, *args: Any, chunk: int = 256
    ) -> Iterator[np.ndarray]:
        """``function(sources, part, *args)`` for ``refs`` ``chunk`` at a time, in order,
        every worker busy."""
        parts = [refs.take(np.arange(s, min(s + chunk, len(refs)))) for s in range(0, len(refs), chunk)]
        if self._pool is None:
            yield from (function(self.sources, part, *args) for part in parts)
        else:
            yield from self._pool.imap(_Bound(function, args), parts)


@dataclass(frozen=True)
class _Bound:
    """``function(sources, part, *args)`` as a picklable one-argument callable for ``imap``."""

    function: Callable[..., np.ndarray]
    args: tuple[Any, ...]

    def __call__(self, part: Refs) -> np.ndarray:
        return _call(self.function, (part, *self.args))


def batch_dataset(
    load: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]],
    count: int,
    x_shape: tuple[int, ...],
    y_shape: tuple[int, ...],
) -> tf.data.Dataset:
    """``count`` batches ``load(k)`` -> (x, y, sample weights), made in parallel and in order.

    ``x_shape`` and ``y_shape`` are one batch's (the weights have ``y_shape``).
    """
    import tensorflow as tf

    def one(k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        x, y, w = tf.numpy_function(lambda i: load(int(i)), [k], (tf.float32, tf.int32, tf.float32))
        return tf.ensure_shape(x, x_shape), tf.ensure_shape(y, y_shape), tf.ensure_shape(w, y_shape)

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF
    )  # sharded by load
    return (
        tf.data.Dataset.range(count)
        .map(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(options)
    )
