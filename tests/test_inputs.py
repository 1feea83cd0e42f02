"""The training input pipeline (kws.inputs): examples by reference, features from worker
processes, batches shared among replicas and machines."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import sleep_in_worker

from kws.augment import AugmentConfig
from kws.inputs import Sources, Workers, WorkersClosed, example_features
from kws.train import TrainConfig, TrainingData, prepare_data
from kws.training.fit import epoch_batches, epoch_examples


@pytest.fixture(scope="module")
def config(small_speech_commands: Path, small_logmel_archive: Path, small_negatives: Path) -> TrainConfig:
    return TrainConfig(
        data=str(small_speech_commands),
        images=str(small_logmel_archive),
        negatives=(str(small_negatives),),
        hard_negatives=5,
        batch_size=32,
    )


@pytest.fixture(scope="module")
def data(config: TrainConfig) -> TrainingData:
    return prepare_data(config, progress=False)


def test_preparing_in_worker_processes_gives_what_one_process_gives(
    config: TrainConfig, data: TrainingData
) -> None:
    parallel = prepare_data(config, progress=False, input_workers=2)
    assert parallel.frontend == data.frontend
    np.testing.assert_array_equal(parallel.val_x, data.val_x)
    np.testing.assert_array_equal(parallel.val_y, data.val_y)
    np.testing.assert_array_equal(parallel.mining_x, data.mining_x)
    np.testing.assert_array_equal(parallel.negative_lengths, data.negative_lengths)
    assert set(data.val_sources) == {"images", "audio", "negatives"}


def test_an_examples_features_do_not_depend_on_the_workers_or_the_batch_it_is_in(
    config: TrainConfig, data: TrainingData
) -> None:
    refs, y = epoch_examples(data, config, epoch=1, hard=data.mining[:3])
    assert len(refs) == len(y) == len(data.train_y) + 3
    assert set(refs.source) == {0, 1, 2}  # images, clips and negative windows
    places = np.random.default_rng(0).permutation(len(refs))[:48]  # images, clips and negatives mixed
    whole = example_features(data.sources, refs.take(places), data.frontend, config.seed, 1, places)
    with Workers(data.sources, 2) as workers:
        parts = [
            workers.run(example_features, refs.take(p), data.frontend, config.seed, 1, p)
            for p in np.array_split(places[::-1], 3)  # another order, other batches, other processes
        ]
    np.testing.assert_array_equal(np.concatenate(parts)[::-1], whole)
    # Augmentation: another epoch gives other features, and both differ from the plain ones.
    other = example_features(data.sources, refs.take(places), data.frontend, config.seed, 2, places)
    plain = example_features(data.sources, refs.take(places), data.frontend)
    assert np.abs(other - whole).mean() > 0.1 and np.abs(plain - whole).mean() > 0.1


def test_replicas_and_machines_share_each_global_batch_without_overlap(
    config: TrainConfig, data: TrainingData
) -> None:
    import tensorflow as tf

    from kws.training.fit import EpochInput

    refs, y = epoch_examples(data, config, epoch=0)
    batches = epoch_batches(len(refs), config, epoch=0)
    assert batches.shape[1:] == (32, 1) and len(batches) == len(refs) // 32
    weights = np.ones(len(data.labels), np.float32)

    def first_batches(pipelines: int, replicas: int, pipeline: int) -> list[tuple[np.ndarray, np.ndarray]]:
        context = tf.distribute.InputContext(pipelines, pipeline, pipelines * replicas)
        with Workers(data.sources, 0) as workers:
            epoch = EpochInput(workers, data, config, 0, refs, y, batches, weights)
            return [
                (x.numpy(), labels.numpy()) for x, labels, _ in epoch.batches_of(context).take(2 * replicas)
            ]

    alone = first_batches(1, 1, 0)
    assert [x.shape for x, _ in alone] == [(32, 49, 10)] * 2
    # Two machines with one replica each: batch k of the epoch is machine 0's k-th half, then machine 1's.
    halves = [first_batches(2, 1, p) for p in (0, 1)]
    # One machine with two replicas: they take the halves in turn.
    turns = first_batches(1, 2, 0)
    for k, (x, labels) in enumerate(alone):
        np.testing.assert_array_equal(np.concatenate([halves[0][k][0], halves[1][k][0]]), x)
        np.testing.assert_array_equal(np.concatenate([halves[0][k][1], halves[1][k][1]]), labels)
        np.testing.assert_array_equal(np.concatenate([turns[2 * k][0], turns[2 * k + 1][0]]), x)
        np.testing.assert_array_equal(labels, y[batches[k, :, 0]])


def test_distribution_settings_that_cannot_work_are_refused_in_one_line(
    config: TrainConfig, data: TrainingData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from kws.errors import KwsError
    from kws.train import fit
    from kws.training.distribute import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(KwsError, match="needs TF_CONFIG on every machine"):
        make_strategy("multiworker")
    with pytest.raises(KwsError, match="choose one of none, mirrored, multiworker"):
        make_strategy("parameter-server")

    class TwoReplicas:  # stands in for a strategy over two devices: refused before it is used
        num_replicas_in_sync = 2

    odd = dataclasses.replace(config, batch_size=33)
    with pytest.raises(KwsError, match="--batch-size 33: the global batch must divide evenly among the 2"):
        fit(odd, data, tmp_path, progress=False, strategy=TwoReplicas())  # type: ignore[arg-type]


def test_closing_the_workers_lets_go_of_a_thread_still_waiting_on_them() -> None:
    """Ctrl-C in training closes the workers while tf.data threads wait for batches: each is let
    go with WorkersClosed. A terminated pool never answers, and a thread left waiting on it
    hung `kws train --input-workers 1` after Ctrl-C, every time."""
    sources = Sources((), (), None, np.zeros((0, 98, 40), np.uint8), (), AugmentConfig())
    raised: list[BaseException] = []

    def wait(workers: Workers) -> None:
        try:
            workers.run(sleep_in_worker, 120.0)
        except BaseException as e:
            raised.append(e)

    with Workers(sources, 1) as workers:
        threads = [threading.Thread(target=wait, args=(workers,), daemon=True) for _ in range(2)]
        for thread in threads:  # one call running in the worker, one queued behind it
            thread.start()
        time.sleep(1.0)
    for thread in threads:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in threads), "a thread still waits on the closed workers"
    assert len(raised) == 2 and all(isinstance(e, WorkersClosed) for e in raised), raised
