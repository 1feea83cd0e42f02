"""Distribution: the ``tf.distribute`` strategy of ``--distribute`` and which process of a
cluster writes the run (the per-replica share of each batch is :class:`kws.training.fit.EpochInput`'s).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from kws.errors import KwsError
from kws.inputs import DISTRIBUTE

if TYPE_CHECKING:
    import tensorflow as tf


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
