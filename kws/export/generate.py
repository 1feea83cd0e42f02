"""The contents of every file ``kws export`` generates, from one model.

    model_data.h/.c            the model as a 16-byte aligned C array, its labels, thresholds,
                               front-end and detector constants, arena size
    kws_frontend_tables.h/.c   window, FFT twiddles, sparse mel filterbank, DCT, mean and std
    kws_model_ops.h            an op resolver registering exactly the model's ops
    README.md                  what each file is, RAM and flash, how to build it in

Every number comes from the model file: its ``kws`` metadata (labels, front-end config,
detector settings), its flatbuffer (ops, quantisation, layer sizes) and the host TFLM
interpreter (arena size). The tables are computed by the same functions as
:mod:`kws.features`, so the C front-end and the Python one share one definition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.artifact import DetectorConfig, ModelInfo
from kws.export.c_text import c_double, c_float, c_int, c_items, c_string, render
from kws.features import PIXEL_MAX, PIXEL_SCALE, FrontendConfig, dct_matrix, hann_window, mel_weights
from kws.footprint import ARENA_SLACK
from kws.stream import FIRMWARE_COPIES, FIRMWARE_RESET_EVERY, REARM_MARGIN, PosteriorSmoother

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
        weights += [c_float(w) for w in band[start:stop]]
    angle = 2.0 * np.pi * np.arange(config.n_fft // 2) / config.n_fft
    twiddles = np.stack([np.cos(angle), -np.sin(angle)], axis=1).reshape(-1)
    mean = np.zeros(config.n_mfcc) if config.mean is None else np.asarray(config.mean)
    std = np.ones(config.n_mfcc) if config.std is None else np.asarray(config.std)
    return FrontendTables(
        window=[c_float(v) for v in hann_window(config.window_length)],
        twiddles=[c_float(v) for v in twiddles],
        mel_first_bin=first,
        mel_bin_count=count,
        mel_weights=weights,
        dct=[c_float(v) for v in dct_matrix(config.n_mfcc, config.n_mels).reshape(-1)],
        mean=[c_float(v) for v in mean],
        std=[c_float(v) for v in std],
    )


def tables_files(tables: FrontendTables, source: str) -> dict[str, str]:
    """``kws_frontend_tables.h`` and ``kws_frontend_tables.c``."""
    return {
        "kws_frontend_tables.h": render("kws_frontend_tables.h", source=source),
        "kws_frontend_tables.c": render(
            "kws_frontend_tables.c",
            source=source,
            window=c_items(tables.window),
            twiddles=c_items(tables.twiddles),
            mel_first_bin=c_items(tables.mel_first_bin, 16),
            mel_bin_count=c_items(tables.mel_bin_count, 16),
            mel_weights=c_items(tables.mel_weights),
            dct=c_items(tables.dct),
            mean=c_items(tables.mean),
            std=c_items(tables.std),
        ),
    }


@dataclass(frozen=True)
class Streaming:
    """The detector's settings the firmware mirrors (from a kws.DetectorConfig)."""

    thresholds: np.ndarray  # per label; infinite for the labels that never fire
    smoothing_window: int
    refractory: float
    frame_seconds: float
    window_seconds: float
    hop_frames: int
    reset_every: int
    copies: int


def streaming_settings(info: ModelInfo, config: DetectorConfig) -> Streaming:
    """What the firmware mirrors of a detector running the model ``info`` describes with ``config``."""
    smoother = PosteriorSmoother.from_config(info, config)
    return Streaming(
        thresholds=smoother.thresholds,
        smoothing_window=smoother.history.maxlen or 1,
        refractory=smoother.refractory,
        frame_seconds=info.frontend.frame_seconds,
        window_seconds=info.frontend.window_ms / 1000,  # as Detector.time
        hop_frames=config.hop(info),
        reset_every=config.reset_every if info.kind == "step" else 0,
        copies=config.model_copies(info),
    )


def model_data_files(
    data: bytes,
    info: ModelInfo,
    quantization: tuple[tuple[float, int], tuple[float, int]],
    tables: FrontendTables,
    streaming: Streaming,
    arena: int,
    source: str,
) -> dict[str, str]:
    """``model_data.h`` and ``model_data.c``: the model array, labels, thresholds and constants."""
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
        ("KWS_LOG_FLOOR", c_float(config.log_floor), "ln: mel energies clamped to this; pixel: the bend"),
        ("KWS_PIXEL_SCALE", c_float(PIXEL_SCALE), "pixel log: pixels per neper"),
        ("KWS_PIXEL_MAX", c_float(PIXEL_MAX), "pixel log: the largest value (8 bits)"),
        ("KWS_CLIP_FRAMES", str(config.clip_frames), "frames a whole-clip model sees"),
        ("KWS_N_LABELS", str(len(info.labels)), "model outputs"),
        ("KWS_MODEL_IS_STEP", str(int(info.kind == "step")), "1: one frame per invoke, state kept"),
        ("KWS_INPUT_SIZE", str(math.prod(info.input_shape)), "int8 values per invoke"),
        ("KWS_INPUT_SCALE", c_float(input_scale), "input quantisation"),
        ("KWS_INPUT_ZERO_POINT", c_int(input_zero_point), ""),
        ("KWS_OUTPUT_SCALE", c_float(output_scale), "output quantisation"),
        ("KWS_OUTPUT_ZERO_POINT", c_int(output_zero_point), ""),
        ("KWS_ARENA_BYTES", str(arena), "tensor arena of one interpreter (README.md: how)"),
        ("KWS_MODEL_COPIES", str(streaming.copies), "interpreters the streaming detector runs"),
        ("KWS_RESET_EVERY", str(streaming.reset_every), "frames between resets of a step model copy"),
        ("KWS_HOP_FRAMES", str(streaming.hop_frames), "whole-clip model: frames between runs"),
        ("KWS_SMOOTHING_WINDOW", str(streaming.smoothing_window), "posteriors averaged"),
        ("KWS_REFRACTORY_SECONDS", c_double(streaming.refractory), "quiet after an event"),
        ("KWS_REARM_MARGIN", c_float(REARM_MARGIN), "re-armed this far below the threshold"),
        ("KWS_FRAME_SECONDS", c_double(streaming.frame_seconds), "hop in seconds"),
        ("KWS_WINDOW_SECONDS", c_double(streaming.window_seconds), "window in seconds"),
    ]
    width = max(len(name) + len(value) for name, value, _ in defines) + 1
    lines = []
    for name, value, comment in defines:
        text = f"#define {name} {value}"
        lines.append(f"{text.ljust(width + 8)} /* {comment} */" if comment else text)
    return {
        "model_data.h": render("model_data.h", source=source, defines="\n".join(lines)),
        "model_data.c": render(
            "model_data.c",
            source=source,
            model_data=c_items([f"0x{b:02x}" for b in data], 16),
            model_data_len=len(data),
            labels=c_items([c_string(label) for label in info.labels], 4),
            thresholds=c_items([c_float(t) for t in streaming.thresholds], 4),
        ),
    }


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
    return render(
        "kws_model_ops.h",
        source=source,
        includes=includes,
        ops=", ".join(ops),
        op_count=len(ops),
        registrations=adds,
    )


def readme(summary: ExportSummary, streaming: Streaming, source: str) -> str:
    """The export's ``README.md``: what each file is, its memory, how to build it in."""
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
    return render(
        "README.md",
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


def _firmware_paragraph(summary: ExportSummary, streaming: Streaming) -> str:
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
