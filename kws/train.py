"""Training from Python (the ``train`` extra): the names a program needs, from the stages in
:mod:`kws.training`.

``kws.pipeline.run(TrainConfig(data=...), "runs/x")`` does all that ``kws train`` does;
:func:`prepare_data` and :func:`fit` are its first two stages, for programs that train
their own way.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from kws.training.checkpoint import TrainState
from kws.training.config import TrainConfig
from kws.training.fit import fit
from kws.training.prepare import TrainingData, prepare_data

__all__ = ["TrainConfig", "TrainState", "TrainingData", "fit", "prepare_data"]

# What else kws.train held before its stages became modules, and where each lives now.
_MOVED = {
    "run": "kws.pipeline",  # kws 0.1's; kws.pipeline imports the stages, not this module
    **dict.fromkeys(("CHECKPOINT_DIR", "check_finetune_source", "check_resume"), "kws.training.checkpoint"),
    **dict.fromkeys(("is_chief", "make_strategy"), "kws.training.distribute"),
    **dict.fromkeys(
        (
            "SEQUENCE_SETTLE_S",
            "augmented_features",
            "class_weights",
            "epoch_batches",
            "epoch_examples",
            "learning_rate",
            "sequence_targets",
        ),
        "kws.training.fit",
    ),
    **dict.fromkeys(("MINING_HOP_S", "clip_probabilities", "hard_negatives"), "kws.training.mining"),
    **dict.fromkeys(
        ("NORMALISATION_CLIPS", "NORMALISATION_IMAGES", "calibration_set", "model_info"),
        "kws.training.prepare",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(f"kws.train.{name} is {_MOVED[name]}.{name} now", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'kws.train' has no attribute {name!r}")
