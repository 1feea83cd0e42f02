"""Check a model file in Python before any interpreter sees it.

TFLM trusts the flatbuffer it is given: it indexes tensors, buffers and operator codes
without bounds checks and takes every output shape from the file, so one changed byte
can make it read or write outside its arena (unverified, byte mutations of the bundled
models crashed it on 1.9% of tries and LiteRT on 0.2%: README, *Reliability*).
:func:`verify_model` reads the whole file with the schema's Python classes and refuses,
with one line, anything a model written by ``kws train`` would not hold:

- structure: one version-3 model; every subgraph, tensor, buffer, operator-code,
  intermediate, variable-tensor and signature index in range; no external buffers;
- tensors: the types, ranks and sizes kws models use; constant data exactly as long as
  the shape and type say; quantisation with finite positive scales, zero points in
  range, one scale per channel on the quantised dimension;
- operators: only the builtin ops kws models use, with their options; inputs written
  before they are read; each output's shape and type what the op computes from its
  inputs (the shapes TFLM would otherwise take on trust).

GRU models (float only, see :data:`kws.convert.INT8_ARCHS`) use control flow (WHILE)
and a dozen element-wise ops whose output shapes LiteRT computes itself; their
structure is checked, their shapes are not, and :data:`SHAPE_CHECKED_OPS` says which
ops get the full check. The metadata is checked by :class:`kws.artifact.ModelInfo`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from kws.artifact import _BUILTIN_NAMES, ModelError, _builtin_code, unpack_model

Op = schema.BuiltinOperator
Options = schema.BuiltinOptions
Type = schema.TensorType

MAX_SUBGRAPHS = 8  # a GRU model's WHILE loops use 5
MAX_TENSORS = 4096  # per subgraph
MAX_OPERATORS = 1024  # per subgraph
MAX_RANK = 5
MAX_TENSOR_ELEMENTS = 1 << 24  # 64 MB of float32: far above any kws model's largest tensor
MAX_SCALE_EXPONENT = 60  # scales within 2^-60 .. 2^60: real ones are 2^-30 .. 2^10

# The tensor types kws models use, as NumPy reads them from a buffer.
NUMPY_TYPES = {Type.FLOAT32: "<f4", Type.INT32: "<i4", Type.INT16: "<i2", Type.INT8: "i1", Type.BOOL: "?"}
_TYPE_NAMES = {code: name for name, code in vars(Type).items() if not name.startswith("_")}
_ACTIVATIONS = (
    schema.ActivationFunctionType.NONE,
    schema.ActivationFunctionType.RELU,
    schema.ActivationFunctionType.RELU6,
    schema.ActivationFunctionType.RELU_N1_TO_1,
)
_LSTM_INPUTS = 24
# UNIDIRECTIONAL_SEQUENCE_LSTM's inputs as the converter writes a standard cell (no
# peepholes, projection or layer norm): input, 4 input and 4 recurrent weights, 4
# biases, the output and cell states (variables).
_LSTM_INPUT_WEIGHTS = (1, 2, 3, 4)
_LSTM_RECURRENT_WEIGHTS = (5, 6, 7, 8)
_LSTM_BIASES = (12, 13, 14, 15)
_LSTM_OUTPUT_STATE, _LSTM_CELL_STATE = 18, 19
_LSTM_PRESENT = {
    0,
    *_LSTM_INPUT_WEIGHTS,
    *_LSTM_RECURRENT_WEIGHTS,
    *_LSTM_BIASES,
    _LSTM_OUTPUT_STATE,
    _LSTM_CELL_STATE,
}
_LSTM_INT8_INTERMEDIATES = 5


class _Refused(Exception):
    """One reason to refuse the model (becomes a :class:`ModelError` naming the file)."""


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise _Refused(problem)


class _Graph:
    """One subgraph's tensors, with which are constant, variable or written so far."""

    def __init__(self, model: schema.ModelT, graph: schema.SubGraphT, index: int) -> None:
        self.model, self.graph, self.index = model, graph, index
        self.tensors: list[schema.TensorT] = list(graph.tensors or [])
        self.written: set[int] = set()

    def name(self, i: int) -> str:
        raw = self.tensors[i].name
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
        return f"subgraph {self.index} tensor {i} ({text[:40]})"

    def is_constant(self, i: int) -> bool:
        """Whether tensor ``i`` holds data in the file (a weight, bias or shape)."""
        tensor = self.tensors[i]
        data = self.model.buffers[tensor.buffer].data if tensor.buffer else None
        return data is not None and len(data) > 0

    def constant(self, i: int) -> np.ndarray | None:
        """Tensor ``i``'s data as a NumPy array of its type and shape, or None if not constant."""
        if not self.is_constant(i):
            return None
        tensor = self.tensors[i]
        data = self.model.buffers[tensor.buffer].data
        return np.frombuffer(data.tobytes(), dtype=NUMPY_TYPES[tensor.type]).reshape(_shape(tensor))


def _is_text(name: bytes | str | None) -> bool:
    """Whether a name decodes as UTF-8 (LiteRT decodes tensor and signature names)."""
    if not isinstance(name, bytes):
        return True
    try:
        name.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _shape(tensor: schema.TensorT) -> list[int]:
    return [] if tensor.shape is None else [int(n) for n in tensor.shape]


def _check_index(i: int, count: int, what: str) -> None:
    _require(0 <= i < count, f"{what} {i} is out of range (0-{count - 1})")


def _check_model(model: schema.ModelT) -> None:
    _require(model.version == 3, f"schema version {model.version} (TFLite files are version 3)")
    _require(bool(model.subgraphs) and len(model.subgraphs) <= MAX_SUBGRAPHS, "no subgraph, or too many")
    _require(bool(model.buffers), "no buffers")
    _require(not model.externalBuffers and not model.externalBufferGroups, "external buffers")
    for i, buffer in enumerate(model.buffers):
        # Offsets into the file are how models over 2 GB keep their weights; kws models are small.
        _require(not buffer.offset and not buffer.size, f"buffer {i} points outside the flatbuffer")
    first = model.buffers[0].data
    _require(first is None or len(first) == 0, "buffer 0 is not empty (the schema reserves it)")
    codes = model.operatorCodes or []
    for i, code in enumerate(codes):
        builtin = _builtin_code(code)
        _require(
            builtin in OPS,
            f"operator code {i}: {_BUILTIN_NAMES.get(builtin, builtin)} is not an op kws models use",
        )
        _require(1 <= code.version <= 16, f"operator code {i}: version {code.version}")
    for entry in model.metadata or []:
        _require(_is_text(entry.name), "a metadata name not UTF-8")
        _check_index(entry.buffer, len(model.buffers), "metadata buffer")
    for i in model.metadataBuffer if model.metadataBuffer is not None else []:
        _check_index(int(i), len(model.buffers), "metadata buffer")
    for signature in model.signatureDefs or []:
        names = [
            signature.signatureKey,
            *(e.name for e in [*(signature.inputs or []), *(signature.outputs or [])]),
        ]
        _require(all(_is_text(name) for name in names), "a signature name not UTF-8")
        _check_index(signature.subgraphIndex, len(model.subgraphs), "signature subgraph")
        count = len(model.subgraphs[signature.subgraphIndex].tensors or [])
        for entry in [*(signature.inputs or []), *(signature.outputs or [])]:
            _check_index(entry.tensorIndex, count, "signature tensor")


def _check_quantization(graph: _Graph, i: int) -> None:
    tensor = graph.tensors[i]
    q = tensor.quantization
    has_scale = q is not None and q.scale is not None and len(q.scale) > 0
    if tensor.type in (Type.INT8, Type.INT16):
        _require(has_scale, f"{graph.name(i)}: integer tensor without a quantisation scale")
    if not has_scale:
        return
    _require(q.detailsType == schema.QuantizationDetails.NONE, f"{graph.name(i)}: custom quantisation")
    scale = np.asarray(q.scale, dtype=np.float64)
    zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [], dtype=np.int64)
    _require(len(zero) == len(scale), f"{graph.name(i)}: {len(scale)} scales but {len(zero)} zero points")
    finite = np.isfinite(scale) & (scale > 0)
    _require(bool(finite.all()), f"{graph.name(i)}: a quantisation scale that is not a positive number")
    exponents = np.abs(np.log2(scale))
    _require(
        bool((exponents <= MAX_SCALE_EXPONENT).all()), f"{graph.name(i)}: quantisation scale out of range"
    )
    shape = _shape(tensor)
    if len(scale) > 1:
        axis = q.quantizedDimension
        _require(0 <= axis < len(shape), f"{graph.name(i)}: quantised dimension {axis} out of range")
        _require(
            shape[axis] == len(scale), f"{graph.name(i)}: {len(scale)} scales for {shape[axis]} channels"
        )
        _require(not zero.any(), f"{graph.name(i)}: per-channel zero points must be 0")
    if tensor.type == Type.INT8:
        _require(
            bool(((zero >= -128) & (zero <= 127)).all()), f"{graph.name(i)}: int8 zero point out of range"
        )
    elif tensor.type in (Type.INT16, Type.INT32):
        _require(not zero.any(), f"{graph.name(i)}: {_TYPE_NAMES[tensor.type].lower()} zero point must be 0")


def _check_tensors(graph: _Graph) -> None:
    model = graph.model
    _require(0 < len(graph.tensors) <= MAX_TENSORS, f"subgraph {graph.index}: {len(graph.tensors)} tensors")
    for i, tensor in enumerate(graph.tensors):
        _require(_is_text(tensor.name), f"subgraph {graph.index} tensor {i}: name not UTF-8")
        _require(
            tensor.type in NUMPY_TYPES, f"{graph.name(i)}: type {_TYPE_NAMES.get(tensor.type, tensor.type)}"
        )
        shape = _shape(tensor)
        _require(len(shape) <= MAX_RANK, f"{graph.name(i)}: rank {len(shape)}")
        _require(all(n >= 0 for n in shape), f"{graph.name(i)}: negative dimension")
        _require(math.prod(shape) <= MAX_TENSOR_ELEMENTS, f"{graph.name(i)}: {math.prod(shape):,} elements")
        if tensor.shapeSignature is not None and len(tensor.shapeSignature):
            signature = [int(n) for n in tensor.shapeSignature]
            _require(
                len(signature) == len(shape)
                and all(s in (-1, n) for s, n in zip(signature, shape, strict=True)),
                f"{graph.name(i)}: shape signature {signature} does not match shape {shape}",
            )
        _require(tensor.sparsity is None, f"{graph.name(i)}: sparse tensor")
        _require(not tensor.variantTensors, f"{graph.name(i)}: variant tensor")
        _check_index(tensor.buffer, len(model.buffers), f"{graph.name(i)}: buffer")
        data = model.buffers[tensor.buffer].data if tensor.buffer else None
        if data is not None and len(data):
            expected = math.prod(shape) * np.dtype(NUMPY_TYPES[tensor.type]).itemsize
            _require(len(data) == expected, f"{graph.name(i)}: {len(data)} bytes of data for {expected}")
            _require(not tensor.isVariable, f"{graph.name(i)}: a variable tensor with constant data")
            if tensor.type == Type.FLOAT32:
                values = graph.constant(i)
                _require(
                    values is not None and bool(np.isfinite(values).all()), f"{graph.name(i)}: NaN or Inf"
                )
        _check_quantization(graph, i)


def _indices(values: Sequence[int] | np.ndarray | None) -> list[int]:
    return [] if values is None else [int(v) for v in values]


def _check_operators(graph: _Graph, model: schema.ModelT) -> list[tuple[int, list[int], list[int]]]:
    """Check indices, counts, options and data flow; return each op's (code, inputs, outputs)."""
    ops = graph.graph.operators or []
    _require(len(ops) <= MAX_OPERATORS, f"subgraph {graph.index}: {len(ops)} operators")
    count = len(graph.tensors)
    inputs = _indices(graph.graph.inputs)
    outputs = _indices(graph.graph.outputs)
    for i in inputs + outputs:
        _check_index(i, count, f"subgraph {graph.index} input/output tensor")
    _require(len(set(inputs)) == len(inputs), f"subgraph {graph.index}: an input listed twice")
    graph.written = set(inputs)
    found = []
    for n, op in enumerate(ops):
        where = f"subgraph {graph.index} operator {n}"
        _check_index(op.opcodeIndex, len(model.operatorCodes or []), f"{where}: operator code")
        code = _builtin_code(model.operatorCodes[op.opcodeIndex])
        where += f" ({_BUILTIN_NAMES[code]})"
        spec = OPS[code]
        op_inputs, op_outputs = _indices(op.inputs), _indices(op.outputs)
        _require(spec.inputs[0] <= len(op_inputs) <= spec.inputs[1], f"{where}: {len(op_inputs)} inputs")
        _require(spec.outputs[0] <= len(op_outputs) <= spec.outputs[1], f"{where}: {len(op_outputs)} outputs")
        _require(op.builtinOptionsType in spec.options, f"{where}: options of another op")
        _require(
            (op.builtinOptions is None) == (op.builtinOptionsType == Options.NONE),
            f"{where}: options missing",
        )
        _require(op.customOptions is None or len(op.customOptions) == 0, f"{where}: custom options")
        _require(op.builtinOptions2Type == 0 and not op.largeCustomOptionsSize, f"{where}: extra options")
        for i in op_inputs:
            if i == -1:
                continue
            _check_index(i, count, f"{where}: input tensor")
            tensor = graph.tensors[i]
            ready = i in graph.written or tensor.isVariable or graph.is_constant(i)
            _require(ready, f"{where}: reads {graph.name(i)} before anything writes it")
        for i in op_outputs:
            _check_index(i, count, f"{where}: output tensor")
            _require(i not in graph.written, f"{where}: {graph.name(i)} is written twice")
            _require(
                not graph.is_constant(i) and not graph.tensors[i].isVariable, f"{where}: writes a constant"
            )
            graph.written.add(i)
        for i in _indices(op.intermediates):
            _check_index(i, count, f"{where}: intermediate tensor")
        for i in _indices(op.mutatingVariableInputs):
            _require(i in (0, 1), f"{where}: mutating-variable flag {i}")
        found.append((code, op_inputs, op_outputs))
    for i in outputs:
        _require(i in graph.written, f"subgraph {graph.index}: output {graph.name(i)} is never written")
    return found


class _Spec:
    """What one op may look like: input and output counts, its options, its shape check."""

    def __init__(
        self,
        inputs: tuple[int, int],
        outputs: tuple[int, int],
        options: int | tuple[int, ...],
        check: Callable[[_Graph, schema.OperatorT], None] | None = None,
    ) -> None:
        self.inputs, self.outputs, self.check = inputs, outputs, check
        self.options = options if isinstance(options, tuple) else (options,)


def _tensor(graph: _Graph, op: schema.OperatorT, position: int) -> schema.TensorT:
    i = int(op.inputs[position])
    _require(i >= 0, f"required input {position} is missing")
    return graph.tensors[i]


def _const(graph: _Graph, op: schema.OperatorT, position: int, what: str) -> np.ndarray:
    i = int(op.inputs[position])
    values = graph.constant(i) if i >= 0 else None
    _require(values is not None, f"{what} is not a constant")
    assert values is not None
    return values


def _output(graph: _Graph, op: schema.OperatorT, k: int = 0) -> schema.TensorT:
    return graph.tensors[int(op.outputs[k])]


def _expect(tensor: schema.TensorT, shape: Sequence[int], dtype: int, what: str) -> None:
    _require(
        _shape(tensor) == [int(n) for n in shape],
        f"{what} has shape {_shape(tensor)} where {[int(n) for n in shape]} follows from its inputs",
    )
    _require(tensor.type == dtype, f"{what} is {_TYPE_NAMES[tensor.type]}, not {_TYPE_NAMES[dtype]}")


def _activation_type(tensor: schema.TensorT) -> int:
    _require(tensor.type in (Type.INT8, Type.FLOAT32), f"activations of type {_TYPE_NAMES[tensor.type]}")
    return int(tensor.type)


def _bias_type(dtype: int) -> int:
    return Type.INT32 if dtype == Type.INT8 else Type.FLOAT32


def _check_fully_connected(graph: _Graph, op: schema.OperatorT) -> None:
    x, weights = _tensor(graph, op, 0), _tensor(graph, op, 1)
    dtype = _activation_type(x)
    options = op.builtinOptions
    _require(options.fusedActivationFunction in _ACTIVATIONS, "unknown activation")
    _require(options.weightsFormat == schema.FullyConnectedOptionsWeightsFormat.DEFAULT, "shuffled weights")
    _const(graph, op, 1, "the weight matrix")
    w_shape = _shape(weights)
    _require(len(w_shape) == 2 and min(w_shape) > 0, f"weights of shape {w_shape}")
    n_out, n_in = w_shape
    _require(weights.type == dtype, "weights of another type than the input")
    total = math.prod(_shape(x))
    _require(
        len(_shape(x)) >= 1 and total % n_in == 0, f"input {_shape(x)} does not fit {n_in} weights a row"
    )
    if len(op.inputs) > 2 and int(op.inputs[2]) >= 0:
        _const(graph, op, 2, "the bias")
        _expect(_tensor(graph, op, 2), [n_out], _bias_type(dtype), "the bias")
    shape = [*_shape(x)[:-1], n_out] if options.keepNumDims else [total // n_in, n_out]
    _expect(_output(graph, op), shape, dtype, "the output")


def _check_lstm(graph: _Graph, op: schema.OperatorT) -> None:
    options = op.builtinOptions
    _require(
        options.fusedActivationFunction == schema.ActivationFunctionType.TANH, "LSTM activation is not tanh"
    )
    _require(not options.timeMajor and not options.diagonalRecurrentTensors, "time-major or diagonal LSTM")
    _require(not options.asymmetricQuantizeInputs, "hybrid LSTM")
    clips = (options.cellClip, options.projClip)
    _require(all(math.isfinite(c) and c >= 0 for c in clips), "LSTM clip not a non-negative number")
    present = {k for k in range(_LSTM_INPUTS) if int(op.inputs[k]) >= 0}
    _require(present == _LSTM_PRESENT, "LSTM inputs of another cell than the standard one")
    x = _tensor(graph, op, 0)
    dtype = _activation_type(x)
    _require(len(_shape(x)) == 3 and min(_shape(x)) > 0, f"LSTM input of shape {_shape(x)}")
    batch, time, n_in = _shape(x)
    units = _shape(_tensor(graph, op, _LSTM_BIASES[0]))
    _require(len(units) == 1 and units[0] > 0, "LSTM bias of another shape than (units,)")
    (n_units,) = units
    for k in _LSTM_INPUT_WEIGHTS + _LSTM_RECURRENT_WEIGHTS + _LSTM_BIASES:
        _const(graph, op, k, f"LSTM input {k}")
    for k in _LSTM_INPUT_WEIGHTS:
        _expect(_tensor(graph, op, k), [n_units, n_in], dtype, f"LSTM input weights {k}")
    for k in _LSTM_RECURRENT_WEIGHTS:
        _expect(_tensor(graph, op, k), [n_units, n_units], dtype, f"LSTM recurrent weights {k}")
    for k in _LSTM_BIASES:
        _expect(_tensor(graph, op, k), [n_units], _bias_type(dtype), f"LSTM bias {k}")
    for k, state_type in (
        (_LSTM_OUTPUT_STATE, dtype),
        (_LSTM_CELL_STATE, Type.INT16 if dtype == Type.INT8 else dtype),
    ):
        state = _tensor(graph, op, k)
        _require(state.isVariable, f"LSTM state {k} is not a variable tensor")
        _expect(state, [batch, n_units], state_type, f"LSTM state {k}")
    intermediates = _indices(op.intermediates)
    if dtype == Type.INT8:
        _require(
            len(intermediates) == _LSTM_INT8_INTERMEDIATES, f"{len(intermediates)} LSTM intermediates, not 5"
        )
        hidden = graph.tensors[intermediates[-1]]
        _require(hidden.type == Type.INT8 and hidden.quantization is not None, "LSTM hidden scale not int8")
    _expect(_output(graph, op), [batch, time, n_units], dtype, "the LSTM output")


def _check_strided_slice(graph: _Graph, op: schema.OperatorT) -> None:
    x = _tensor(graph, op, 0)
    shape = _shape(x)
    rank = len(shape)
    begin, end, strides = (_const(graph, op, k, f"slice input {k}") for k in (1, 2, 3))
    for values in (begin, end, strides):
        _require(
            values.dtype == np.int32 and values.shape == (rank,),
            "slice bounds of another rank than the input",
        )
    options = op.builtinOptions
    _require(
        not options.ellipsisMask and not options.newAxisMask and not options.offset,
        "slice with masks kws never uses",
    )
    out = []
    for axis, n in enumerate(shape):
        start, stop, stride = int(begin[axis]), int(end[axis]), int(strides[axis])
        _require(stride != 0, "slice stride 0")
        if options.shrinkAxisMask >> axis & 1:
            start += n if start < 0 else 0
            _require(0 <= start < n, "slice index out of range")
            continue
        low, high = (0, n) if stride > 0 else (-1, n - 1)
        start = (low if stride > 0 else high) if options.beginMask >> axis & 1 else start
        stop = (high if stride > 0 else low) if options.endMask >> axis & 1 else stop
        start = min(max(start + n if start < 0 else start, low), high)
        stop = min(max(stop + n if stop < 0 and not options.endMask >> axis & 1 else stop, low), high)
        out.append(max(0, -(-(stop - start) // stride)))
    _expect(_output(graph, op), out, x.type, "the slice")


def _check_softmax(graph: _Graph, op: schema.OperatorT) -> None:
    x = _tensor(graph, op, 0)
    dtype = _activation_type(x)
    beta = op.builtinOptions.beta
    _require(math.isfinite(beta) and beta > 0, "softmax beta not a positive number")
    out = _output(graph, op)
    _expect(out, _shape(x), dtype, "the softmax")
    if dtype == Type.INT8:
        q = out.quantization
        _require(
            q.zeroPoint[0] == -128 and abs(q.scale[0] * 256 - 1) < 1e-6, "int8 softmax output not 1/256, -128"
        )
        # The int8 kernels scale the input by beta x scale x 2^26 and need it above 1 (TFLM aborts).
        _require(beta * x.quantization.scale[0] * 2**26 > 1, "int8 softmax input scale times beta too small")


def _check_reshape(graph: _Graph, op: schema.OperatorT) -> None:
    x, out = _tensor(graph, op, 0), _output(graph, op)
    _require(out.type == x.type, "the reshape changes the type")
    _require(math.prod(_shape(out)) == math.prod(_shape(x)), "reshape changes the number of elements")
    if len(op.inputs) > 1 and int(op.inputs[1]) >= 0:
        target = _const(graph, op, 1, "the new shape")
        _require(target.dtype == np.int32 and target.ndim == 1, "the new shape is not a list of int32")
        known = [int(n) for n in target if n != -1]
        _require(target.size - len(known) <= 1 and all(n >= 0 for n in known), "new shape not valid")
        resolved = [int(n) if n != -1 else math.prod(_shape(x)) // max(1, math.prod(known)) for n in target]
        _require(resolved == _shape(out), f"new shape {resolved} is not the output's {_shape(out)}")
    options = op.builtinOptions
    if options is not None and options.newShape is not None and len(options.newShape):
        _require([int(n) for n in options.newShape] == _shape(out), "reshape option differs from the output")


def _window(size: int, kernel: int, stride: int, dilation: int, padding: int) -> int:
    """Output length of a convolution along one axis (TFLite's SAME / VALID rules)."""
    if padding == schema.Padding.SAME:
        return -(-size // stride)
    effective = (kernel - 1) * dilation + 1
    return max(0, (size - effective + stride) // stride)


def _check_conv(graph: _Graph, op: schema.OperatorT) -> None:
    depthwise = _builtin_code(graph.model.operatorCodes[op.opcodeIndex]) == Op.DEPTHWISE_CONV_2D
    x, weights = _tensor(graph, op, 0), _tensor(graph, op, 1)
    dtype = _activation_type(x)
    options = op.builtinOptions
    _require(options.padding in (schema.Padding.SAME, schema.Padding.VALID), "unknown padding")
    _require(options.fusedActivationFunction in _ACTIVATIONS, "unknown activation")
    steps = (options.strideH, options.strideW, options.dilationHFactor, options.dilationWFactor)
    _require(all(1 <= s <= 64 for s in steps), "stride or dilation out of range")
    _const(graph, op, 1, "the filter")
    x_shape, w_shape = _shape(x), _shape(weights)
    _require(len(x_shape) == 4 and min(x_shape) > 0, f"convolution input of shape {x_shape}")
    _require(len(w_shape) == 4 and min(w_shape) > 0, f"filter of shape {w_shape}")
    _require(weights.type == dtype, "filter of another type than the input")
    batch, height, width, channels = x_shape
    if depthwise:
        _require(w_shape[0] == 1, "depthwise filter not 1 x H x W x C")
        multiplier = options.depthMultiplier
        _require(multiplier >= 1 and channels * multiplier == w_shape[3], "depthwise channels do not match")
        out_channels, axis = w_shape[3], 3
    else:
        _require(w_shape[3] == channels, "filter depth differs from the input's channels")
        out_channels, axis = w_shape[0], 0
    q = weights.quantization
    if dtype == Type.INT8:
        _require(len(q.scale) in (1, out_channels), "filter scales do not match the channels")
        _require(
            len(q.scale) == 1 or q.quantizedDimension == axis, "filter quantised along another dimension"
        )
    if len(op.inputs) > 2 and int(op.inputs[2]) >= 0:
        _const(graph, op, 2, "the bias")
        _expect(_tensor(graph, op, 2), [out_channels], _bias_type(dtype), "the bias")
    rows = _window(height, w_shape[1], options.strideH, options.dilationHFactor, options.padding)
    cols = _window(width, w_shape[2], options.strideW, options.dilationWFactor, options.padding)
    _expect(_output(graph, op), [batch, rows, cols, out_channels], dtype, "the convolution")


def _check_mean(graph: _Graph, op: schema.OperatorT) -> None:
    x = _tensor(graph, op, 0)
    dtype = _activation_type(x)
    shape = _shape(x)
    axes = _const(graph, op, 1, "the axes")
    _require(axes.dtype == np.int32 and axes.ndim <= 1, "axes not int32")
    folded = {int(a) + len(shape) if a < 0 else int(a) for a in axes.reshape(-1)}
    _require(all(0 <= a < len(shape) for a in folded), "mean axis out of range")
    keep = op.builtinOptions.keepDims
    out = [1 if a in folded else n for a, n in enumerate(shape) if keep or a not in folded]
    _expect(_output(graph, op), out, dtype, "the mean")


def _check_while(graph: _Graph, op: schema.OperatorT) -> None:
    options = op.builtinOptions
    for index in (options.condSubgraphIndex, options.bodySubgraphIndex):
        _check_index(index, len(graph.model.subgraphs), "loop subgraph")
        _require(index > graph.index, "a loop that calls its own or an outer subgraph")


_ANY = (0, 64)
OPS: dict[int, _Spec] = {
    # LSTM and DS-CNN models, float and int8: each output's shape is checked.
    Op.FULLY_CONNECTED: _Spec((2, 3), (1, 1), Options.FullyConnectedOptions, _check_fully_connected),
    Op.UNIDIRECTIONAL_SEQUENCE_LSTM: _Spec(
        (_LSTM_INPUTS, _LSTM_INPUTS), (1, 1), Options.UnidirectionalSequenceLSTMOptions, _check_lstm
    ),
    Op.STRIDED_SLICE: _Spec((4, 4), (1, 1), Options.StridedSliceOptions, _check_strided_slice),
    Op.SOFTMAX: _Spec((1, 1), (1, 1), Options.SoftmaxOptions, _check_softmax),
    Op.RESHAPE: _Spec((1, 2), (1, 1), (Options.NONE, Options.ReshapeOptions), _check_reshape),
    Op.CONV_2D: _Spec((2, 3), (1, 1), Options.Conv2DOptions, _check_conv),
    Op.DEPTHWISE_CONV_2D: _Spec((2, 3), (1, 1), Options.DepthwiseConv2DOptions, _check_conv),
    Op.MEAN: _Spec((2, 2), (1, 1), Options.ReducerOptions, _check_mean),
    # Float GRU models (their WHILE loops): structure only.
    Op.WHILE: _Spec(_ANY, _ANY, Options.WhileOptions, _check_while),
    Op.ADD: _Spec((2, 2), (1, 1), (Options.NONE, Options.AddOptions)),
    Op.SUB: _Spec((2, 2), (1, 1), (Options.NONE, Options.SubOptions)),
    Op.MUL: _Spec((2, 2), (1, 1), (Options.NONE, Options.MulOptions)),
    Op.LOGISTIC: _Spec((1, 1), (1, 1), Options.NONE),
    Op.TANH: _Spec((1, 1), (1, 1), Options.NONE),
    Op.CONCATENATION: _Spec((1, 64), (1, 1), (Options.NONE, Options.ConcatenationOptions)),
    Op.GATHER: _Spec((2, 2), (1, 1), (Options.NONE, Options.GatherOptions)),
    Op.LESS: _Spec((2, 2), (1, 1), (Options.NONE, Options.LessOptions)),
    Op.SLICE: _Spec((3, 3), (1, 1), (Options.NONE, Options.SliceOptions)),
    Op.SPLIT: _Spec((2, 2), (1, 64), (Options.NONE, Options.SplitOptions)),
}
# The ops whose output shapes are checked (the LSTM's and DS-CNN's); WHILE's check is of its subgraph indices.
SHAPE_CHECKED_OPS = tuple(
    sorted(_BUILTIN_NAMES[code] for code, spec in OPS.items() if spec.check not in (None, _check_while))
)


def verify_model(data: bytes, source: str = "model") -> schema.ModelT:
    """Check that ``data`` is a model file kws could have written, before an interpreter loads it.

    Parameters
    ----------
    data : bytes
        The model file's contents.
    source : str
        Name for messages (usually the path).

    Returns
    -------
    schema.ModelT
        The parsed model.

    Raises
    ------
    ModelError
        One line naming ``source`` and the first problem found.
    """
    model = unpack_model(data, source)
    try:
        _check_model(model)
        graphs = [_Graph(model, graph, i) for i, graph in enumerate(model.subgraphs)]
        for graph in graphs:
            _check_tensors(graph)
        main = graphs[0]
        _require(
            len(_indices(main.graph.inputs)) == 1 and len(_indices(main.graph.outputs)) == 1,
            "the model must have one input and one output",
        )
        for graph in graphs:
            _check_operators(graph, model)
            for op in graph.graph.operators or []:
                spec = OPS[_builtin_code(model.operatorCodes[op.opcodeIndex])]
                if spec.check is not None:
                    try:
                        spec.check(graph, op)
                    except _Refused as e:
                        code = _builtin_code(model.operatorCodes[op.opcodeIndex])
                        raise _Refused(f"subgraph {graph.index} {_BUILTIN_NAMES[code]}: {e}") from None
    except _Refused as e:
        raise ModelError(f"{source}: not a model kws can run safely: {e}") from None
    return model
