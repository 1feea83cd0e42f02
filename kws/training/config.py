"""The one typed input of training: :class:`TrainConfig`, everything that defines a run.

It imports no TensorFlow, so the command line builds its options from these defaults on
the runtime install too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from kws.artifact import RECURRENT
from kws.augment import AugmentConfig
from kws.data import DEFAULT_KEYWORDS
from kws.errors import KwsError
from kws.features import FRONTENDS, FrontendConfig


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
        Sources of non-keyword speech (folders of audio files at any depth, or list files:
        :func:`kws.data.negative_files`), trained on as ``_unknown_``. Without
        ``val_negatives``, a fixed 10% of each source's files (by name hash,
        :func:`kws.data.held_out_negative`) is held out for validation and tuning.
    val_negatives : tuple of str
        Sources of non-keyword speech for validation and threshold tuning only, never
        trained on (a fixed split, by speaker); with them, ``negatives`` are trained on whole.
    backgrounds : tuple of str
        Sources (folders or list files) of more background recordings, such as music, mixed
        into the training audio beside the data set's ``_background_noise_`` (the first 80% of
        each, as for those: :data:`kws.data.NOISE_REGIONS`).
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
    val_negatives: tuple[str, ...] = ()
    backgrounds: tuple[str, ...] = ()
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
        d["val_negatives"] = list(self.val_negatives)
        d["backgrounds"] = list(self.backgrounds)
        d["frontend"] = self.frontend.to_dict()
        return d
