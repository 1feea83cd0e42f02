"""The model verifier: it accepts every model kws writes and refuses damaged ones before an interpreter does."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from helpers import run_kws

from kws.artifact import ModelError, ModelInfo, _pack, embed_metadata, unpack_model
from kws.bundled import MODELS_DIR
from kws.runtime import load_runner
from kws.verify import verify_model

ROOT = Path(__file__).resolve().parents[1]
CLIP = (MODELS_DIR / "lstm_int8.tflite").read_bytes()
LSTM, SLICE, FC, SOFTMAX = 0, 2, 3, 4  # operator positions in the whole-clip LSTM


def test_accepts_every_bundled_model() -> None:
    for path in sorted(MODELS_DIR.glob("*.tflite")):
        verify_model(path.read_bytes(), str(path))


def test_accepts_every_file_kws_train_writes(tiny_run: Path) -> None:
    files = sorted(tiny_run.glob("*.tflite"))
    assert {p.name for p in files} == {"float.tflite", "int8.tflite", "int8_step.tflite"}
    for path in files:
        verify_model(path.read_bytes(), str(path))


def test_gru_models_run_in_litert_and_are_kept_from_tflm(tmp_path: Path) -> None:
    from kws.convert import to_tflite
    from kws.model import build

    lstm = load_runner(MODELS_DIR / "lstm_float.tflite").info
    info = ModelInfo(labels=lstm.labels, frontend=lstm.frontend, kind="clip", arch="gru")
    path = tmp_path / "gru.tflite"
    path.write_bytes(embed_metadata(to_tflite(build("gru", 12, units=8, batch_size=1)), info))
    runner = load_runner(path)
    assert runner.run_clip(np.zeros((49, 10), np.float32)).shape == (12,)
    # Measured: TFLM's WHILE never returns on this model; its output shapes are not checked either.
    with pytest.raises(
        ModelError, match=r"gru.tflite: TFLM runs the LSTM and DS-CNN models' ops only, not .*WHILE"
    ):
        load_runner(path, "tflm")


def _lstm_intermediate(model: schema.ModelT) -> None:
    model.subgraphs[0].operators[LSTM].intermediates[4] = 16420


def _lstm_output_shape(model: schema.ModelT) -> None:
    graph = model.subgraphs[0]
    graph.tensors[graph.operators[LSTM].outputs[0]].shape[2] = 40


def _truncated_weights(model: schema.ModelT) -> None:
    graph = model.subgraphs[0]
    buffer = model.buffers[graph.tensors[graph.operators[FC].inputs[1]].buffer]
    buffer.data = buffer.data[:-1]


def _channel_scales(model: schema.ModelT) -> None:
    graph = model.subgraphs[0]
    q = graph.tensors[graph.operators[FC].inputs[1]].quantization
    q.scale, q.zeroPoint = q.scale[:-1], q.zeroPoint[:-1]


def _nan_scale(model: schema.ModelT) -> None:
    graph = model.subgraphs[0]
    graph.tensors[graph.operators[FC].outputs[0]].quantization.scale[0] = np.nan


def _zero_point(model: schema.ModelT) -> None:
    graph = model.subgraphs[0]
    graph.tensors[graph.operators[FC].outputs[0]].quantization.zeroPoint[0] = 300


def _unknown_op(model: schema.ModelT) -> None:
    code = model.operatorCodes[model.subgraphs[0].operators[SOFTMAX].opcodeIndex]
    code.builtinCode = schema.BuiltinOperator.CONV_3D
    code.deprecatedBuiltinCode = schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES


def _softmax_beta(model: schema.ModelT) -> None:
    model.subgraphs[0].operators[SOFTMAX].builtinOptions.beta = 7e-45


def _input_index(model: schema.ModelT) -> None:
    model.subgraphs[0].operators[FC].inputs[0] = 999


def _order(model: schema.ModelT) -> None:
    ops = model.subgraphs[0].operators
    ops[SLICE], ops[FC] = ops[FC], ops[SLICE]


def _name(model: schema.ModelT) -> None:
    model.subgraphs[0].tensors[0].name = b"\xff\xfe"


def _external(model: schema.ModelT) -> None:
    model.buffers[1].offset, model.buffers[1].size = 1 << 40, 16


def _state_shape(model: schema.ModelT) -> None:
    graph = model.subgraphs[0]
    graph.tensors[graph.operators[LSTM].inputs[19]].shape[1] = 8


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_lstm_intermediate, "intermediate tensor 16420 is out of range"),
        (
            _lstm_output_shape,
            r"the LSTM output has shape \[1, 49, 40\] where \[1, 49, 80\] follows from its inputs",
        ),
        (_truncated_weights, "959 bytes of data for 960"),
        (_channel_scales, "11 scales for 12 channels"),
        (_nan_scale, "a quantisation scale that is not a positive number"),
        (_zero_point, "int8 zero point out of range"),
        (_unknown_op, "CONV_3D is not an op kws models use"),
        (_softmax_beta, "int8 softmax input scale times beta too small"),
        (_input_index, "input tensor 999 is out of range"),
        (_order, "reads .* before anything writes it"),
        (_name, "name not UTF-8"),
        (_external, "buffer 1 points outside the flatbuffer"),
        (_state_shape, r"LSTM state 19 has shape \[1, 8\] where \[1, 80\]"),
    ],
)
def test_refuses_damaged_models_with_one_line(
    damage: Callable[[schema.ModelT], None], message: str, tmp_path: Path
) -> None:
    model = copy.deepcopy(unpack_model(CLIP, "clip"))
    damage(model)
    path = tmp_path / "damaged.tflite"
    path.write_bytes(_pack(model))
    for runtime in ("litert", "tflm"):
        with pytest.raises(ModelError, match=message) as error:
            load_runner(path, runtime)
        assert str(error.value).startswith(f"{path}: not a model kws can run safely: ")
        assert "\n" not in str(error.value)
    result = run_kws("eval", "--model", str(path), "--data", str(ROOT / "kws" / "samples"))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "not a model kws can run safely" in result.stderr


def test_canary_tflm_crashes_on_what_the_verifier_refuses(tmp_path: Path) -> None:
    """Upstream bug, asserted on purpose: TFLM reads an intermediate's index unchecked.

    If a TFLM release checks it and this test fails, the verifier still refuses the
    file (test above); only this canary goes.
    """
    model = copy.deepcopy(unpack_model(CLIP, "clip"))
    _lstm_intermediate(model)
    script = (
        "import sys, numpy as np\n"
        "from tflite_micro.python.tflite_micro import runtime\n"
        "i = runtime.Interpreter.from_bytes(sys.stdin.buffer.read(), arena_size=1 << 20)\n"
        "i.set_input(np.zeros((1, 49, 10), np.int8), 0)\n"
        "i.invoke()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], input=_pack(model), capture_output=True, check=False
    )
    assert result.returncode < 0, f"TFLM now survives this model (exit {result.returncode}): drop this canary"


@pytest.mark.system
def test_fuzzing_the_bundled_models_crashes_nothing(record_property: Callable[[str, object], None]) -> None:
    """At least 3,000 byte mutations over both int8 LSTM files and both runtimes (about a minute)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "fuzz_models.py"), "--mutations", "3000", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report = json.loads(result.stdout)
    total = report["total"]
    record_property(  # the counts go into the CI log, pass or fail (conftest's terminal summary)
        "log",
        f"fuzzing: {report['mutations']} mutations in {report['seconds']} s: {total['refused']} refused "
        f"before an interpreter, reached LiteRT {report['reached']['litert']} and TFLM "
        f"{report['reached']['tflm']} ({total['error']} clean errors, {total['ran']} ran); "
        f"{total['crash']} crashes, {total['hang']} hangs, {total['traceback']} tracebacks",
    )
    assert report["defects"] == [] and result.returncode == 0
    assert report["total"]["crash"] == report["total"]["hang"] == report["total"]["traceback"] == 0
    assert sum(report["total"].values()) == 3000
    for key, outcomes in report["by_model_and_runtime"].items():
        assert outcomes["refused"] > 100 and outcomes["ran"] > 100, (key, outcomes)
