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
FORMAT_VERSION = 1  # the "kws_format" key; bump when the JSON changes incompatibly
KINDS = ("clip", "step")
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
        Anything else worth keeping with the model (training settings, thresholds);
        must be JSON-serialisable.
    """

    labels: tuple[str, ...]
    frontend: FrontendConfig
    kind: str
    arch: str
    extra: dict[str, Any] = field(default_factory=dict)

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
        thresholds = self.extra.get("thresholds", {}) if isinstance(self.extra, dict) else {}
        if not isinstance(thresholds, dict) or not all(
            label in self.keywords
            and isinstance(t, (int, float))
            and not isinstance(t, bool)
            and 0.0 <= t <= 1.0  # also false for NaN
            for label, t in thresholds.items()
        ):
            problems.append("extra.thresholds must map the model's keywords to probabilities (0 to 1)")
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
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        """Rebuild the info from :meth:`to_dict`'s output; anything else is a :class:`ModelError`."""
        version = d.get("kws_format")
        if version != FORMAT_VERSION:
            raise ModelError(
                f"kws metadata format {version!r} is not supported (this kws reads {FORMAT_VERSION})"
            )
        required = {"labels", "frontend", "kind", "arch"}
        missing = sorted(required - set(d))
        unknown = sorted(set(d) - required - {"kws_format", "extra"})
        if missing or unknown:
            raise ModelError(f"kws metadata: missing keys {missing}, unknown keys {unknown}")
        labels, frontend, extra = d["labels"], d["frontend"], d.get("extra", {})
        if not isinstance(labels, list) or not isinstance(frontend, dict) or not isinstance(extra, dict):
            raise ModelError("kws metadata: labels must be a list, frontend and extra objects")
        try:
            config = FrontendConfig.from_dict(frontend)
        except FrontendError as e:
            raise ModelError(f"kws metadata: {e}") from None
        return cls(labels=tuple(labels), frontend=config, kind=d["kind"], arch=d["arch"], extra=extra)

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


def read_metadata(tflite: bytes, source: str = "model") -> ModelInfo:
    """The :class:`ModelInfo` stored in a model by :func:`embed_metadata`.

    Parameters
    ----------
    tflite : bytes
        The model file's contents.
    source : str
        Name for messages (usually the path).
    """
    model = unpack_model(tflite, source)
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


def tflite_ops(data: bytes, source: str = "model") -> list[str]:
    """Sorted names of the ops a model uses, read from the flatbuffer (no interpreter).

    Parameters
    ----------
    data : bytes
        The model file's contents.
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
        for op in operators(unpack_model(data, source))
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


def lstm_cell_scales(data: bytes, source: str = "model") -> list[float]:
    """Quantisation scale of each int8 LSTM op's int16 cell state, in op order (empty for float models).

    Parameters
    ----------
    data : bytes
        The model file's contents.
    source : str
        Name for messages.
    """
    return [float(tensor.quantization.scale[0]) for tensor in _lstm_cell_states(unpack_model(data, source))]


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
