"""Trained Keras weights -> the models of a run: float Keras, float TFLite, int8 TFLite (clip and step).

All models come from the same trained weights, copied into fixed-batch models (the int8
LSTM conversion needs a static batch of 1), and each carries its labels and front-end
config (:mod:`kws.artifact`). Needs TensorFlow (the ``train`` extra).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np

from kws.artifact import ModelInfo, embed_metadata, slices_to_reshapes, widen_lstm_cell_scales
from kws.fileio import atomic_path
from kws.model import build, copy_weights, keras, save_h5

import tensorflow as tf  # isort: skip  (after kws.model, which selects tf-keras)


# tf-keras GRU layers crash the TFLite converter in int8 (segfault, TF 2.21), and with
# unroll=True a 2xGRU(64) converts to 492 KB of unrolled ops with float QUANTIZE /
# DEQUANTIZE round trips: not a microcontroller model. GRU runs get float files only.
INT8_ARCHS = ("lstm", "dscnn")


def to_tflite(
    model: keras.Model,
    representative: Callable[[], Iterator[list[np.ndarray]]] | None = None,
    *,
    widen: bool = True,
) -> bytes:
    """Convert a fixed-batch Keras model to TFLite: float, or full int8 when given calibration data.

    Parameters
    ----------
    model : keras.Model
        A model built with ``batch_size=1``.
    representative : callable or None
        Yields ``[input]`` batches of real features for int8 calibration. With it the
        model is fully int8 (int8 input and output, int8 kernels only); without it, float.
    widen : bool
        Widen int8 LSTM cell-state scales below 2^-15 (see below); False gives the
        converter's output as it is.
    """
    # The inference call traced once, saved with only the weights it reads: the converter
    # still sees the Keras LSTM's fusable function (one UNIDIRECTIONAL_SEQUENCE_LSTM op), and
    # skips from_keras_model's full Keras SavedModel (every layer traced for training and
    # inference: 7-9 s a model, against about 1 s). Same tensors, weights, scales and outputs.
    spec = tf.TensorSpec(model.inputs[0].shape, tf.float32, name=model.inputs[0].name.split(":")[0])
    output = model.output_names[0]  # the output's name in the file's signature, as from_keras_model names it
    call = tf.function(lambda x: {output: model(x, training=False)}).get_concrete_function(spec)
    weights = tf.Module()
    weights.variables_read = list(model.variables)  # tracked, so the SavedModel holds them
    converter = tf.lite.TFLiteConverter.from_concrete_functions([call], weights)
    if representative is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # It warns that the int8 input has no float statistics: int8 input is the point.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        data = bytes(converter.convert())
    # LiteRT's int8 LSTM skips its tanh when a cell-state scale comes out at 2^-16 (a
    # cell state calibrated within +-0.5); 2^-15 is computed right by LiteRT and TFLM.
    return widen_lstm_cell_scales(data) if representative is not None and widen else data


def save_keras(model: keras.Model, path: Path, info: ModelInfo) -> None:
    """Save a Keras model as HDF5 with its :class:`ModelInfo` in the root attribute ``kws_metadata``."""
    with atomic_path(path, suffix=".h5") as tmp:
        save_h5(model, tmp)
        with h5py.File(tmp, "a") as f:
            f.attrs["kws_metadata"] = info.to_json()


def convert_models(
    trained: keras.Model,
    info: ModelInfo,
    calibration: np.ndarray,
    *,
    units: int,
    layers: int,
) -> dict[str, bytes]:
    """Every TFLite model of a run from one set of trained weights, in memory.

    Parameters
    ----------
    trained : keras.Model
        The trained model (any batch size).
    info : ModelInfo
        Labels, front-end and architecture; ``kind`` is set per model.
    calibration : np.ndarray, shape (n, frames, n_mfcc)
        Real training features for int8 calibration (a few hundred clips).
    units, layers : int
        The recurrent size the model was built with (to rebuild it with a fixed batch).

    Returns
    -------
    dict
        ``{"float": ..., "int8": ..., "int8_step": ...}``, each ``.tflite`` bytes carrying
        its :class:`ModelInfo` (written as :data:`kws.artifact.RUN_FILES` names them): no int8 models for
        GRU (see ``INT8_ARCHS``), a step model only for the LSTM.
    """
    frames, n_mfcc = calibration.shape[1:]
    clip_info = info.with_kind("clip")
    fixed = copy_weights(
        trained, build(info.arch, len(info.labels), frames, n_mfcc, units=units, layers=layers, batch_size=1)
    )

    def clips() -> Iterator[list[np.ndarray]]:
        for x in calibration:
            yield [x[None].astype(np.float32)]

    models = {"float": embed_metadata(to_tflite(fixed), clip_info)}
    if info.arch in INT8_ARCHS:
        models["int8"] = embed_metadata(to_tflite(fixed, clips), clip_info)
    if info.arch == "lstm":
        step = copy_weights(
            trained, build(info.arch, len(info.labels), 1, n_mfcc, units=units, layers=layers, batch_size=1)
        )

        # The step model's LSTM keeps its state between invokes, so calibration feeds each
        # clip's frames in order: the ranges seen are those of real streams. All the clips:
        # with 100 of 300, TFLM and LiteRT agreed on 99.30% of benchmark clips, with 300 on 99.83%.
        def frames_in_order() -> Iterator[list[np.ndarray]]:
            for x in calibration:
                for frame in x:
                    yield [frame[None, None].astype(np.float32)]

        models["int8_step"] = embed_metadata(
            slices_to_reshapes(to_tflite(step, frames_in_order)), info.with_kind("step")
        )
    return models
