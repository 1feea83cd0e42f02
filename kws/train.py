"""Training from Python (the ``train`` extra): the names a program needs, from the stages in
:mod:`kws.training`.

``kws.pipeline.run(TrainConfig(data=...), "runs/x")`` does all that ``kws train`` does;
:func:`prepare_data` and :func:`fit` are its first two stages, for programs that train
their own way.
"""

from __future__ import annotations

import warnings
from typing import Any

from kws.training.checkpoint import TrainState
from kws.training.config import TrainConfig
from kws.training.fit import fit
from kws.training.prepare import TrainingData, prepare_data

__all__ = ["TrainConfig", "TrainState", "TrainingData", "fit", "prepare_data"]


def __getattr__(name: str) -> Any:
    # kws 0.1's kws.train.run is kws.pipeline.run (which imports the stages, not this module).
    if name == "run":
        from kws import pipeline

        warnings.warn("kws.train.run is kws.pipeline.run now", DeprecationWarning, stacklevel=2)
        return pipeline.run
    raise AttributeError(f"module 'kws.train' has no attribute {name!r}")
