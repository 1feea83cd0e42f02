"""Preparing the data of a run: every source indexed by reference, the front-end's
normalisation fitted, and the fixed validation and mining features computed once
(:func:`prepare_data`); the training examples themselves are augmented anew each epoch
by :mod:`kws.inputs`.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.artifact import ModelInfo
from kws.data import SILENCE, UNKNOWN, examples, labels_for, negative_files, scan, split_negatives
from kws.errors import KwsError
from kws.evaluate import NEGATIVE_HOP_SECONDS, window_starts
from kws.features import FrontendConfig, fit_normalisation
from kws.images import cached_images, row_step
from kws.inputs import (
    CLIP,
    IMAGE,
    NEGATIVE,
    ClipTable,
    Refs,
    Sources,
    Workers,
    audio_lengths,
    example_features,
    on_disk,
    raw_cepstra,
)
from kws.progress import bar
from kws.training.config import TrainConfig
from kws.training.mining import mining_windows

# The normalisation is measured on every training image and clip up to these many (a seeded
# choice beyond), and on every training negative recording's first second.
NORMALISATION_IMAGES = 5000
NORMALISATION_CLIPS = 20_000


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

    train_negatives, val_negatives = split_negatives(config.negatives, config.val_negatives, config.keywords)
    noise_files += tuple(f for source in config.backgrounds for f in negative_files(source, ()))
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
            frontend = fit_normalisation(_counted(chunks, len(sample), "normalisation", progress), frontend)

        def features(refs: Refs, what: str) -> np.ndarray:
            parts = workers.chunks(example_features, refs, frontend)
            return on_disk(
                _counted(parts, len(refs), what, progress), (frontend.clip_frames, frontend.n_mfcc)
            )

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
        train_lengths = lengths[: len(train_negatives)]
        mining = mining_windows(train_lengths, n, frontend.sample_rate) if config.hard_negatives else []
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


def _counted(chunks: Iterable[np.ndarray], total: int, desc: str, progress: bool) -> Iterator[np.ndarray]:
    """``chunks`` of examples' arrays, with a bar counting the examples (what a user knows the
    number of), not the chunks."""
    with bar(desc=desc, total=total, unit=" examples", enabled=progress) as shown:
        for chunk in chunks:
            yield chunk
            shown.update(len(chunk))


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
