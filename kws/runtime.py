"""One interface over a model in LiteRT, in TFLM, or as the float Keras model.

A :class:`Runner` takes normalised float features and returns float probabilities,
quantising the input and dequantising the output with the model's own parameters when
it is int8. :meth:`Runner.run_clip` always resets the recurrent state first: the fused
LSTM op keeps (h, c) between invokes in LiteRT and TFLM alike, so a clip run on top of
the previous one gives silently wrong results.

Loading a ``.tflite`` needs no TensorFlow; only a Keras ``.h5`` imports it, when loaded.
"""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from tflite_micro.python.tflite_micro import runtime as tflm_runtime

from kws.artifact import (
    H5_METADATA_ATTR,
    MIN_LSTM_CELL_SCALE,
    ModelError,
    ModelInfo,
    lstm_cell_scales,
    read_metadata,
    tflite_ops,
)
from kws.errors import install_command
from kws.features import FrontendConfig
from kws.verify import SHAPE_CHECKED_OPS, verify_model

RUNTIMES = ("litert", "tflm", "keras")
# TFLM needs its tensor arena sized up front; this is generous on the host (the
# firmware sizes its own from print_allocations()).
TFLM_ARENA_BASE = 64 * 1024
TFLM_ARENA_PER_MODEL_BYTE = 10


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float to int8 as TFLite's reference QUANTIZE op does it.

    ``clip(round(x / scale) + zero_point, -128, 127)`` with the division in float32 and
    ties rounded **half away from zero** (``TfLiteRound``, i.e. C's ``roundf``), not
    NumPy's half to even. A C port must do the same to feed the model identical bytes.

    Parameters
    ----------
    x : np.ndarray
        Float values.
    scale : float
        The tensor's quantisation scale.
    zero_point : int
        The tensor's zero point.

    Returns
    -------
    np.ndarray, int8, the shape of ``x``
    """
    scaled = np.asarray(x, dtype=np.float32) / np.float32(scale)
    # In float64, v +- 0.5 is exact for every float32 v, so trunc() rounds ties away from
    # zero without float32's rounding of 0.49999997 + 0.5 to 1. (Plain ufuncs: this runs
    # twice every 20 ms in the detector.)
    wide = scaled.astype(np.float64)
    rounded = np.trunc(wide + np.copysign(0.5, wide))
    return np.minimum(np.maximum(rounded + zero_point, -128), 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Int8 to float as TFLite's reference DEQUANTIZE op does it: ``scale * (q - zero_point)``.

    Parameters
    ----------
    q : np.ndarray
        Quantised values.
    scale : float
        The tensor's quantisation scale.
    zero_point : int
        The tensor's zero point.

    Returns
    -------
    np.ndarray, float32, the shape of ``q``
    """
    return (float(scale) * (np.asarray(q, dtype=np.int32) - zero_point)).astype(np.float32)


def _quantization(path: Path, what: str, details: dict[str, Any]) -> tuple[float, int] | None:
    """(scale, zero point) of an int8 tensor, ``None`` for float32, from LiteRT's or TFLM's tensor details."""
    dtype = np.dtype(details["dtype"])
    if dtype == np.float32:
        return None
    if dtype != np.int8:
        raise ModelError(f"{path}: {what} type {dtype.name} is not supported (float32 or int8 only)")
    params = details["quantization_parameters"]
    return float(params["scales"][0]), int(params["zero_points"][0])


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class Runner(abc.ABC):
    """A model ready to run: features in, probabilities out.

    Attributes
    ----------
    info : ModelInfo
        Labels, front-end, kind and architecture stored in the model file.
    path : Path
        The model file.
    runtime : str
        ``litert``, ``tflm`` or ``keras``.
    input_shape : tuple of int
        The model input, batch included: (1, clip_frames, n_mfcc) or (1, 1, n_mfcc).
    quantized : bool
        Whether the model takes int8 input (its output is int8 too for kws models).
    input_quantization, output_quantization : (float, int) or None
        Scale and zero point of the int8 input and output tensors; None when float.
    model_bytes : bytes
        The ``.tflite`` contents that were verified and loaded, whatever becomes of the
        file later (empty for a Keras model).
    """

    runtime: str
    model_bytes: bytes = b""

    def __init__(
        self,
        path: Path,
        info: ModelInfo,
        input_details: dict[str, Any],
        output_details: dict[str, Any],
    ) -> None:
        """Check the model's tensors against its info.

        Parameters
        ----------
        path : Path
            The model file.
        info : ModelInfo
            Its metadata.
        input_details, output_details : dict
            ``shape`` (batch may be None), ``dtype`` and, for int8,
            ``quantization_parameters`` (``scales``, ``zero_points``) of input 0 and
            output 0, as LiteRT and TFLM describe tensors.
        """
        input_shape = tuple(1 if n is None else int(n) for n in input_details["shape"])
        if input_shape != info.input_shape:
            raise ModelError(
                f"{path}: model input {input_shape} does not match its front-end: a {info.kind} model of "
                f"{info.frontend.n_mfcc} MFCCs ({info.frontend.clip_frames} frames a clip) needs {info.input_shape}"
            )
        n_outputs = int(output_details["shape"][-1])
        if n_outputs != len(info.labels):
            raise ModelError(f"{path}: model has {n_outputs} outputs but {len(info.labels)} labels")
        self.path = path
        self.info = info
        self.input_shape = input_shape
        self.input_quantization = _quantization(path, "input", input_details)
        self.output_quantization = _quantization(path, "output", output_details)
        self.quantized = self.input_quantization is not None

    @abc.abstractmethod
    def reset(self) -> None:
        """Return the recurrent state (LSTM h and c) to zero."""

    def copy(self) -> Runner:
        """Another interpreter of the same loaded bytes, with its own state (the file is not read again)."""
        raise ModelError(f"{self.path}: a {self.runtime} model keeps no state to run a copy of")

    @abc.abstractmethod
    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        """Run one invoke on ``batch`` (input_shape, the model's dtype); return output 0 as is."""

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """Run the model once, on top of whatever state the previous invokes left.

        Parameters
        ----------
        x : np.ndarray, shape ``input_shape[1:]``
            Normalised float features; quantised with the model's input scale and zero
            point when the model is int8.

        Returns
        -------
        np.ndarray, float32, shape (n_labels,)
            Probabilities (dequantised for an int8 model).
        """
        x = np.asarray(x, dtype=np.float32)
        if x.shape != self.input_shape[1:]:
            raise ValueError(f"{self.path}: input must have shape {self.input_shape[1:]}, got {x.shape}")
        batch = x[None]
        if self.input_quantization is not None:
            batch = quantize(batch, *self.input_quantization)
        try:
            out = self._invoke(np.ascontiguousarray(batch)).reshape(-1)
        except RuntimeError as e:  # a kernel that refuses the model's parameters
            raise ModelError(
                f"{self.path}: {self.runtime} failed to run the model: {_first_line(e)}"
            ) from None
        if self.output_quantization is not None:
            return dequantize(out, *self.output_quantization)
        return out.astype(np.float32)

    def run_clip(self, features: np.ndarray) -> np.ndarray:
        """Probabilities for one clip, from a freshly reset state.

        A ``clip`` model sees the whole clip in one invoke; a ``step`` model sees its
        frames one per invoke, in order, and the output after the last frame is returned.

        Parameters
        ----------
        features : np.ndarray, shape (clip_frames, n_mfcc)
            Normalised features of one clip.

        Returns
        -------
        np.ndarray, float32, shape (n_labels,)
        """
        features = np.asarray(features, dtype=np.float32)
        expected = (self.info.frontend.clip_frames, self.info.frontend.n_mfcc)
        if features.shape != expected:
            raise ValueError(f"{self.path}: a clip must have shape {expected}, got {features.shape}")
        self.reset()
        if self.info.kind == "clip":
            return self.invoke(features)
        return [self.invoke(frame[None]) for frame in features][-1]


class LiteRTRunner(Runner):
    """A ``.tflite`` model in LiteRT, with the builtin kernels and no delegate.

    The XNNPACK delegate LiteRT adds by default gains nothing on models this small and
    would run some ops with other kernels than the ones checked against TFLM.
    """

    runtime = "litert"

    def __init__(self, path: Path, data: bytes, info: ModelInfo, model: schema.ModelT | None = None) -> None:
        """``model``: ``data`` already parsed (:func:`kws.artifact.unpack_model`), if the caller has it."""
        self.model_bytes = data
        small = [
            s
            for s in lstm_cell_scales(data if model is None else model, str(path))
            if s < MIN_LSTM_CELL_SCALE
        ]
        if small:
            raise ModelError(
                f"{path}: LiteRT's int8 LSTM computes wrong results for a cell-state scale of 2^{np.log2(small[0]):.0f}; "
                "run it with --runtime tflm, or convert it again (kws.artifact.widen_lstm_cell_scales)"
            )
        try:
            self._interpreter = Interpreter(
                model_content=data,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{path}: LiteRT cannot load the model: {_first_line(e)}") from None
        input_details = self._interpreter.get_input_details()[0]
        output_details = self._interpreter.get_output_details()[0]
        self._input_index = input_details["index"]
        self._output_index = output_details["index"]
        super().__init__(path, info, input_details, output_details)

    def reset(self) -> None:
        self._interpreter.reset_all_variables()

    def copy(self) -> Runner:
        return LiteRTRunner(self.path, self.model_bytes, self.info)

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._input_index, batch)
        self._interpreter.invoke()
        return np.asarray(self._interpreter.get_tensor(self._output_index))


def _tflm_interpreter(data: bytes) -> tflm_runtime.Interpreter:
    """The model in a TFLM interpreter with an arena ample for any kws model."""
    return tflm_runtime.Interpreter.from_bytes(
        data, arena_size=TFLM_ARENA_BASE + TFLM_ARENA_PER_MODEL_BYTE * len(data)
    )


class TFLMRunner(Runner):
    """A ``.tflite`` model in the TensorFlow Lite Micro interpreter (the firmware's kernels)."""

    runtime = "tflm"

    def __init__(self, path: Path, data: bytes, info: ModelInfo, model: schema.ModelT | None = None) -> None:
        """``model``: ``data`` already parsed (:func:`kws.artifact.unpack_model`), if the caller has it."""
        self.model_bytes = data
        unchecked = sorted(
            set(tflite_ops(data if model is None else model, str(path))) - set(SHAPE_CHECKED_OPS)
        )
        if unchecked:
            # TFLM takes output shapes on trust (and loops forever on a GRU model's WHILE).
            raise ModelError(
                f"{path}: TFLM runs the LSTM and DS-CNN models' ops only, not {', '.join(unchecked)}; "
                "run it with --runtime litert"
            )
        try:
            self._interpreter = _tflm_interpreter(data)
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"{path}: TFLM cannot load the model: {_first_line(e)}") from None
        super().__init__(
            path, info, self._interpreter.get_input_details(0), self._interpreter.get_output_details(0)
        )

    def reset(self) -> None:
        self._interpreter.reset()

    def copy(self) -> Runner:
        return TFLMRunner(self.path, self.model_bytes, self.info)

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        self._interpreter.set_input(batch, 0)
        self._interpreter.invoke()
        return np.asarray(self._interpreter.get_output(0))


class KerasRunner(Runner):
    """The float Keras ``.h5`` model written by ``kws train`` (imports TensorFlow)."""

    runtime = "keras"

    def __init__(self, path: Path) -> None:
        needs_tf = f"{path}: running a Keras .h5 model needs TensorFlow ({install_command('train')})"
        try:
            import h5py
        except ImportError:
            raise ModelError(needs_tf) from None
        # The metadata comes first, so a wrong file fails before TensorFlow loads.
        try:
            with h5py.File(path, "r") as f:
                raw = f.attrs.get(H5_METADATA_ATTR)
        except OSError:
            raise ModelError(f"{path}: not an HDF5 Keras model") from None
        if raw is None:
            raise ModelError(f"{path} has no kws metadata: it was not written by `kws train`")
        try:
            info = ModelInfo.from_json(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
        except ModelError as e:
            raise ModelError(f"{path}: {e}") from None
        if info.kind != "clip":
            # A Keras model keeps no state between calls: only whole clips make sense.
            raise ModelError(f"{path}: a Keras model must be a whole-clip model, not {info.kind}")
        try:
            from kws.model import keras  # selects tf-keras before TensorFlow loads
        except ImportError:
            raise ModelError(needs_tf) from None
        self._model = keras.models.load_model(path, compile=False)
        super().__init__(
            path,
            info,
            {"shape": self._model.input_shape, "dtype": np.float32},
            {"shape": self._model.output_shape, "dtype": np.float32},
        )

    def reset(self) -> None:
        """Nothing to reset: each call sees one whole clip."""

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._model(batch, training=False))


def load_runner(path: str | Path, runtime: str = "litert", *, require_int8: bool = False) -> Runner:
    """Load a model file written by ``kws train`` into a runtime.

    Parameters
    ----------
    path : str or Path
        A ``.tflite`` model, or a Keras ``.h5`` model (which always runs in Keras; leave
        ``runtime`` at its default or say ``keras``).
    runtime : {"litert", "tflm", "keras"}
        Where to run a ``.tflite``: LiteRT, or the TFLM interpreter the firmware uses.
    require_int8 : bool
        Refuse a float model (for checks that only make sense on the int8 one).

    Raises
    ------
    ModelError
        One line, starting with the path: missing file, not a TFLite (or HDF5) model, no
        kws metadata, input or output shape that does not match the metadata, float model
        when int8 is required, unknown runtime.
    """
    path = Path(path)
    if runtime not in RUNTIMES:
        raise ModelError(f"{path}: unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if not path.is_file():
        raise ModelError(f"{path}: file not found")
    runner: Runner
    if path.suffix.lower() == ".h5":
        if runtime == "tflm":
            raise ModelError(
                f"{path}: a Keras .h5 model runs in the keras runtime, not tflm; use its .tflite"
            )
        runner = KerasRunner(path)
    elif runtime == "keras":
        raise ModelError(f"{path}: the keras runtime runs .h5 models; run a .tflite with litert or tflm")
    else:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelError(f"{path}: cannot read: {e.strerror}") from None
        runner = runner_from_bytes(data, path, runtime)
    if require_int8 and not runner.quantized:
        raise ModelError(f"{path} is a float model; int8 input is required here")
    return runner


def runner_from_bytes(data: bytes, path: str | Path, runtime: str = "litert") -> Runner:
    """A ``.tflite`` model held in memory (e.g. straight from conversion) in LiteRT or TFLM,
    verified and its metadata read as :func:`load_runner` does for a file.

    Parameters
    ----------
    data : bytes
        The model.
    path : str or Path
        Where it is (or will be) written: the name in messages and :attr:`Runner.path`.
    runtime : {"litert", "tflm"}
    """
    path = Path(path)
    if runtime not in ("litert", "tflm"):
        raise ModelError(f"{path}: a .tflite model runs in litert or tflm, not {runtime!r}")
    model = verify_model(data, str(path))  # before any interpreter sees the bytes
    info = read_metadata(model, str(path))
    return (LiteRTRunner if runtime == "litert" else TFLMRunner)(path, data, info, model)


def check_frontend(info: ModelInfo, frontend: FrontendConfig, source: str = "model") -> None:
    """Raise :class:`ModelError` if features from ``frontend`` are not what the model was trained on.

    Parameters
    ----------
    info : ModelInfo
        The model's metadata.
    frontend : FrontendConfig
        The config the caller computes features with.
    source : str
        Name for the message (usually the model's path).
    """
    differ = [
        f.name
        for f in dataclasses.fields(FrontendConfig)
        if getattr(info.frontend, f.name) != getattr(frontend, f.name)
    ]
    if differ:
        raise ModelError(f"{source}: features differ from the model's front-end in {', '.join(differ)}")


def classify(runner: Runner, audio: np.ndarray) -> tuple[str, float, np.ndarray]:
    """Top label of one clip of audio (fitted to the model's clip length, state reset first).

    Parameters
    ----------
    runner : Runner
        Any model written by ``kws train`` (clip or step).
    audio : np.ndarray
        Float mono samples at the model's sample rate (``kws.load_audio`` gives them).

    Returns
    -------
    label : str
    probability : float
        Of that label.
    probabilities : np.ndarray, shape (n_labels,)
    """
    from kws.features import clip_features

    probabilities = runner.run_clip(clip_features(audio, runner.info.frontend))
    best = int(np.argmax(probabilities))
    return runner.info.labels[best], float(probabilities[best]), probabilities
