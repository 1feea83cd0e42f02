"""Microcontroller export: the model as a C array, the C front-end's tables and the C sources.

:func:`export` writes into one folder everything a TensorFlow Lite Micro project needs::

    model_data.h/.c            the model as a 16-byte aligned C array, its labels, thresholds,
                               front-end and detector constants, arena size
    kws_frontend_tables.h/.c   window, FFT twiddles, sparse mel filterbank, DCT, mean and std
    kws_model_ops.h            an op resolver registering exactly the model's ops
    kws_*.h/.c/.cc             the C sources of ``kws/firmware_export/``, copied as they are
    README.md                  what each file is, RAM and flash, how to build it in

Every number comes from the model file: its ``kws`` metadata (labels, front-end config,
thresholds), its flatbuffer (ops, quantisation, layer sizes) and the host TFLM
interpreter (arena size). The tables are computed by the same functions as
:mod:`kws.features`, so the C front-end and the Python one share one definition.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template

import numpy as np

from kws.artifact import DetectorConfig, ModelError, ModelInfo, tflite_ops
from kws.errors import KwsError
from kws.features import PIXEL_MAX, PIXEL_SCALE, FrontendConfig, dct_matrix, hann_window, mel_weights
from kws.fileio import UMASK, write_text_atomic
from kws.footprint import (
    ARENA_SLACK,
    arena_bytes,
    cmsis_nn_extra_bytes,
    posterior_state_bytes,
    tflm_arena_bytes,
)
from kws.runtime import load_runner
from kws.stream import FIRMWARE_COPIES, FIRMWARE_RESET_EVERY, REARM_MARGIN, PosteriorSmoother, detector_config

FIRMWARE_DIR = Path(str(files("kws") / "firmware_export"))
# Copied unchanged into every export (the README is filled in from README.template.md).
SOURCES = (
    "kws_fft.h",
    "kws_fft.c",
    "kws_frontend.h",
    "kws_frontend.c",
    "kws_posterior.h",
    "kws_posterior.c",
    "kws_model.h",
    "kws_model.cc",
    "kws_lstm.h",
    "kws_lstm.cc",
    "kws_example_main.cc",
)
GENERATED = (
    "model_data.h",
    "model_data.c",
    "kws_frontend_tables.h",
    "kws_frontend_tables.c",
    "kws_model_ops.h",
    "README.md",
)
# What an export wrote (name -> SHA-256): a later export replaces only files it finds unchanged.
MANIFEST = "kws_export.json"
# Ops with an int8-only TFLM registration (Register_<OP>_INT8), and the header declaring it.
INT8_KERNELS = {
    "FULLY_CONNECTED": "fully_connected",
    "SOFTMAX": "softmax",
    "CONV_2D": "conv",
    "DEPTHWISE_CONV_2D": "depthwise_conv",
    "AVERAGE_POOL_2D": "pooling",
    "MAX_POOL_2D": "pooling",
}
# TFLM's MicroMutableOpResolver method names that are not the op name in CamelCase.
_TFLM_METHODS = {"BATCH_MATMUL": "AddBatchMatMul", "CUMSUM": "AddCumSum", "PADV2": "AddPadV2"}
_TFLM_UPPER = {"LSTM", "PCAN"}


class ExportError(KwsError):
    """An export that cannot be written (output folder problems)."""


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export` wrote and the memory it needs on the target.

    Attributes
    ----------
    model : Path
        The model exported.
    out_dir : Path
        The folder written.
    files : tuple of str
        Names of the files written in it.
    info : ModelInfo
        The model's metadata.
    ops : tuple of str
        The model's ops (registered in ``kws_model_ops.h``).
    model_bytes : int
        Size of the model array (flash).
    table_bytes : int
        Size of the front-end tables (flash).
    host_arena_bytes : int
        Smallest arena the host TFLM interpreter runs the model in.
    cmsis_nn_extra_bytes : int
        Buffers CMSIS-NN's kernels allocate on top (see :func:`cmsis_nn_extra_bytes`).
    arena_bytes : int
        ``KWS_ARENA_BYTES``: the host figure plus the CMSIS-NN buffers plus ``ARENA_SLACK``.
    model_copies : int
        Interpreters (each with its own arena) the streaming example runs.
    frontend_state_bytes, posterior_state_bytes : int
        ``sizeof(KwsFrontend)`` and ``sizeof(KwsPosterior)`` on a 32-bit target.
    """

    model: Path
    out_dir: Path
    files: tuple[str, ...]
    info: ModelInfo
    ops: tuple[str, ...]
    model_bytes: int
    table_bytes: int
    host_arena_bytes: int
    cmsis_nn_extra_bytes: int
    arena_bytes: int
    model_copies: int
    frontend_state_bytes: int
    posterior_state_bytes: int

    @property
    def ram_bytes(self) -> int:
        """Static RAM of the streaming example: arenas, front-end and posterior state."""
        return self.model_copies * self.arena_bytes + self.frontend_state_bytes + self.posterior_state_bytes


def tflm_method(op: str) -> str:
    """The ``MicroMutableOpResolver`` method that registers a builtin op.

    Parameters
    ----------
    op : str
        Builtin op name as :func:`kws.artifact.tflite_ops` gives it (``FULLY_CONNECTED``).

    Returns
    -------
    str
        ``AddFullyConnected``, ``AddConv2D``, ``AddUnidirectionalSequenceLSTM``...
    """
    if op in _TFLM_METHODS:
        return _TFLM_METHODS[op]
    words = [w if w in _TFLM_UPPER else w.capitalize() for w in op.split("_")]
    return "Add" + "".join(words).replace("2d", "2D").replace("3d", "3D")


# ---------------------------------------------------------------------------- C text


def _c_float(value: float) -> str:
    """A float32 literal that reads back to exactly ``np.float32(value)`` (9 significant digits;
    ``INFINITY`` for infinity)."""
    if math.isinf(value):
        return "INFINITY" if value > 0 else "-INFINITY"
    text = f"{float(np.float32(value)):.9g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text + "f"


def _c_double(value: float) -> str:
    """A double literal that reads back to exactly ``value`` (``INFINITY`` for infinity)."""
    if math.isinf(value):
        return "INFINITY" if value > 0 else "-INFINITY"
    return repr(float(value))


def _c_int(value: int) -> str:
    """An integer for a macro: parenthesised when negative, so ``x - MACRO`` stays right."""
    return f"({value})" if value < 0 else str(value)


def _c_string(text: str) -> str:
    """A C string literal of ``text`` (UTF-8; anything but printable ASCII as octal escapes)."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _c_items(items: Sequence[str], per_line: int) -> str:
    """Array initialiser items, ``per_line`` a line, indented."""
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "    " + ",\n    ".join(lines)


def _c_array(declaration: str, items: Sequence[str], per_line: int = 8) -> str:
    return f"{declaration} = {{\n{_c_items(items, per_line)}\n}};\n"


def _header(name: str, source: str, includes: str, body: str, *, c_linkage: bool = True) -> str:
    """A generated header: include guard, ``includes``, then ``body`` (with C linkage for C++)."""
    guard = name.upper().replace(".", "_")
    top = f"/* Generated by `kws export` from {source}: do not edit. */\n#ifndef {guard}\n#define {guard}\n\n"
    if includes:
        top += includes + "\n"
    if c_linkage:
        body = f'#ifdef __cplusplus\nextern "C" {{\n#endif\n\n{body}\n#ifdef __cplusplus\n}}\n#endif\n'
    return f"{top}{body}\n#endif /* {guard} */\n"


# ---------------------------------------------------------------------------- generated files


@dataclass(frozen=True)
class FrontendTables:
    """The C front-end's tables, as C initialiser items (``kws_frontend_tables.c``)."""

    window: list[str]
    twiddles: list[str]
    mel_first_bin: list[str]
    mel_bin_count: list[str]
    mel_weights: list[str]
    dct: list[str]
    mean: list[str]
    std: list[str]

    @property
    def flash_bytes(self) -> int:
        """Bytes the tables take in flash (float32 and uint16 arrays, no padding between)."""
        floats = len(self.window) + len(self.twiddles) + len(self.mel_weights) + len(self.dct)
        return 4 * (floats + len(self.mean) + len(self.std)) + 2 * (
            len(self.mel_first_bin) + len(self.mel_bin_count)
        )


def frontend_tables(config: FrontendConfig) -> FrontendTables:
    """The C front-end's tables for ``config``, from :mod:`kws.features`' own functions.

    The mel filterbank is stored sparsely: each band's triangle covers a run of
    consecutive FFT bins (its first bin and count), and only those weights are kept.
    Floats are written with 9 significant digits, so C reads back exactly the float32
    nearest to NumPy's float64 value.

    Parameters
    ----------
    config : FrontendConfig
        The model's front-end; without normalisation, mean 0 and std 1 are written.
    """
    mel = mel_weights(config)
    first, count, weights = [], [], []
    for band in mel:
        nonzero = np.flatnonzero(band)
        start = int(nonzero[0]) if len(nonzero) else 0
        stop = int(nonzero[-1]) + 1 if len(nonzero) else 0
        first.append(str(start))
        count.append(str(stop - start))
        weights += [_c_float(w) for w in band[start:stop]]
    angle = 2.0 * np.pi * np.arange(config.n_fft // 2) / config.n_fft
    twiddles = np.stack([np.cos(angle), -np.sin(angle)], axis=1).reshape(-1)
    mean = np.zeros(config.n_mfcc) if config.mean is None else np.asarray(config.mean)
    std = np.ones(config.n_mfcc) if config.std is None else np.asarray(config.std)
    return FrontendTables(
        window=[_c_float(v) for v in hann_window(config.window_length)],
        twiddles=[_c_float(v) for v in twiddles],
        mel_first_bin=first,
        mel_bin_count=count,
        mel_weights=weights,
        dct=[_c_float(v) for v in dct_matrix(config.n_mfcc, config.n_mels).reshape(-1)],
        mean=[_c_float(v) for v in mean],
        std=[_c_float(v) for v in std],
    )


def _tables_files(tables: FrontendTables, source: str) -> dict[str, str]:
    header = _header(
        "kws_frontend_tables.h",
        source,
        '#include <stdint.h>\n\n#include "model_data.h"\n',
        "/* Periodic Hann window. */\n"
        "extern const float kws_window[KWS_WINDOW_LENGTH];\n"
        "/* exp(-2 pi i k / KWS_FFT_LENGTH) for k < KWS_FFT_LENGTH / 2, as (cos, sin) pairs. */\n"
        "extern const float kws_twiddles[KWS_FFT_LENGTH];\n"
        "/* Mel triangles: band m weighs bins kws_mel_first_bin[m] + j,\n"
        " * j < kws_mel_bin_count[m]; the weights of all bands, band after band. */\n"
        "extern const uint16_t kws_mel_first_bin[KWS_N_MELS];\n"
        "extern const uint16_t kws_mel_bin_count[KWS_N_MELS];\n"
        "extern const float kws_mel_weights[KWS_MEL_WEIGHTS];\n"
        "/* Orthonormal DCT-II, KWS_N_MFCC rows of KWS_N_MELS. */\n"
        "extern const float kws_dct[KWS_N_MFCC * KWS_N_MELS];\n"
        "/* Per-coefficient normalisation measured on the training set. */\n"
        "extern const float kws_mean[KWS_N_MFCC];\n"
        "extern const float kws_std[KWS_N_MFCC];\n",
    )
    body = [
        f"/* Generated by `kws export` from {source}: do not edit. */\n",
        '#include "kws_frontend_tables.h"\n',
        _c_array("const float kws_window[KWS_WINDOW_LENGTH]", tables.window),
        _c_array("const float kws_twiddles[KWS_FFT_LENGTH]", tables.twiddles),
        _c_array("const uint16_t kws_mel_first_bin[KWS_N_MELS]", tables.mel_first_bin, 16),
        _c_array("const uint16_t kws_mel_bin_count[KWS_N_MELS]", tables.mel_bin_count, 16),
        _c_array("const float kws_mel_weights[KWS_MEL_WEIGHTS]", tables.mel_weights),
        _c_array("const float kws_dct[KWS_N_MFCC * KWS_N_MELS]", tables.dct),
        _c_array("const float kws_mean[KWS_N_MFCC]", tables.mean),
        _c_array("const float kws_std[KWS_N_MFCC]", tables.std),
    ]
    return {"kws_frontend_tables.h": header, "kws_frontend_tables.c": "\n".join(body)}


@dataclass(frozen=True)
class _Streaming:
    """The detector's settings the firmware mirrors (from a kws.DetectorConfig)."""

    thresholds: np.ndarray  # per label; infinite for the labels that never fire
    smoothing_window: int
    refractory: float
    frame_seconds: float
    window_seconds: float
    hop_frames: int
    reset_every: int
    copies: int


def _streaming(info: ModelInfo, config: DetectorConfig) -> _Streaming:
    smoother = PosteriorSmoother.from_config(info, config)
    return _Streaming(
        thresholds=smoother.thresholds,
        smoothing_window=smoother.history.maxlen or 1,
        refractory=smoother.refractory,
        frame_seconds=info.frontend.frame_seconds,
        window_seconds=info.frontend.window_ms / 1000,  # as Detector.time
        hop_frames=config.hop(info),
        reset_every=config.reset_every if info.kind == "step" else 0,
        copies=config.model_copies(info),
    )


def _model_data_files(
    data: bytes,
    info: ModelInfo,
    quantization: tuple[tuple[float, int], tuple[float, int]],
    tables: FrontendTables,
    streaming: _Streaming,
    arena: int,
    source: str,
) -> dict[str, str]:
    config = info.frontend
    (input_scale, input_zero_point), (output_scale, output_zero_point) = quantization
    defines = [
        ("KWS_SAMPLE_RATE", str(config.sample_rate), "Hz"),
        ("KWS_WINDOW_LENGTH", str(config.window_length), "samples a frame"),
        ("KWS_HOP_LENGTH", str(config.hop_length), "samples between frames"),
        ("KWS_FFT_LENGTH", str(config.n_fft), "zero-padded FFT size"),
        ("KWS_N_MELS", str(config.n_mels), f"mel bands, {config.fmin:g}-{config.fmax:g} Hz"),
        ("KWS_MEL_WEIGHTS", str(len(tables.mel_weights)), "non-zero filterbank weights"),
        ("KWS_N_MFCC", str(config.n_mfcc), "features a frame"),
        (
            "KWS_LOG_PIXEL",
            str(int(config.log == "pixel")),
            "1: the images' log, min(10 ln(1 + e / floor), 255)",
        ),
        ("KWS_LOG_FLOOR", _c_float(config.log_floor), "ln: mel energies clamped to this; pixel: the bend"),
        ("KWS_PIXEL_SCALE", _c_float(PIXEL_SCALE), "pixel log: pixels per neper"),
        ("KWS_PIXEL_MAX", _c_float(PIXEL_MAX), "pixel log: the largest value (8 bits)"),
        ("KWS_CLIP_FRAMES", str(config.clip_frames), "frames a whole-clip model sees"),
        ("KWS_N_LABELS", str(len(info.labels)), "model outputs"),
        ("KWS_MODEL_IS_STEP", str(int(info.kind == "step")), "1: one frame per invoke, state kept"),
        ("KWS_INPUT_SIZE", str(math.prod(info.input_shape)), "int8 values per invoke"),
        ("KWS_INPUT_SCALE", _c_float(input_scale), "input quantisation"),
        ("KWS_INPUT_ZERO_POINT", _c_int(input_zero_point), ""),
        ("KWS_OUTPUT_SCALE", _c_float(output_scale), "output quantisation"),
        ("KWS_OUTPUT_ZERO_POINT", _c_int(output_zero_point), ""),
        ("KWS_ARENA_BYTES", str(arena), "tensor arena of one interpreter (README.md: how)"),
        ("KWS_MODEL_COPIES", str(streaming.copies), "interpreters the streaming detector runs"),
        ("KWS_RESET_EVERY", str(streaming.reset_every), "frames between resets of a step model copy"),
        ("KWS_HOP_FRAMES", str(streaming.hop_frames), "whole-clip model: frames between runs"),
        ("KWS_SMOOTHING_WINDOW", str(streaming.smoothing_window), "posteriors averaged"),
        ("KWS_REFRACTORY_SECONDS", _c_double(streaming.refractory), "quiet after an event"),
        ("KWS_REARM_MARGIN", _c_float(REARM_MARGIN), "re-armed this far below the threshold"),
        ("KWS_FRAME_SECONDS", _c_double(streaming.frame_seconds), "hop in seconds"),
        ("KWS_WINDOW_SECONDS", _c_double(streaming.window_seconds), "window in seconds"),
    ]
    width = max(len(name) + len(value) for name, value, _ in defines) + 1
    lines = []
    for name, value, comment in defines:
        text = f"#define {name} {value}"
        lines.append(f"{text.ljust(width + 8)} /* {comment} */" if comment else text)
    header = _header(
        "model_data.h",
        source,
        "",
        "\n".join(lines) + "\n\n"
        "/* TFLM reads weights in place and CMSIS-NN expects them 16-byte aligned. */\n"
        "#if defined(__GNUC__) || defined(__clang__)\n"
        "#define KWS_ALIGN16 __attribute__((aligned(16)))\n"
        "#elif defined(_MSC_VER)\n"
        "#define KWS_ALIGN16 __declspec(align(16))\n"
        "#else\n"
        "#define KWS_ALIGN16 _Alignas(16) /* C11 */\n"
        "#endif\n\n"
        "extern const unsigned char kws_model_data[];\n"
        "extern const unsigned int kws_model_data_len;\n"
        "extern const char *const kws_labels[KWS_N_LABELS];\n"
        "/* Smoothed probability each label must reach to fire (INFINITY: never fires). */\n"
        "extern const float kws_thresholds[KWS_N_LABELS];\n",
    )
    body = [
        f"/* Generated by `kws export` from {source}: do not edit. */\n",
        '#include <math.h>\n\n#include "model_data.h"\n',
        _c_array(
            "KWS_ALIGN16 const unsigned char kws_model_data[]", [f"0x{b:02x}" for b in data], per_line=16
        ),
        f"const unsigned int kws_model_data_len = {len(data)};\n",
        _c_array(
            "const char *const kws_labels[KWS_N_LABELS]", [_c_string(label) for label in info.labels], 4
        ),
        _c_array("const float kws_thresholds[KWS_N_LABELS]", [_c_float(t) for t in streaming.thresholds], 4),
    ]
    return {"model_data.h": header, "model_data.c": "\n".join(body)}


def op_resolver_header(ops: Sequence[str], source: str) -> str:
    """``kws_model_ops.h``: a ``MicroMutableOpResolver`` sized for, and registering, exactly ``ops``.

    Parameters
    ----------
    ops : sequence of str
        Builtin op names (:func:`kws.artifact.tflite_ops`).
    source : str
        The model's name, for the header comment.
    """
    adds = ""
    includes = '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n'
    for op in ops:
        # An exported model is full-int8: the int8-only kernels leave the others' code out
        # of the image (CMSIS-NN builds; elsewhere they are the generic kernels).
        kernel = INT8_KERNELS.get(op)
        registration = f"tflite::Register_{op}_INT8()" if kernel else ""
        if kernel and f"kernels/{kernel}.h" not in includes:
            includes += f'#include "tensorflow/lite/micro/kernels/{kernel}.h"\n'
        adds += f"  TF_LITE_ENSURE_STATUS(resolver.{tflm_method(op)}({registration}));\n"
    if "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops:
        # TFLM's CMSIS-NN LSTM forgets the state at every invoke: kws_lstm.h keeps it.
        adds = adds.replace(
            "  TF_LITE_ENSURE_STATUS(resolver.AddUnidirectionalSequenceLSTM());\n",
            "#if defined(CMSIS_NN) && !defined(KWS_REFERENCE_LSTM)\n"
            "  TF_LITE_ENSURE_STATUS(resolver.AddUnidirectionalSequenceLSTM(kws_register_stateful_lstm()));\n"
            "#else\n"
            "  TF_LITE_ENSURE_STATUS(resolver.AddUnidirectionalSequenceLSTM());\n"
            "#endif\n",
        )
        includes += '#include "kws_lstm.h"\n'
    body = (
        f"/* The model's ops: {', '.join(ops)}. */\n"
        f"typedef tflite::MicroMutableOpResolver<{len(ops)}> KwsOpResolver;\n\n"
        "static inline TfLiteStatus kws_register_ops(KwsOpResolver& resolver) {\n"
        f"{adds}"
        "  return kTfLiteOk;\n"
        "}\n"
    )
    return _header("kws_model_ops.h", source, includes, body, c_linkage=False)


def _readme(summary: ExportSummary, streaming: _Streaming, source: str) -> str:
    info, config = summary.info, summary.info.frontend
    keywords = ", ".join(
        f"{label} {t:g}"
        for label, t in zip(info.labels, streaming.thresholds, strict=True)
        if math.isfinite(float(t))
    )
    if info.kind == "step" and not streaming.reset_every:
        mode = "one frame per invoke, the LSTM state kept between invokes, never reset"
    elif info.kind == "step" and streaming.copies == 2:
        mode = (
            f"one frame per invoke, the LSTM state kept between invokes, in 2 copies reset "
            f"{streaming.reset_every // 2} frames apart (each reset every {streaming.reset_every} "
            f"frames), as `kws stream --copies 2 --reset-every {streaming.reset_every}`"
        )
    elif info.kind == "step":
        mode = (
            f"one frame per invoke, the LSTM state kept between invokes and reset every "
            f"{streaming.reset_every} frames, as `kws stream --copies 1 --reset-every {streaming.reset_every}`"
        )
    else:
        mode = (
            f"the whole-clip model run on the last {config.clip_frames} frames every "
            f"{streaming.hop_frames} frame(s), reset before each run, as `kws stream` does"
        )
    template = Template((FIRMWARE_DIR / "README.template.md").read_text(encoding="utf-8"))
    return template.substitute(
        source=source,
        kind=info.kind,
        labels=", ".join(info.labels),
        ops=", ".join(summary.ops),
        mode=mode,
        thresholds=keywords,
        smoothing=streaming.smoothing_window,
        refractory=f"{streaming.refractory:g}",
        model_bytes=f"{summary.model_bytes:,}",
        table_bytes=f"{summary.table_bytes:,}",
        host_arena=f"{summary.host_arena_bytes:,}",
        cmsis_extra=f"{summary.cmsis_nn_extra_bytes:,}",
        slack=f"{ARENA_SLACK:.0%}",
        arena=f"{summary.arena_bytes:,}",
        copies=summary.model_copies,
        arenas=f"{summary.model_copies * summary.arena_bytes:,}",
        frontend_state=f"{summary.frontend_state_bytes:,}",
        posterior_state=f"{summary.posterior_state_bytes:,}",
        ram=f"{summary.ram_bytes:,}",
        sample_rate=config.sample_rate,
        window=config.window_length,
        hop=config.hop_length,
        n_fft=config.n_fft,
        n_mels=config.n_mels,
        n_mfcc=config.n_mfcc,
        firmware=_firmware_paragraph(summary, streaming),
    )


def _firmware_paragraph(summary: ExportSummary, streaming: _Streaming) -> str:
    """What ``kws firmware`` measured for this export on the emulated Cortex-M4F, where the
    bundled model's card holds it for these exact bytes and settings; else how to measure."""
    from kws.bundled import stored_firmware_figures

    default = (streaming.copies, streaming.reset_every) == (FIRMWARE_COPIES, FIRMWARE_RESET_EVERY)
    stored = stored_firmware_figures(summary.model) if default or summary.info.kind != "step" else None
    if stored is None:
        return (
            "Not measured for this export: `kws firmware --model MODEL --tflm TFLM_SOURCES --data "
            "CLIPS` builds it for QEMU's Cortex-M4F board (`mps2-an386`) and reports instructions per "
            "frame and per invoke, flash, RAM and arena, and whether it matches Python."
        )
    f = stored["frame_instructions"]
    shares = " and ".join(
        f"{share:.1%} of a {clock} core" for clock, share in stored["share_of_core"].items()
    )
    return (
        f"Measured by `kws firmware` on QEMU's Cortex-M4F board (`mps2-an386`; "
        f"{stored.get('measured_with', 'see kws')}): {f['total']:,.0f} instructions per "
        f"{stored['frame_seconds'] * 1000:g}-ms frame (front-end {f['frontend']:,.0f}, model "
        f"{f['model']:,.0f} in {stored['invokes_per_frame']:g} invoke(s), posterior {f['posterior']:,.0f}; "
        f"worst frame {f['worst']:,.0f}): {shares} at one instruction per cycle. These are "
        "instructions, not cycles: QEMU models no pipeline or wait states, so a real core needs "
        f"more cycles. The firmware alone (this folder, TFLM with CMSIS-NN kernels built with "
        f"`NDEBUG` and `TF_LITE_STRIP_ERROR_STRINGS`, newlib-nano, start-up code): flash "
        f"{stored['flash_bytes']:,} bytes, RAM {stored['ram_bytes']:,} bytes; tensor arena used on "
        f"the target {stored['arena_used']:,} bytes."
    )


def export(
    model: str | Path,
    out_dir: str | Path,
    *,
    copies: int = FIRMWARE_COPIES,
    reset_every: int = FIRMWARE_RESET_EVERY,
) -> ExportSummary:
    """Write the firmware files for a full-int8 kws model into ``out_dir``.

    Parameters
    ----------
    model : str or Path
        A ``.tflite`` written by ``kws train``: the one-time-step model
        (``int8_step.tflite``) for stateful streaming, or a whole-clip model
        (``int8.tflite``, DS-CNN), which the example runs windowed.
    out_dir : str or Path
        Folder to write into (created if missing). Every file is staged in a temporary
        folder first and moved in by rename, so a failure changes nothing; a same-named
        file is replaced only if an earlier export wrote it and it is unchanged (the
        manifest ``kws_export.json`` records what an export wrote).
    copies, reset_every : int
        A step model's streaming: :class:`kws.stream.Detector`'s settings of the same
        names (by default one copy reset every 100 frames, which fits a quarter of a 64 MHz
        Cortex-M4F; ``kws stream --copies 1 --reset-every 100`` gives the same events).

    Returns
    -------
    ExportSummary

    Raises
    ------
    ModelError
        Missing or unreadable model, no kws metadata, a float model, an op TFLM cannot
        register by name (a custom op).
    ExportError
        ``out_dir`` exists and is not a folder, holds a same-named file that kws export
        did not write (or that was changed since), or cannot be written.
    """
    path = Path(model)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a folder")
    runner = load_runner(path, "tflm", require_int8=True)  # also proves TFLM runs every op
    data = runner.model_bytes  # the bytes verified and loaded, whatever becomes of the file
    info = runner.info
    ops = tuple(tflite_ops(data, str(path)))
    custom = [op for op in ops if not op.isupper()]
    if custom:
        raise ModelError(f"{path}: custom op {custom[0]!r} cannot be registered by kws export")
    if runner.input_quantization is None or runner.output_quantization is None:
        raise ModelError(f"{path}: the model's output is not int8; kws export needs a full-int8 model")
    quantization = (runner.input_quantization, runner.output_quantization)
    cmsis_extra = cmsis_nn_extra_bytes(data, str(path))
    streaming = _streaming(info, detector_config(info, copies=copies, reset_every=reset_every))
    tables = frontend_tables(info.frontend)
    host_arena = tflm_arena_bytes(data)
    summary = ExportSummary(
        model=path,
        out_dir=out,
        files=tuple(sorted((*SOURCES, *GENERATED, MANIFEST))),
        info=info,
        ops=ops,
        model_bytes=len(data),
        table_bytes=tables.flash_bytes,
        host_arena_bytes=host_arena,
        cmsis_nn_extra_bytes=cmsis_extra,
        arena_bytes=arena_bytes(host_arena, cmsis_extra),
        model_copies=streaming.copies,
        frontend_state_bytes=4 * (info.frontend.window_length + info.frontend.n_fft) + 4,
        posterior_state_bytes=posterior_state_bytes(len(info.labels), streaming.smoothing_window),
    )
    source = path.name
    generated = {
        **_model_data_files(data, info, quantization, tables, streaming, summary.arena_bytes, source),
        **_tables_files(tables, source),
        "kws_model_ops.h": op_resolver_header(ops, source),
        "README.md": _readme(summary, streaming, source),
    }
    missing = [name for name in SOURCES if not (FIRMWARE_DIR / name).is_file()]
    if missing:
        raise ExportError(f"{FIRMWARE_DIR / missing[0]} is missing: reinstall kws")
    contents = {name: (FIRMWARE_DIR / name).read_text(encoding="utf-8") for name in SOURCES} | generated
    _check_replaceable(out, contents)
    _write_staged(out, contents)
    return summary


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_replaceable(out: Path, contents: dict[str, str]) -> None:
    """Refuse to replace a file that an earlier export did not write, or that was edited since.

    The manifest of the earlier export lists what it wrote; without one (an older export,
    or a folder of the user's own) every same-named file counts as the user's.
    """
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        written = manifest["files"] if isinstance(manifest, dict) else {}
    except (OSError, ValueError, KeyError):
        written = {}
    for name in [*contents, MANIFEST]:
        path = out / name
        if not path.exists() and not path.is_symlink():
            continue
        if name == MANIFEST and written:
            continue
        try:
            ours = (
                path.is_file() and not path.is_symlink() and written.get(name) == _sha256(path.read_bytes())
            )
        except OSError:
            ours = False
        if not ours:
            raise ExportError(
                f"{path} exists and was not written by kws export (or was changed since); "
                "choose another --out, or move the file"
            )


def _write_staged(out: Path, contents: dict[str, str]) -> None:
    """Write every file into a temporary folder beside ``out``, then move them in with renames.

    Nothing in ``out`` changes until every file has been written; each file then appears
    whole (a rename), and the manifest is written last.
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as e:
        raise ExportError(f"cannot write the export into {out}: {e.strerror or e}") from None
    try:
        for name, text in contents.items():
            (stage / name).write_text(text, encoding="utf-8")
        manifest = {
            "written_by": "kws export",
            "files": {name: _sha256((stage / name).read_bytes()) for name in contents},
        }
        if not out.exists():
            (stage / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
            stage.chmod(0o777 & ~UMASK)  # mkdtemp's folder is private; the export is not
            os.replace(stage, out)
            return
        for name in contents:
            os.replace(stage / name, out / name)
        write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    except OSError as e:
        raise ExportError(f"cannot write the export into {out}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def format_summary(summary: ExportSummary) -> str:
    """A few lines for the terminal: what was written and the memory it needs."""
    return "\n".join(
        [
            f"wrote {len(summary.files)} files for {summary.model} ({summary.info.kind} model) into {summary.out_dir}",
            f"flash: model {summary.model_bytes:,} bytes, front-end tables {summary.table_bytes:,} bytes, plus code",
            f"RAM: {summary.model_copies} x {summary.arena_bytes:,}-byte tensor arena (host TFLM "
            f"{summary.host_arena_bytes:,} + CMSIS-NN {summary.cmsis_nn_extra_bytes:,} + {ARENA_SLACK:.0%}), "
            f"front-end {summary.frontend_state_bytes:,}, posterior {summary.posterior_state_bytes:,}: "
            f"{summary.ram_bytes:,} bytes",
            f"how to build it: {summary.out_dir / 'README.md'}",
        ]
    )
