"""What a kws model file carries: labels, front-end and model kind, inside the ``.tflite``.

A model written by ``kws train`` holds a TFLite ``Metadata`` entry named ``kws`` whose
buffer is the JSON of :class:`ModelInfo`, so a model is never run with labels or
features it was not trained on. This module reads and writes that entry and inspects
the flatbuffer (ops, LSTM state scales) without an interpreter, and without TensorFlow:
the runtime install has none.

Re-packing a model keeps every weight buffer 16-byte aligned from the start of the file,
as the schema's ``force_align: 16`` asks and TFLM and CMSIS-NN kernels expect (they read
weights in place).
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from kws.errors import KwsError
from kws.features import FrontendConfig, FrontendError
from kws.fileio import parse_json_object

METADATA_NAME = "kws"  # name of the TFLite metadata entry
H5_METADATA_ATTR = "kws_metadata"  # HDF5 root attribute holding the same JSON in a Keras .h5
# The "kws_format" key; bump when the JSON changes incompatibly. 2: the detector's settings
# under "detector" (format 1 kept only thresholds, in extra; still read).
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
KINDS = ("clip", "step")
# The files a training run writes (RUN_DIR/<name>): the Keras model and the TFLite models by key.
KERAS_FILE = "model.h5"
RUN_FILES = {"float": "float.tflite", "int8": "int8.tflite", "int8_step": "int8_step.tflite"}
ARCHITECTURES = ("lstm", "gru", "dscnn")
RECURRENT = ("lstm", "gru")

TFLITE_IDENTIFIER = b"TFL3"
BUFFER_ALIGNMENT = 16
# LiteRT's integer LSTM applies tanh to the int16 cell state only for scales 2^-15..2^-9
# (its ApplyTanh handles 0..6 integer bits); at 2^-16, which the converter picks when the
# calibrated cell state stays within +-0.5, it silently skips the tanh and the outputs
# are garbage. TFLM handles any scale.
MIN_LSTM_CELL_SCALE = 2.0**-15
# Input index of the cell state among UNIDIRECTIONAL_SEQUENCE_LSTM's 24 inputs.
_LSTM_CELL_STATE_INPUT = 19
_BUILTIN_NAMES = {
    code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}


class ModelError(KwsError):
    """A model file that cannot be used: missing, not TFLite, no kws metadata, wrong shape."""


def _is_probability(value: object) -> bool:
    number = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    return number and bool(0.0 <= value <= 1.0)  # type: ignore[operator]  # NaN fails


@dataclass(frozen=True)
class DetectorConfig:
    """How a detector turns a model's posteriors into events: everything but the model.

    A model file stores the settings its thresholds were tuned with (``kws tune``,
    ``kws train``) as :attr:`ModelInfo.detector`; a :class:`kws.stream.Detector` runs
    with them unless told otherwise, and ``kws export`` writes the firmware's from them.
    The defaults are those of ``kws stream`` and ``kws listen`` for a model that stores
    none.

    Parameters
    ----------
    thresholds : float or mapping, optional
        Smoothed probability a keyword must reach: one for all keywords, or per keyword.
        None: those stored in the model file, else ``kws.stream.DEFAULT_THRESHOLD``.
    smoothing : float
        Seconds of posteriors averaged.
    refractory : float
        Seconds of quiet after an event.
    hop_frames : int
        Windowed mode: run the model every this many frames (1 = every 20 ms hop).
    reset_every : int
        Stateful mode: reset each copy of the step model every this many frames (75 =
        1.5 s; 0: one copy, never reset). On a 1-h stream the never-reset state gave 2.3x
        the false alarms at 5 points lower hit rate.
    copies : int
        Stateful mode with ``reset_every``: 2 runs two copies reset ``reset_every // 2``
        frames apart, the posterior from the one with the longer history (no word is cut
        by a reset); 1 runs one copy (half the work: a word across a reset is cut).
    """

    thresholds: float | Mapping[str, float] | None = None
    smoothing: float = 0.06
    refractory: float = 1.0
    hop_frames: int = 1
    reset_every: int = 75
    copies: int = 2

    def __post_init__(self) -> None:
        if self.copies not in (1, 2):
            raise ValueError("copies must be 1 or 2")
        # Written so that NaN fails too.
        if self.hop_frames < 1 or self.reset_every < 0 or not (self.smoothing > 0 and self.refractory >= 0):
            raise ValueError(
                "hop_frames must be at least 1, smoothing positive, reset_every and refractory >= 0"
            )
        t = self.thresholds
        if isinstance(t, Mapping):
            valid = all(isinstance(k, str) and _is_probability(v) for k, v in t.items())
        else:
            valid = t is None or _is_probability(t)
        if not valid:
            raise ValueError("thresholds must be a probability (0 to 1), or map keywords to probabilities")

    def hop(self, info: ModelInfo) -> int:
        """Frames between model runs: ``hop_frames`` for a whole-clip model, 1 for a step model."""
        return 1 if info.kind == "step" else self.hop_frames

    def model_copies(self, info: ModelInfo) -> int:
        """Interpreters of the model the detector runs (2 only for a step model reset in turns)."""
        return 2 if info.kind == "step" and self.reset_every and self.copies == 2 else 1

    def smoothing_window(self, info: ModelInfo) -> int:
        """Posteriors averaged: ``smoothing`` in model runs of the model ``info`` describes."""
        return max(1, round(self.smoothing / (info.frontend.frame_seconds * self.hop(info))))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (what a model file stores under ``detector``)."""
        d = dataclasses.asdict(self)
        t = self.thresholds
        d["thresholds"] = {k: float(v) for k, v in t.items()} if isinstance(t, Mapping) else t
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DetectorConfig:
        """Rebuild the settings from :meth:`to_dict`'s output; anything else is a ValueError."""
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"unknown detector settings {unknown}")
        for name in ("smoothing", "refractory"):
            if name in d and not (isinstance(d[name], (int, float)) and not isinstance(d[name], bool)):
                raise ValueError(f"detector {name} must be a number")
        for name in ("hop_frames", "reset_every", "copies"):
            if name in d and not (isinstance(d[name], int) and not isinstance(d[name], bool)):
                raise ValueError(f"detector {name} must be an integer")
        return cls(**d)


@dataclass(frozen=True)
class ModelInfo:
    """Everything a model file carries besides its weights.

    Parameters
    ----------
    labels : tuple of str
        Class names in output order.
    frontend : FrontendConfig
        The front-end (with its normalisation) the model was trained on.
    kind : {"clip", "step"}
        ``clip``: one whole clip (clip_frames x n_mfcc) per invoke. ``step``: one frame
        per invoke, the LSTM state kept between invokes.
    arch : {"lstm", "gru", "dscnn"}
        Model architecture.
    extra : dict
        Anything else worth keeping with the model (training settings, how the thresholds
        were tuned); must be JSON-serialisable.
    detector : DetectorConfig or None
        The detector settings the model's thresholds were tuned with (None: untuned).
    """

    labels: tuple[str, ...]
    frontend: FrontendConfig
    kind: str
    arch: str
    extra: dict[str, Any] = field(default_factory=dict)
    detector: DetectorConfig | None = None

    def __post_init__(self) -> None:
        problems = []
        if not self.labels or not all(isinstance(label, str) and label for label in self.labels):
            problems.append("labels must be a non-empty list of non-empty strings")
        elif len(set(self.labels)) != len(self.labels):
            problems.append("labels must be unique")
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.arch not in ARCHITECTURES:
            problems.append(f"arch must be one of {', '.join(ARCHITECTURES)}, not {self.arch!r}")
        elif self.kind == "step" and self.arch not in RECURRENT:
            problems.append(f"a step model must be recurrent ({', '.join(RECURRENT)})")
        try:
            json.dumps(self.extra)
        except (TypeError, ValueError):
            problems.append("extra must be JSON-serialisable")
        if isinstance(self.extra, dict) and "thresholds" in self.extra:
            problems.append("thresholds belong in detector, not in extra")
        thresholds = self.detector.thresholds if self.detector is not None else None
        if isinstance(thresholds, Mapping) and not set(thresholds) <= set(self.keywords):
            problems.append("detector.thresholds must name only the model's keywords")
        if problems:
            raise ModelError("invalid model info: " + "; ".join(problems))

    @property
    def keywords(self) -> tuple[str, ...]:
        """The labels a detector reports: every label after ``_silence_`` and ``_unknown_``."""
        return self.labels[2:]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The model input this info implies: (1, clip_frames, n_mfcc), or (1, 1, n_mfcc) for a step model."""
        frames = self.frontend.clip_frames if self.kind == "clip" else 1
        return (1, frames, self.frontend.n_mfcc)

    def with_kind(self, kind: str) -> ModelInfo:
        """Return a copy for another kind of the same model (``clip`` or ``step``)."""
        return dataclasses.replace(self, kind=kind)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict, with the format version under ``kws_format``."""
        return {
            "kws_format": FORMAT_VERSION,
            "labels": list(self.labels),
            "frontend": self.frontend.to_dict(),
            "kind": self.kind,
            "arch": self.arch,
            "extra": dict(self.extra),
        } | ({} if self.detector is None else {"detector": self.detector.to_dict()})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        """Rebuild the info from :meth:`to_dict`'s output, of this format or an older one
        (format 1: thresholds in ``extra``); anything else is a :class:`ModelError`."""
        version = d.get("kws_format")
        if version not in READABLE_FORMATS:
            raise ModelError(
                f"kws metadata format {version!r} is not supported (this kws reads "
                f"{', '.join(map(str, READABLE_FORMATS))})"
            )
        required = {"labels", "frontend", "kind", "arch"}
        optional = {"kws_format", "extra"} | ({"detector"} if version >= 2 else set())
        missing = sorted(required - set(d))
        unknown = sorted(set(d) - required - optional)
        if missing or unknown:
            raise ModelError(f"kws metadata: missing keys {missing}, unknown keys {unknown}")
        labels, frontend, extra = d["labels"], d["frontend"], d.get("extra", {})
        detector = d.get("detector")
        if not isinstance(labels, list) or not isinstance(frontend, dict) or not isinstance(extra, dict):
            raise ModelError("kws metadata: labels must be a list, frontend and extra objects")
        if version == 1 and "thresholds" in extra:  # format 1 kept the tuned thresholds there
            extra = dict(extra)
            detector = {"thresholds": extra.pop("thresholds")}
        if detector is not None and not isinstance(detector, dict):
            raise ModelError("kws metadata: detector must be an object")
        try:
            config = FrontendConfig.from_dict(frontend)
            settings = None if detector is None else DetectorConfig.from_dict(detector)
        except (FrontendError, ValueError, TypeError) as e:
            raise ModelError(f"kws metadata: {e}") from None
        return cls(
            labels=tuple(labels),
            frontend=config,
            kind=d["kind"],
            arch=d["arch"],
            extra=extra,
            detector=settings,
        )

    def to_json(self) -> str:
        """The info as a JSON string (what the model file stores)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        """Rebuild the info from :meth:`to_json`'s output."""
        return cls.from_dict(parse_json_object(text, "kws metadata", ModelError))


class _AlignedBuilder(flatbuffers.Builder):
    """A flatbuffer builder that starts every byte vector on a 16-byte boundary.

    The generated ``BufferT.Pack`` writes weights with ``CreateNumpyVector``, which
    ignores the schema's ``force_align: 16``.
    """

    def CreateNumpyVector(self, x: np.ndarray) -> int:
        if x.dtype == np.uint8:
            # Pad so that the bytes about to be written start on the boundary; the
            # vector's own 4-byte alignment then adds nothing. The builder pads the
            # finished file to a multiple of its largest alignment, so offsets counted
            # from the end (as it builds) are aligned from the start too.
            self.Prep(BUFFER_ALIGNMENT, x.size)
        return super().CreateNumpyVector(x)


def check_tflite(data: bytes, source: str) -> None:
    """Raise :class:`ModelError` unless ``data`` carries the TFLite file identifier.

    Parameters
    ----------
    data : bytes
        File contents.
    source : str
        Name for messages (usually the path).
    """
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(
            f"{source}: not a TensorFlow Lite model (no {TFLITE_IDENTIFIER.decode()} file identifier)"
        )


def unpack_model(data: bytes, source: str) -> schema.ModelT:
    """The whole model as flatbuffer objects; a damaged file is a :class:`ModelError`."""
    check_tflite(data, source)
    try:
        return schema.ModelT.InitFromPackedBuf(data, 0)
    except (struct.error, ValueError, IndexError, TypeError, OverflowError) as e:
        # The flatbuffers library reports offsets out of range in all of these ways.
        raise ModelError(f"{source}: damaged TensorFlow Lite model ({e})") from None


def _parsed(model: bytes | schema.ModelT, source: str) -> schema.ModelT:
    """``model`` parsed (:func:`unpack_model`), unless it already is: callers that hold the
    parsed model (a runner being made) save a parse, about 20 ms for the bundled LSTM."""
    return model if isinstance(model, schema.ModelT) else unpack_model(model, source)


def _pack(model: schema.ModelT) -> bytes:
    builder = _AlignedBuilder(1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def embed_metadata(tflite: bytes, info: ModelInfo) -> bytes:
    """Return the model with ``info`` stored as its ``kws`` metadata entry (added or replaced).

    Parameters
    ----------
    tflite : bytes
        A TFLite model, e.g. straight from the converter.
    info : ModelInfo
        What to store.

    Returns
    -------
    bytes
        The re-packed model: same graph and weights (bit-identical outputs), every
        buffer 16-byte aligned from the start of the file.
    """
    model = unpack_model(tflite, "model")
    buffer = schema.BufferT(data=np.frombuffer(info.to_json().encode("utf-8"), dtype=np.uint8))
    entries = model.metadata or []
    existing = [entry for entry in entries if entry.name == METADATA_NAME.encode()]
    if existing:
        model.buffers[existing[0].buffer] = buffer
    else:
        model.buffers.append(buffer)
        model.metadata = [*entries, schema.MetadataT(name=METADATA_NAME, buffer=len(model.buffers) - 1)]
    return _pack(model)


def read_metadata(tflite: bytes | schema.ModelT, source: str = "model") -> ModelInfo:
    """The :class:`ModelInfo` stored in a model by :func:`embed_metadata`.

    Parameters
    ----------
    tflite : bytes or schema.ModelT
        The model file's contents, or the model parsed (:func:`unpack_model`).
    source : str
        Name for messages (usually the path).
    """
    model = _parsed(tflite, source)
    for entry in model.metadata or []:
        if entry.name == METADATA_NAME.encode():
            data = model.buffers[entry.buffer].data
            text = b"" if data is None else data.tobytes()
            try:
                return ModelInfo.from_json(text.decode("utf-8"))
            except (ModelError, UnicodeDecodeError) as e:
                raise ModelError(f"{source}: {e}") from None
    raise ModelError(f"{source} has no kws metadata: it was not written by `kws train`")


def _builtin_code(code: schema.OperatorCodeT) -> int:
    """The builtin operator code of an operator-code entry."""
    # Codes above 127 live only in builtinCode; files from old converters fill only the
    # deprecated field. The larger of the two is the real one (as TFLite's own reader does).
    return max(code.builtinCode, code.deprecatedBuiltinCode)


@dataclass(frozen=True)
class Operator:
    """One operator of a model, with its tensors (the model's own objects, not copies)."""

    code: int  # builtin operator code (schema.BuiltinOperator)
    custom: str  # the custom op's name; "" for a builtin
    inputs: tuple[schema.TensorT | None, ...]  # None where an optional input is left out
    outputs: tuple[schema.TensorT, ...]

    def shape(self, i: int) -> list[int]:
        """Input ``i``'s shape in Python ints (products of int32 entries could overflow); [] if absent."""
        tensor = self.inputs[i]
        return [] if tensor is None or tensor.shape is None else [int(n) for n in tensor.shape]


def operators(model: schema.ModelT) -> list[Operator]:
    """Every operator of every subgraph, in order."""
    found = []
    for graph in model.subgraphs or []:
        for op in graph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = _builtin_code(code)
            custom = code.customCode.decode() if builtin == schema.BuiltinOperator.CUSTOM else ""
            inputs = tuple(graph.tensors[i] if i >= 0 else None for i in op.inputs)
            found.append(Operator(builtin, custom, inputs, tuple(graph.tensors[i] for i in op.outputs)))
    return found


def tflite_ops(data: bytes | schema.ModelT, source: str = "model") -> list[str]:
    """Sorted names of the ops a model uses, read from the flatbuffer (no interpreter).

    Parameters
    ----------
    data : bytes or schema.ModelT
        The model file's contents, or the model parsed (:func:`unpack_model`).
    source : str
        Name for messages.

    Returns
    -------
    list of str
        Builtin op names as LiteRT reports them (``FULLY_CONNECTED``,
        ``UNIDIRECTIONAL_SEQUENCE_LSTM``, ...); a custom op appears by its custom name.
    """
    names = {
        op.custom or _BUILTIN_NAMES.get(op.code, f"BUILTIN_{op.code}")
        for op in operators(_parsed(data, source))
    }
    return sorted(names)


def _lstm_cell_states(model: schema.ModelT) -> list[schema.TensorT]:
    """The int16 cell-state tensors of the model's quantised LSTM ops."""
    return [
        tensor
        for op in operators(model)
        if op.code == schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM
        and (tensor := op.inputs[_LSTM_CELL_STATE_INPUT]) is not None
        and tensor.type == schema.TensorType.INT16
        and tensor.quantization is not None
    ]


def lstm_cell_scales(data: bytes | schema.ModelT, source: str = "model") -> list[float]:
    """Quantisation scale of each int8 LSTM op's int16 cell state, in op order (empty for float models).

    Parameters
    ----------
    data : bytes or schema.ModelT
        The model file's contents, or the model parsed (:func:`unpack_model`).
    source : str
        Name for messages.
    """
    return [float(tensor.quantization.scale[0]) for tensor in _lstm_cell_states(_parsed(data, source))]


def widen_lstm_cell_scales(tflite: bytes, min_scale: float = MIN_LSTM_CELL_SCALE) -> bytes:
    """Return the model with every LSTM cell-state scale raised to at least ``min_scale``.

    A converted model whose calibrated cell state stayed within +-0.5 gets scale 2^-16,
    which LiteRT's integer LSTM computes wrongly (see :data:`MIN_LSTM_CELL_SCALE`).
    Raising it to 2^-15 doubles the cell state's range and keeps 15 bits for it; both
    runtimes derive the kernel's fixed-point shifts from this scale, so they agree again.

    Parameters
    ----------
    tflite : bytes
        A full-int8 model.
    min_scale : float
        The smallest scale kept (a power of two: the kernels need one).
    """
    model = unpack_model(tflite, "model")
    for tensor in _lstm_cell_states(model):
        tensor.quantization.scale = np.maximum(tensor.quantization.scale, np.float32(min_scale))
    return _pack(model)


def slices_to_reshapes(tflite: bytes) -> bytes:
    """Return the model with every STRIDED_SLICE that keeps all its input's elements
    (a step model's last LSTM output, time axis of length 1) turned into a RESHAPE.

    Same values and quantisation, but TFLM's reshape kernel is about 1 KB of code where
    its strided slice, templated for every type and rank, takes 12 KB of the firmware's flash.

    Parameters
    ----------
    tflite : bytes
        A TFLite model (float or int8).
    """
    model = unpack_model(tflite, "model")
    reshape = None
    for graph in model.subgraphs or []:
        for op in graph.operators or []:
            if _builtin_code(model.operatorCodes[op.opcodeIndex]) != schema.BuiltinOperator.STRIDED_SLICE:
                continue
            source, target = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
            if source.shape is None or target.shape is None or np.prod(source.shape) != np.prod(target.shape):
                continue
            if reshape is None:
                code = schema.OperatorCodeT()
                code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.RESHAPE
                code.version = 1
                model.operatorCodes.append(code)
                reshape = len(model.operatorCodes) - 1
            options = schema.ReshapeOptionsT()
            options.newShape = [int(n) for n in target.shape]
            op.opcodeIndex = reshape
            op.inputs = [op.inputs[0]]
            op.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
            op.builtinOptions = options
    return _pack(model) if reshape is not None else tflite
