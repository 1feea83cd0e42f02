"""Model definitions (tf-keras): the stacked LSTM, a GRU variant and the DS-CNN peer.

One definition serves whole clips and single frames: :func:`build` with
``frames=clip_frames`` is the model that trains and runs on 1-s clips; with ``frames=1``
and ``batch_size=1`` the same layers (same weight shapes) make the one-time-step model
for streaming, whose converted LSTM op keeps (h, c) between invokes. Weights move
between them with :func:`copy_weights`.

tf-keras (Keras 2) is used, not Keras 3: Keras 3's LSTM crashes the TFLite converter,
and only tf-keras converts to the fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` op.
Importing this module imports TensorFlow: only training and conversion need it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

# Must be set before TensorFlow is imported so tf.keras means tf-keras (Keras 2).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kws.artifact import ARCHITECTURES, RECURRENT
from kws.errors import KwsError, install_command

try:
    import tf_keras as keras
except ModuleNotFoundError as e:  # the runtime install has no TensorFlow
    raise KwsError(
        f"training and Keras models need the train extra ({e.name} is not installed): {install_command('train')}"
    ) from None


def build(
    arch: str,
    n_labels: int,
    frames: int = 49,
    n_mfcc: int = 10,
    *,
    units: int = 64,
    layers: int = 2,
    dropout: float = 0.2,
    batch_size: int | None = None,
    sequences: bool = False,
) -> keras.Model:
    """Build a model from MFCC frames to label probabilities.

    Parameters
    ----------
    arch : {"lstm", "gru", "dscnn"}
        ``lstm``: stacked LSTM (standard cell: no peepholes or projection, the form
        TFLM's CMSIS-NN int8 kernel supports). ``gru``: the same with GRU cells.
        ``dscnn``: Hello Edge's DS-CNN-S (conv 10x4 stride 2, four depthwise-separable
        blocks of 64 channels, average pooling).
    n_labels : int
        Number of output classes.
    frames, n_mfcc : int
        Input shape. Recurrent models may use ``frames=1`` for the streaming step model.
    units, layers : int
        Recurrent width and depth (ignored by ``dscnn``).
    dropout : float
        Dropout on each recurrent layer's input (and before the classifier); inactive
        at inference, so it does not change the converted model.
    batch_size : int or None
        Fixed batch size. Conversion to the fused int8 LSTM needs it fixed (1); with
        ``None`` the converter fails on tensor-list ops.
    sequences : bool
        Recurrent models only: label probabilities at every frame (frames ``None``: any
        length), for training on sequences of several clips with the state carried. The
        weights are the same as the clip model's (:func:`copy_weights` moves them).
    """
    if sequences and arch not in RECURRENT:
        raise ValueError(f"only recurrent models ({', '.join(RECURRENT)}) output a label at every frame")
    inputs = keras.Input((None if sequences else frames, n_mfcc), batch_size=batch_size, name="mfcc")
    if arch in RECURRENT:
        cell = keras.layers.LSTM if arch == "lstm" else keras.layers.GRU
        x = inputs
        for i in range(layers):
            last = i == layers - 1
            x = cell(units, return_sequences=sequences or not last, dropout=dropout, name=f"{arch}_{i}")(x)
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    elif arch == "dscnn":
        x = _dscnn(inputs, frames, n_mfcc, dropout)
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    outputs = keras.layers.Dense(n_labels, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=arch)


def _dscnn(inputs: keras.layers.Layer, frames: int, n_mfcc: int, dropout: float) -> keras.layers.Layer:
    """DS-CNN-S body (Zhang et al. 2017, "Hello Edge"): 64 channels, 4 separable blocks."""
    layers = keras.layers
    x = layers.Reshape((frames, n_mfcc, 1))(inputs)
    x = layers.Conv2D(64, (10, 4), strides=(2, 2), padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Dropout(dropout)(x)
    for _ in range(4):
        x = layers.DepthwiseConv2D((3, 3), padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Conv2D(64, (1, 1), use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dropout(dropout)(x)


def copy_weights(source: keras.Model, target: keras.Model) -> keras.Model:
    """Copy trained weights into a model of the same layers (other input shape or batch size)."""
    target.set_weights(source.get_weights())
    return target


def save_h5(model: keras.Model, path: Path) -> None:
    """Save a whole model (with optimiser state) as HDF5 to a path ending in ``.h5``."""
    with warnings.catch_warnings():
        # tf-keras calls HDF5 legacy; it is chosen here because it carries kws's metadata
        # attribute beside the model and loads without the Keras 3 format.
        warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
        model.save(path)
