"""Microcontroller export: the C code compiled and run against Python on real data.

The harnesses in tests/firmware/ are built with the system C compiler together with the
exported files; the Cortex-M figures come from a real cross-compile with Debian's
gcc-arm-none-eabi.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from helpers import need

from kws.artifact import DetectorConfig, ModelError, embed_metadata, read_metadata, tflite_ops
from kws.audio import load_audio
from kws.bundled import bundled_model
from kws.export import ExportError, ExportSummary, export, format_summary, op_resolver_header
from kws.features import FRONTENDS, features, fit_clip, fit_normalisation, frame_count
from kws.runtime import load_runner, quantize
from kws.stream import FIRMWARE_COPIES, FIRMWARE_RESET_EVERY, Detection, Detector, PosteriorSmoother, detect
from kws.streams import build_stream

HARNESS = Path(__file__).parent / "firmware"
HOST_CC = ["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]
CORTEX_M4F = ["-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-mthumb"]
ARM_CC = ["arm-none-eabi-gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", *CORTEX_M4F, "-O2", "-c"]
FRONTEND_SOURCES = ["kws_frontend.c", "kws_fft.c", "kws_frontend_tables.c"]
# Per-keyword thresholds stored in the exported model, so that the generated table is used; low
# enough that the test stream brings keywords within the refractory period of each other.
THRESHOLDS = {
    "yes": 0.44,
    "no": 0.64,
    "up": 0.48,
    "down": 0.52,
    "left": 0.4,
    "right": 0.56,
    "on": 0.6,
    "off": 0.48,
    "stop": 0.4,
    "go": 0.56,
}
# MicroMutableOpResolver's method for each op, as tensorflow/lite/micro/micro_mutable_op_resolver.h names them.
TFLM_METHODS = {
    "CONV_2D": "AddConv2D",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "FULLY_CONNECTED": "AddFullyConnected",
    "MEAN": "AddMean",
    "RESHAPE": "AddReshape",
    "SOFTMAX": "AddSoftmax",
    "STRIDED_SLICE": "AddStridedSlice",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
}


@pytest.fixture(scope="module")
def step_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled one-time-step LSTM with per-keyword thresholds and 100 ms of smoothing in its metadata."""
    data = bundled_model("lstm", "int8_step").read_bytes()
    info = dataclasses.replace(
        read_metadata(data), detector=DetectorConfig(thresholds=THRESHOLDS, smoothing=0.1)
    )
    path = tmp_path_factory.mktemp("model") / "step.tflite"
    path.write_bytes(embed_metadata(data, info))
    return path


@pytest.fixture(scope="module")
def exported(step_model: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportSummary:
    return export(step_model, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def bin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bin")


def _build(summary: ExportSummary, harness: str, sources: list[str], out: Path) -> Path:
    """A harness from tests/firmware/ built with exported C files (system cc, C99, warnings as errors)."""
    need("gcc", program="cc")
    exe = out / harness.removesuffix(".c")
    d = summary.out_dir
    command = [*HOST_CC, "-I", str(d), "-o", str(exe), str(HARNESS / harness), *(str(d / s) for s in sources)]
    subprocess.run([*command, "-lm"], check=True)
    return exe


@pytest.fixture(scope="module")
def frontend_host(exported: ExportSummary, bin_dir: Path) -> Path:
    return _build(exported, "frontend_host.c", FRONTEND_SOURCES, bin_dir)


def _c_frontend(exe: Path, audio: np.ndarray, n_mfcc: int, chunk: int, clip: int = 0) -> np.ndarray:
    """The C front-end's frames of ``audio``: records of float32 features ``f`` and int8 inputs ``q``."""
    out = subprocess.run(
        [str(exe), str(chunk), str(clip)],
        input=np.asarray(audio, dtype="<f4").tobytes(),
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(out, dtype=[("f", "<f4", (n_mfcc,)), ("q", "i1", (n_mfcc,))])


def test_c_frontend_matches_python_on_real_clips(
    exported: ExportSummary, frontend_host: Path, test12: Path
) -> None:
    config = exported.info.frontend
    clips = sorted(test12.glob("*/*.wav"))[::2]  # every label, silence included
    audio = [fit_clip(load_audio(p), config) for p in clips]
    c = _c_frontend(frontend_host, np.concatenate(audio), config.n_mfcc, chunk=160, clip=config.clip_samples)
    python = np.concatenate([features(a, config) for a in audio])
    assert len(clips) > 250 and c.shape == (len(clips) * config.clip_frames,)
    assert np.abs(c["f"] - python).max() <= 1e-3
    # The model's own input quantisation, as LiteRT reads it from the file.
    details = Interpreter(model_path=str(exported.model)).get_input_details()[0]["quantization_parameters"]
    expected = quantize(python, float(details["scales"][0]), int(details["zero_points"][0])).astype(int)
    differ = np.abs(c["q"].astype(int) - expected)
    assert (differ == 0).mean() >= 0.99
    assert differ.max() <= 1


@pytest.mark.parametrize("name", sorted(FRONTENDS))
def test_c_frontend_matches_python_for_each_setting(
    name: str, step_model: Path, test12: Path, tmp_path: Path
) -> None:
    """Each shipped front-end setting, put into a model's metadata, is what the exported C computes."""
    clips = sorted(test12.glob("*/*.wav"))[::6]
    setting = FRONTENDS[name]
    audio = [fit_clip(load_audio(p), setting) for p in clips]
    config = fit_normalisation(np.concatenate([features(a, setting) for a in audio]), setting)
    data = step_model.read_bytes()
    model = tmp_path / f"{name}.tflite"
    model.write_bytes(embed_metadata(data, dataclasses.replace(read_metadata(data), frontend=config)))
    summary = export(model, tmp_path / "export")
    exe = _build(summary, "frontend_host.c", FRONTEND_SOURCES, tmp_path)
    c = _c_frontend(exe, np.concatenate(audio), config.n_mfcc, chunk=160, clip=config.clip_samples)
    python = np.concatenate([features(a, config) for a in audio])
    assert len(clips) > 90 and c.shape == (len(clips) * config.clip_frames,)
    assert np.abs(c["f"] - python).max() <= 1e-3


def test_c_frontend_streams_chunks_of_any_size(
    exported: ExportSummary, frontend_host: Path, test12: Path
) -> None:
    config = exported.info.frontend
    audio = np.concatenate([load_audio(p) for p in sorted((test12 / "no").glob("*.wav"))[:4]])[:-123]
    runs = [
        _c_frontend(frontend_host, audio, config.n_mfcc, chunk) for chunk in (1, 7, 333, 4099, len(audio))
    ]
    assert len(runs[0]) == frame_count(len(audio), config) > 150
    for run in runs[1:]:
        assert run.tobytes() == runs[0].tobytes()
    assert np.abs(runs[0]["f"] - features(audio, config)).max() <= 1e-3


def test_c_posterior_events_equal_python_on_a_long_stream(
    exported: ExportSummary, bin_dir: Path, test12: Path
) -> None:
    exe = _build(exported, "posterior_host.c", ["kws_posterior.c", "model_data.c"], bin_dir)
    runner = load_runner(exported.model)
    detector = Detector(runner)  # the defaults `kws stream` uses: two staggered step models
    audio, _ = build_stream(test12, runner.info.labels, minutes=4, seed=3)
    # Keep what the detector's smoother is given: frame number, posterior, time.
    fed: list[tuple[int, np.ndarray, float]] = []
    push = detector.smoother.push

    def recording_push(probabilities: np.ndarray, time: float) -> Detection | None:
        fed.append((detector.frame_count, probabilities, time))
        return push(probabilities, time)

    detector.smoother.push = recording_push  # type: ignore[method-assign]
    python = [(e.label, e.time, e.score) for e in detect(detector, audio)]
    records = b"".join(np.uint32(n).tobytes() + p.astype("<f4").tobytes() for n, p, _ in fed)
    out = subprocess.run([str(exe)], input=records, capture_output=True, check=True).stdout.decode()
    c = [
        (runner.info.labels[int(i)], float(t), float(s))
        for i, t, s in (line.split() for line in out.splitlines())
    ]
    assert len(fed) == frame_count(len(audio), runner.info.frontend)
    assert len(python) >= 30 and len({label for label, _, _ in python}) >= 8
    assert c == python
    # The stream exercises the refractory period: without it, Python gives more events.
    smoother = detector.smoother
    free = PosteriorSmoother(smoother.labels, smoother.keyword_thresholds, smoother.history.maxlen or 1, 0.0)
    assert sum(free.push(p, t) is not None for _, p, t in fed) > len(python)


def test_model_array_is_the_tflite_file_aligned(exported: ExportSummary, bin_dir: Path) -> None:
    exe = _build(exported, "model_data_host.c", ["model_data.c"], bin_dir)
    run = subprocess.run([str(exe)], capture_output=True, check=True)
    assert run.stdout == exported.model.read_bytes()
    assert run.stderr.decode().strip() == "0"  # address modulo 16


def _registered(header: str) -> list[str]:
    # An op registered in both branches of an #if (the LSTM: kws's CMSIS-NN kernel or TFLM's) counts once.
    methods = list(dict.fromkeys(re.findall(r"resolver\.(Add\w+)\(", header)))
    assert f"MicroMutableOpResolver<{len(methods)}>" in header
    return methods


def test_op_resolver_registers_exactly_the_models_ops(exported: ExportSummary) -> None:
    models = {exported.model: (exported.out_dir / "kws_model_ops.h").read_text()}
    dscnn = bundled_model("dscnn", "int8")
    models[dscnn] = op_resolver_header(tflite_ops(dscnn.read_bytes()), dscnn.name)
    for path, header in models.items():
        litert = sorted({op["op_name"] for op in Interpreter(model_path=str(path))._get_ops_details()})
        assert litert == tflite_ops(path.read_bytes())
        assert _registered(header) == [TFLM_METHODS[op] for op in litert]


def _arm_size(objects: list[Path]) -> dict[str, tuple[int, int, int]]:
    """``arm-none-eabi-size`` of each object: name -> (text, data, bss)."""
    out = subprocess.run(
        ["arm-none-eabi-size", *map(str, objects)], capture_output=True, check=True, text=True
    )
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    return {Path(row[5]).stem: (int(row[0]), int(row[1]), int(row[2])) for row in rows}


def test_cortex_m4f_cross_compile_and_memory_figures(exported: ExportSummary, tmp_path: Path) -> None:
    need("gcc-arm-none-eabi", program="arm-none-eabi-gcc")
    need("libnewlib-arm-none-eabi", path="/usr/lib/arm-none-eabi/include/stdint.h")
    d = exported.out_dir
    sources = [d / "kws_fft.c", d / "kws_frontend.c", d / "kws_frontend_tables.c", d / "kws_posterior.c"]
    sources += [d / "model_data.c", HARNESS / "ram_probe.c"]
    objects = []
    for source in sources:
        objects.append(tmp_path / (source.stem + ".o"))
        subprocess.run([*ARM_CC, "-I", str(d), str(source), "-o", str(objects[-1])], check=True)
    size = _arm_size(objects)
    probe = size.pop("ram_probe")
    assert probe[:2] == (0, 0)
    # No hidden state: every exported file is code and constants only.
    assert all(data == bss == 0 for _, data, bss in size.values())
    assert exported.model_bytes <= size["model_data"][0] <= exported.model_bytes + 512
    assert size["kws_frontend_tables"][0] == exported.table_bytes
    for code in ("kws_fft", "kws_frontend", "kws_posterior"):
        assert 100 < size[code][0] < 2048
    # The state structs' sizes on the target, as the README states them.
    nm = subprocess.run(
        ["arm-none-eabi-nm", "-S", str(tmp_path / "ram_probe.o")], capture_output=True, text=True
    )
    symbols = {name: int(n, 16) for _, n, _, name in (line.split() for line in nm.stdout.splitlines())}
    assert symbols["kws_probe_frontend"] == exported.frontend_state_bytes
    assert symbols["kws_probe_posterior"] == exported.posterior_state_bytes


def test_arena_margin_and_readme(exported: ExportSummary) -> None:
    # Two LSTM(80) layers: CMSIS-NN keeps 8 int32 kernel sums per unit and a parameter
    # block; the dense layer 2 int32 per output. Measured with TFLM on x86-64: 5,632 bytes.
    assert exported.cmsis_nn_extra_bytes >= 5632
    assert exported.arena_bytes >= exported.host_arena_bytes + exported.cmsis_nn_extra_bytes
    assert exported.arena_bytes % 16 == 0 and exported.model_copies == FIRMWARE_COPIES == 1
    header = (exported.out_dir / "model_data.h").read_text()
    assert f"#define KWS_RESET_EVERY {FIRMWARE_RESET_EVERY}" in header
    assert "#define KWS_SMOOTHING_WINDOW 5" in header  # the model's stored 0.1 s (default 3 frames)
    readme = (exported.out_dir / "README.md").read_text()
    assert "Cortex-M4F" in readme and not re.search(r"\$[a-z]", readme)  # every placeholder filled
    for figure in (exported.arena_bytes, exported.host_arena_bytes, exported.model_bytes, exported.ram_bytes):
        assert f"{figure:,}" in readme
    assert f"#define KWS_ARENA_BYTES {exported.arena_bytes}" in header
    assert sorted(p.name for p in exported.out_dir.iterdir()) == list(exported.files)
    assert f"{exported.ram_bytes:,} bytes" in format_summary(exported)


def test_export_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="float model"):
        export(bundled_model("lstm", "float"), tmp_path / "out")
    not_a_model = tmp_path / "model.tflite"
    not_a_model.write_text("hello")
    with pytest.raises(ModelError, match="not a TensorFlow Lite model"):
        export(not_a_model, tmp_path / "out")
    with pytest.raises(ExportError, match="not a folder"):
        export(bundled_model("lstm", "int8_step"), not_a_model)
    assert not (tmp_path / "out").exists()


def test_arena_search_is_kept_by_the_models_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kws import footprint

    monkeypatch.setenv("KWS_CACHE_DIR", str(tmp_path))
    probes: list[int] = []
    probe = footprint._tflm_runs
    monkeypatch.setattr(
        footprint, "_tflm_runs", lambda data, arena: probes.append(arena) or probe(data, arena)
    )
    data = bundled_model("lstm", "int8").read_bytes()
    arena = footprint.tflm_arena_bytes(data)
    assert probes and probe(data, arena)[0] and not probe(data, arena - 16)[0]  # the smallest, to 16 bytes
    searched = len(probes)
    assert footprint.tflm_arena_bytes(data) == arena and len(probes) == searched  # from the cache
    (cached,) = (tmp_path / "arena").iterdir()
    cached.write_text("damaged")
    assert footprint.tflm_arena_bytes(data) == arena and len(probes) > searched  # searched again
    assert footprint.tflm_arena_bytes(data, step=32) % 32 == 0  # another key
