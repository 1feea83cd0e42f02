"""What a model costs on a device: read from the flatbuffer or measured in TFLM.

Parameters and multiply-accumulates per invoke, the tensor arena TFLM needs (measured on
the host), the buffers CMSIS-NN's kernels add to it on a Cortex-M, and the size of the C
posterior state: the figures ``kws bench`` reports and ``kws export`` sizes the firmware
with, computed in one place.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from kws.artifact import ModelError, operators, unpack_model
from kws.fileio import cache_dir, write_text_atomic
from kws.runtime import _tflm_interpreter

# The host arena is measured with TFLM's reference kernels. On top of it: what CMSIS-NN's
# kernels (the Cortex-M build) allocate besides (see cmsis_nn_extra_bytes), and this
# fraction for a TFLM version whose kernels keep a little more per op than the host
# wheel's. The host's 64-bit pointers make its own structures larger than a 32-bit
# target's, so the host figure errs on the safe side there.
ARENA_SLACK = 0.10
ARENA_ALIGNMENT = 16
# CMSIS-NN's LSTM keeps a parameter block (cmsis_nn_lstm_params: gate pointers, multipliers
# and shifts) besides the reference kernel's: about 200 bytes with 64-bit pointers.
LSTM_PARAMS_BYTES = 256


@dataclass(frozen=True)
class ModelCost:
    """Size and compute of one invoke, read from the flatbuffer."""

    params: int  # elements of the constant tensors (weights and biases)
    macs: int  # multiply-accumulates of the conv, fully-connected and LSTM ops, per invoke


def model_cost(data: bytes, source: str = "model") -> ModelCost:
    """Parameters and multiply-accumulates per invoke of a TFLite model.

    MACs count the matrix work: FULLY_CONNECTED (rows x inputs x outputs), CONV_2D and
    DEPTHWISE_CONV_2D (output positions x kernel), UNIDIRECTIONAL_SEQUENCE_LSTM (4 gates x
    units x (inputs + units), per time step); element-wise ops are left out.
    """
    model = unpack_model(data, source)
    params = macs = 0
    for graph in model.subgraphs or []:
        for tensor in graph.tensors:
            buffer = model.buffers[tensor.buffer] if tensor.buffer else None
            if buffer is not None and buffer.data is not None and len(buffer.data):
                params += math.prod(int(n) for n in tensor.shape) if tensor.shape is not None else 1
    for op in operators(model):
        out = [int(n) for n in op.outputs[0].shape]
        if op.code == schema.BuiltinOperator.FULLY_CONNECTED:
            n_out, n_in = op.shape(1)
            macs += math.prod(op.shape(0)) // n_in * n_in * n_out
        elif op.code == schema.BuiltinOperator.CONV_2D:
            macs += math.prod(out) * math.prod(op.shape(1)[1:])
        elif op.code == schema.BuiltinOperator.DEPTHWISE_CONV_2D:
            macs += math.prod(out) * math.prod(op.shape(1)[1:3])
        elif op.code == schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM:
            steps = math.prod(op.shape(0)[:-1])  # batch x time
            units, n_in = op.shape(2)  # input-to-forget weights (input-to-input is optional)
            macs += steps * 4 * units * (n_in + units)
    return ModelCost(params, macs)


def cmsis_nn_extra_bytes(data: bytes, source: str = "model") -> int:
    """Arena bytes CMSIS-NN's int8 kernels allocate that TFLM's reference kernels do not.

    Per ``UNIDIRECTIONAL_SEQUENCE_LSTM``: eight int32 vectors of kernel sums (input and
    recurrent weights of the four gates, one value per unit) and ``LSTM_PARAMS_BYTES`` for
    its larger parameter block (measured: TFLM with CMSIS-NN used 5,632 bytes more than
    with the reference kernels for two LSTM(80) layers and a dense layer, on x86-64, where
    this function gives 5,728). Per ``FULLY_CONNECTED``:
    two int32 per output (kernel sums, or the per-channel parameters of its 1x1
    convolution path). Per ``CONV_2D`` and ``DEPTHWISE_CONV_2D``: an im2col buffer of two
    int16 columns of the kernel (4 bytes per kernel element and input channel). Scratch
    buffers share arena space in TFLM's plan, so the sum is an upper bound.

    Parameters
    ----------
    data : bytes
        The model file's contents.
    source : str
        Name for messages.
    """
    extra = 0
    for op in operators(unpack_model(data, source)):
        if op.code == schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM:
            units = op.shape(2)[0]  # input-to-forget weights: (units, inputs)
            extra += 8 * units * 4 + LSTM_PARAMS_BYTES
        elif op.code == schema.BuiltinOperator.FULLY_CONNECTED:
            extra += 2 * op.shape(1)[0] * 4  # weights: (outputs, inputs)
        elif op.code in (schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D):
            _, kernel_h, kernel_w, _ = op.shape(1)
            extra += 4 * op.shape(0)[-1] * kernel_h * kernel_w
    return extra


def arena_bytes(host_bytes: int, cmsis_nn_bytes: int) -> int:
    """``KWS_ARENA_BYTES``: the host arena, CMSIS-NN's buffers and ``ARENA_SLACK``, to 16 bytes.

    Parameters
    ----------
    host_bytes : int
        :func:`tflm_arena_bytes` of the model.
    cmsis_nn_bytes : int
        :func:`cmsis_nn_extra_bytes` of the model.
    """
    total = host_bytes + cmsis_nn_bytes + math.ceil(ARENA_SLACK * host_bytes)
    return -(-total // ARENA_ALIGNMENT) * ARENA_ALIGNMENT


def posterior_state_bytes(labels: int, window: int) -> int:
    """``sizeof(KwsPosterior)`` on a 32-bit ARM target (EABI: doubles 8-byte aligned)."""

    def up8(n: int) -> int:
        return -(-n // 8) * 8

    history_counters_armed = 4 * window * labels + 4 + 4 + labels
    return up8(up8(history_counters_armed) + 8)  # then the double last_event


# Loads a model (stdin) into TFLM with the arena size given and invokes it once. In a
# subprocess: TFLM crashes (segfault) rather than failing cleanly when the arena is short.
_TFLM_PROBE = """
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
i = runtime.Interpreter.from_bytes(sys.stdin.buffer.read(), arena_size=int(sys.argv[1]))
d = i.get_input_details(0)
i.set_input(np.zeros(d["shape"], d["dtype"]), 0)
i.invoke()
"""


def _tflm_runs(data: bytes, arena: int) -> tuple[bool, str]:
    """Whether TFLM runs the model in ``arena`` bytes, and the child's stderr."""
    probe = subprocess.run(
        [sys.executable, "-c", _TFLM_PROBE, str(arena)], input=data, capture_output=True, check=False
    )
    return probe.returncode == 0, probe.stderr.decode(errors="replace")


def _recorded_arena_bytes(data: bytes) -> int:
    """TFLM's recording allocator's "Arena allocation total" after one invoke (fd 2, captured)."""
    interpreter = _tflm_interpreter(data)
    details = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
    interpreter.invoke()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            interpreter.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read().decode(errors="replace")
    found = re.search(r"Arena allocation total (\d+) bytes", text)
    if found is None:
        raise ModelError("TFLM did not report its arena use")
    return int(found.group(1))


def tflm_arena_bytes(data: bytes, step: int = 16) -> int:
    """The smallest tensor arena (a multiple of ``step`` bytes) in which TFLM loads and invokes the model.

    Searched upward from the recording allocator's total (exact for the bundled clip
    models, 1,696 bytes short for the bundled step LSTM) in growing strides, then halved
    back; each probe is a subprocess (a short arena crashes TFLM), so the figure is kept
    in :func:`kws.fileio.cache_dir` by the model's bytes and the TFLM version. This is the
    host figure (64-bit pointers, reference kernels): firmware needs a margin on top
    (``kws export``).
    """
    key = hashlib.sha256(data + f"|{step}|tflite-micro {metadata.version('tflite-micro')}".encode())
    cached = cache_dir() / "arena" / f"{key.hexdigest()[:32]}.txt"
    try:
        return int(cached.read_text())
    except (OSError, ValueError):
        pass
    recorded = _recorded_arena_bytes(data)
    low = (recorded - step) // step * step  # not known to work
    stride = step
    while not (result := _tflm_runs(data, high := low + stride))[0]:
        if high > 16 * recorded + 65536:  # no arena this large is short: something else fails
            last = (result[1].strip().splitlines() or ["no message"])[-1]
            raise ModelError(f"TFLM does not run the model with a {high:,}-byte arena: {last}")
        low, stride = high, stride * 2
    while high - low > step:
        mid = (low + high) // 2 // step * step
        if _tflm_runs(data, mid)[0]:
            high = mid
        else:
            low = mid
    with contextlib.suppress(OSError):  # a cache that cannot be written costs a search next time
        write_text_atomic(cached, str(high))
    return high
