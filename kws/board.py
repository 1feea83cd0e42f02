"""The exported firmware on an emulated Cortex-M4F (QEMU's ``mps2-an386``) and on the host.

:func:`build_firmware` compiles what ``kws export`` writes, the harness in
``kws/firmware_board/`` and TensorFlow Lite Micro with CMSIS-NN kernels, from a TFLM tree
or its archive, for the board (``arm-none-eabi-gcc``) and for the host (``cc``) from the
same sources. :func:`run_clips` and :func:`run_stream` feed audio through front-end, model
and posterior on either (files over semihosting on the board, never linked into the
image), and return the outputs and the instructions each stage executed on the board
(QEMU ``-icount shift=0`` with SysTick: see ``kws_board.h``). Instructions are not
cycles: QEMU models no pipeline, wait states or bus contention.

TFLM's objects are built once per toolchain into a cache folder (``$KWS_CACHE_DIR``, else
``~/.cache/kws``) and only those the model's ops need are linked.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from kws.download import DownloadError, extract_tar
from kws.errors import KwsError
from kws.features import FrontendConfig, clip_layout, frame_count
from kws.fileio import cache_dir
from kws.progress import stage
from kws.stream import FIRMWARE_COPIES, FIRMWARE_RESET_EVERY

BOARD_DIR = Path(str(files("kws") / "firmware_board"))
QEMU = "qemu-system-arm"
QEMU_MACHINE = "mps2-an386"
# Compiled with the exported C files (C99; the .cc files as C++17).
KWS_C_SOURCES = ("model_data.c", "kws_frontend_tables.c", "kws_fft.c", "kws_frontend.c", "kws_posterior.c")
KWS_CXX_SOURCES = ("kws_model.cc", "kws_lstm.cc")
# TFLM's kernel sources per builtin op (relative to tensorflow/lite/micro/kernels):
# CMSIS-NN's where TFLM has one. The LSTM's is TFLM's reference kernel, linked only by a
# KWS_REFERENCE_LSTM build: kws_lstm.cc is the default (see kws_model_ops.h).
OP_KERNELS = {
    "FULLY_CONNECTED": ("cmsis_nn/fully_connected.cc", "fully_connected_common.cc"),
    "SOFTMAX": ("cmsis_nn/softmax.cc", "softmax_common.cc"),
    "STRIDED_SLICE": ("strided_slice.cc", "strided_slice_common.cc"),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (
        "unidirectional_sequence_lstm.cc",
        "lstm_eval.cc",
        "lstm_eval_common.cc",
    ),
    "CONV_2D": ("cmsis_nn/conv.cc", "conv_common.cc"),
    "DEPTHWISE_CONV_2D": ("cmsis_nn/depthwise_conv.cc", "depthwise_conv_common.cc"),
    "MEAN": ("reduce.cc", "reduce_common.cc"),
    "RESHAPE": ("reshape.cc", "reshape_common.cc"),
    "AVERAGE_POOL_2D": ("cmsis_nn/pooling.cc", "pooling_common.cc"),
    "MAX_POOL_2D": ("cmsis_nn/pooling.cc", "pooling_common.cc"),
}
KERNEL_SUPPORT = ("kernel_util.cc", "micro_tensor_utils.cc")
# TFLM's interpreter (relative to the tree; *_test.cc and test helpers left out).
TFLM_CORE = (
    "tensorflow/lite/micro/*.cc",
    "tensorflow/lite/micro/arena_allocator/*.cc",
    "tensorflow/lite/micro/memory_planner/*.cc",
    "tensorflow/lite/micro/tflite_bridge/*.cc",
    "tensorflow/lite/core/api/*.cc",
    "tensorflow/lite/core/c/common.cc",
    "tensorflow/lite/kernels/internal/*.cc",
    "tensorflow/lite/kernels/internal/reference/portable_tensor_utils.cc",
    "tensorflow/lite/kernels/kernel_util.cc",
    "tensorflow/compiler/mlir/lite/core/api/error_reporter.cc",
    "tensorflow/compiler/mlir/lite/schema/schema_utils.cc",
)
TFLM_CORE_SKIP = re.compile(r"(_test|test_helpers?|fake_micro_context|mock_micro_graph|recording_.*)\.cc$")
DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
CLOCK_HZ = (64_000_000, 80_000_000)  # the usual keyword-spotting Cortex-M4F boards


class BoardError(KwsError):
    """A firmware build or run that failed: a missing toolchain, TFLM tree or op."""


@dataclass(frozen=True)
class Toolchain:
    """One compiler family and the flags every compile and link gets."""

    name: str
    cc: str
    cxx: str
    ar: str
    arch: tuple[str, ...]
    # What it needs -> the Debian package that installs it: a program on PATH, or a file
    # pattern (glob) for a library.
    needs: tuple[tuple[str, str], ...]


BOARD = Toolchain(
    "cortex-m4f",
    "arm-none-eabi-gcc",
    "arm-none-eabi-g++",
    "arm-none-eabi-ar",
    ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mthumb"),
    (
        ("arm-none-eabi-g++", "gcc-arm-none-eabi"),
        ("/usr/lib/arm-none-eabi/newlib/**/librdimon.a", "libnewlib-arm-none-eabi"),
        ("/usr/lib/arm-none-eabi/newlib/**/libstdc++.a", "libstdc++-arm-none-eabi-newlib"),
    ),
)
HOST = Toolchain("host", "cc", "c++", "ar", (), (("cc", "gcc"), ("c++", "g++")))
# As TFLM's Makefile: no exceptions, RTTI or unwind tables; unused sections dropped.
# -ffp-contract=off: no fused multiply-adds, so that the board (which has them) and the
# host compute every float of the front-end identically.
COMMON_FLAGS = (
    "-ffunction-sections",
    "-fdata-sections",
    "-fno-unwind-tables",
    "-fno-asynchronous-unwind-tables",
    "-ffp-contract=off",
    "-DTF_LITE_STATIC_MEMORY",
    "-DNDEBUG",
    "-DCMSIS_NN",
    "-DARM_NN_ENABLE_F16=0",
    "-DARM_NN_ENABLE_F32=0",
)
CXX_FLAGS = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics", "-fno-use-cxa-atexit")
C_FLAGS = ("-std=c99",)


def missing_tools(toolchain: Toolchain, *, qemu: bool = False) -> list[str]:
    """The Debian packages ``toolchain`` (and, with ``qemu``, the emulator) needs and lacks."""
    missing = []
    for need, package in toolchain.needs + (((QEMU, "qemu-system-arm"),) if qemu else ()):
        found = glob.glob(need, recursive=True) if need.startswith("/") else shutil.which(need)
        if not found and package not in missing:
            missing.append(package)
    return missing


def tflm_tree(source: str | os.PathLike[str]) -> Path:
    """A TFLM source tree with its downloads: ``source`` itself if it is one, else the
    ``.tar.gz`` archive ``source`` extracted once into :func:`cache_dir`."""
    path = Path(source)
    if path.is_dir():
        tree = path
    elif path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        target = cache_dir() / f"tflm-src-{digest}"
        if not target.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                extract_tar(path, target)
            except DownloadError:
                if not target.is_dir():  # else another process extracted it first
                    raise
        tops = [p for p in target.iterdir() if p.is_dir()]
        tree = tops[0] if len(tops) == 1 and not (target / "tensorflow").is_dir() else target
    else:
        raise BoardError(f"{path}: no TFLM tree or archive there")
    if (
        not (tree / "tensorflow/lite/micro/micro_interpreter.h").is_file()
        or not (tree / DOWNLOADS / "cmsis_nn").is_dir()
    ):
        raise BoardError(f"{path}: not a TFLM tree with its make downloads (flatbuffers, gemmlowp, cmsis_nn)")
    return tree


def _includes(tree: Path) -> list[str]:
    downloads = tree / DOWNLOADS
    paths = [
        tree,
        downloads / "flatbuffers/include",
        downloads / "gemmlowp",
        downloads / "ruy",
        downloads / "cmsis_nn",
        downloads / "cmsis_nn/Include",
        downloads / "cmsis/CMSIS/Core/Include",
    ]
    return [f"-I{p}" for p in paths]


def _compile(toolchain: Toolchain, source: Path, obj: Path, flags: Sequence[str]) -> None:
    """Compile one file (C or C++ by its suffix) unless ``obj`` is newer than it."""
    if obj.exists() and obj.stat().st_mtime >= source.stat().st_mtime:
        return
    obj.parent.mkdir(parents=True, exist_ok=True)
    cxx = source.suffix == ".cc"
    tmp = f"{obj}.{os.getpid()}.tmp"  # the cache may be filled by several processes at once
    command = [
        toolchain.cxx if cxx else toolchain.cc,
        *toolchain.arch,
        *COMMON_FLAGS,
        *(CXX_FLAGS if cxx else C_FLAGS),
        *flags,
        "-c",
        str(source),
        "-o",
        tmp,
    ]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        raise BoardError(
            f"{source.name} does not compile for {toolchain.name}:\n{run.stderr.strip()[-3000:]}"
        )
    os.replace(tmp, obj)


def _compile_all(toolchain: Toolchain, jobs: Sequence[tuple[Path, Path, Sequence[str]]]) -> None:
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for future in [pool.submit(_compile, toolchain, *job) for job in jobs]:
            future.result()


@functools.cache
def compiler_versions(toolchain: Toolchain) -> str:
    """The first line of ``--version`` of the toolchain's C and C++ compilers. Cached
    libraries and objects are kept by it, so that an upgraded compiler builds them anew."""
    lines = []
    for program in (toolchain.cc, toolchain.cxx):
        run = subprocess.run([program, "--version"], capture_output=True, text=True, check=True)
        lines.append(run.stdout.partition("\n")[0])
    return " | ".join(lines)


def tflm_library(tree: Path, toolchain: Toolchain, *, strip_errors: bool = False) -> Path:
    """TFLM (the interpreter, every kernel of :data:`OP_KERNELS`, CMSIS-NN's int8 functions)
    as one static library for ``toolchain``, built once into :func:`cache_dir`. The linker
    takes from it only the objects a model's ops need. ``strip_errors``: TFLM's
    ``TF_LITE_STRIP_ERROR_STRINGS``, as production firmware builds it (no messages, no
    printf, no op names for a profiler)."""
    strip = ("-DTF_LITE_STRIP_ERROR_STRINGS",) if strip_errors else ()
    made_of = f"{tree.resolve()}|{toolchain}|{compiler_versions(toolchain)}|{COMMON_FLAGS}|{strip}"
    key = hashlib.sha256(made_of.encode()).hexdigest()[:16]
    out = cache_dir() / f"tflm-{toolchain.name}{'-stripped' if strip_errors else ''}-{key}"
    library = out / "libtflm.a"
    core = sorted(
        {p for pattern in TFLM_CORE for p in tree.glob(pattern) if not TFLM_CORE_SKIP.search(p.name)}
    )
    kernels_dir = tree / "tensorflow/lite/micro/kernels"
    kernels = sorted(
        {kernels_dir / name for names in OP_KERNELS.values() for name in names}
        | {kernels_dir / name for name in KERNEL_SUPPORT}
    )
    cmsis_nn = sorted(
        p
        for p in (tree / DOWNLOADS / "cmsis_nn/Source").glob("*/*.c")
        if not re.search(r"_f(16|32)\.c$|nntables_flt\.c$", p.name)
    )
    includes = _includes(tree)
    jobs = [
        (s, out / "obj" / (s.relative_to(tree).as_posix() + ".o"), ["-Os", *strip, *includes]) for s in core
    ]
    jobs += [
        (s, out / "obj" / (s.relative_to(tree).as_posix() + ".o"), ["-O2", *strip, *includes])
        for s in kernels + cmsis_nn
    ]
    _compile_all(toolchain, jobs)
    if not library.exists() or any(obj.stat().st_mtime > library.stat().st_mtime for _, obj, _ in jobs):
        tmp = library.with_name(f"libtflm.{os.getpid()}.a")
        tmp.unlink(missing_ok=True)
        subprocess.run([toolchain.ar, "rcs", str(tmp), *(str(obj) for _, obj, _ in jobs)], check=True)
        os.replace(tmp, library)
    return library


@dataclass(frozen=True)
class Firmware:
    """A built harness: ``image`` runs on the board (an ELF for QEMU) or the host."""

    toolchain: Toolchain
    image: Path
    map_file: Path | None = None


def build_firmware(
    export_dir: Path,
    tree: Path,
    toolchain: Toolchain,
    out_dir: Path,
    *,
    main: str = "kws_board_main.cc",
    defines: Sequence[str] = (),
) -> Firmware:
    """Compile the export in ``export_dir`` with ``main`` (a file of kws/firmware_board) and
    TFLM from ``tree`` for ``toolchain`` into ``out_dir``.

    Parameters
    ----------
    export_dir : Path
        What ``kws export`` wrote.
    tree : Path
        A TFLM tree (:func:`tflm_tree`).
    toolchain : Toolchain
        :data:`BOARD` or :data:`HOST`.
    out_dir : Path
        Objects, image and (board) linker map.
    main : str
        ``kws_board_main.cc`` (the harness: files in, outputs and instructions out) or
        ``kws_board_size.cc`` (the pipeline alone, no I/O, TFLM without its messages:
        the firmware's own footprint).
    defines : sequence of str
        Extra preprocessor definitions, e.g. ``KWS_REFERENCE_LSTM`` for TFLM's reference LSTM kernel.
    """
    missing = missing_tools(toolchain)
    if missing:
        raise BoardError(f"cannot build for {toolchain.name}: install {' '.join(missing)}")
    semihosting = main == "kws_board_main.cc"
    # The harness keeps TFLM's messages and op names; the firmware alone is built as shipped.
    library = tflm_library(tree, toolchain, strip_errors=not semihosting)
    flags = ["-O2", f"-I{export_dir}", f"-I{BOARD_DIR}", *_includes(tree), *(f"-D{d}" for d in defines)]
    if not semihosting:
        flags.append("-DTF_LITE_STRIP_ERROR_STRINGS")
    if toolchain is BOARD and semihosting:
        flags.append("-DKWS_SEMIHOSTING")
    sources = [export_dir / name for name in (*KWS_C_SOURCES, *KWS_CXX_SOURCES)]
    sources += [
        BOARD_DIR / main,
        BOARD_DIR / ("kws_board_mps2.c" if toolchain is BOARD else "kws_board_host.c"),
    ]
    # Objects kept in the cache by what they are made of (an export is written anew each
    # time, so file times say nothing): the compiler and its version, the flags, the source
    # and every file of the export and harness folders it may include; TFLM's by its tree.
    made_of = hashlib.sha256(
        "|".join(
            [
                repr(toolchain),
                compiler_versions(toolchain),
                str(tree.resolve()),
                *(f.replace(str(export_dir), "<export>") for f in flags),
            ]
        ).encode()
    )
    for folder in (export_dir, BOARD_DIR):
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            made_of.update(path.name.encode() + b"\0" + path.read_bytes())
    objects = []
    for source in sources:
        key = made_of.copy()
        key.update(source.name.encode() + b"\0" + source.read_bytes())
        objects.append(cache_dir() / f"objects-{toolchain.name}" / f"{source.name}-{key.hexdigest()[:24]}.o")
    _compile_all(toolchain, [(s, o, flags) for s, o in zip(sources, objects, strict=True) if not o.exists()])
    out_dir.mkdir(parents=True, exist_ok=True)
    image = out_dir / ("kws_board.elf" if toolchain is BOARD else "kws_host")
    link = [toolchain.cxx, *toolchain.arch, *(str(o) for o in objects), str(library), "-Wl,--gc-sections"]
    map_file = None
    if toolchain is BOARD:
        map_file = out_dir / (image.stem + ".map")
        specs = ["--specs=nano.specs", "--specs=rdimon.specs" if semihosting else "--specs=nosys.specs"]
        link += ["-nostartfiles", *specs, "-T", str(BOARD_DIR / "mps2_an386.ld"), f"-Wl,-Map={map_file}"]
    link += ["-lm", "-o", str(image)]
    run = subprocess.run(link, capture_output=True, text=True)
    if run.returncode != 0:
        raise BoardError(f"the firmware does not link for {toolchain.name}:\n{run.stderr.strip()[-3000:]}")
    return Firmware(toolchain, image, map_file)


def footprint(map_file: Path) -> tuple[int, int]:
    """(flash, RAM) bytes of a linked board image, from its linker map: flash holds code,
    constants and the initial values of ``.data``; RAM is ``.data`` and ``.bss`` (the
    stack and heap are not counted)."""
    sizes = {
        m[1]: int(m[2], 16)
        for m in re.finditer(r"^(\.\S+)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)", map_file.read_text(), re.M)
    }
    flash = sum(sizes.get(name, 0) for name in (".text", ".ARM.exidx", ".data"))
    return flash, sizes.get(".data", 0) + sizes.get(".bss", 0)


def _run(firmware: Firmware, payload: bytes, work: Path, timeout: float) -> bytes:
    """Run the harness on ``payload`` (kws_in.bin) in ``work``; return kws_out.bin."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "kws_in.bin").write_bytes(payload)
    (work / "kws_out.bin").unlink(missing_ok=True)
    if firmware.toolchain is BOARD:
        if not shutil.which(QEMU):
            raise BoardError(f"cannot run the board image: install qemu-system-arm ({QEMU} is missing)")
        command = [
            QEMU,
            "-M",
            QEMU_MACHINE,
            "-nographic",
            "-monitor",
            "none",
            "-icount",
            "shift=0",
            "-semihosting-config",
            "enable=on,target=native",
            "-kernel",
            str(firmware.image),
        ]
    else:
        command = [str(firmware.image)]
    try:
        run = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise BoardError(f"{firmware.toolchain.name}: the harness ran past {timeout:g} s") from e
    out = work / "kws_out.bin"
    if run.returncode != 0 or not out.exists():
        said = (run.stdout + run.stderr).strip()[-2000:]
        raise BoardError(f"{firmware.toolchain.name}: the harness failed (exit {run.returncode}): {said}")
    return out.read_bytes()


@dataclass(frozen=True)
class HarnessRun:
    """What the harness wrote: ``records`` (one per clip or per frame), the arena bytes the
    interpreter used, and instructions per op kind as ``{op: (invokes, instructions)}``
    (empty unless TFLM keeps its op names)."""

    records: np.ndarray
    arena_used: int
    ops: dict[str, tuple[int, int]]


def _parse(out: bytes, dtype: np.dtype, count: int) -> HarnessRun:
    """Split kws_out.bin (see kws_board_main.cc) into ``count`` records and the op table."""
    if out[:4] != b"KWS1" or len(out) < 16 + count * dtype.itemsize:
        raise BoardError("the harness's kws_out.bin is cut short")
    _, arena = np.frombuffer(out, "<u4", 2, 4)
    records = np.frombuffer(out, dtype, count, 12)
    at = 12 + count * dtype.itemsize
    op = np.dtype([("name", "S32"), ("calls", "<u4"), ("instructions", "<u8")])
    table = np.frombuffer(out, op, int(np.frombuffer(out, "<u4", 1, at)[0]), at + 4)
    ops = {row["name"].decode(): (int(row["calls"]), int(row["instructions"])) for row in table}
    return HarnessRun(records, int(arena), ops)


FRAME_RECORD = np.dtype(
    [("frontend", "<u4"), ("model", "<u4"), ("posterior", "<u4"), ("label", "<i4"), ("score", "<f4")]
)


def run_clips(
    firmware: Firmware,
    clips: Sequence[np.ndarray],
    config: FrontendConfig,
    n_labels: int,
    work: Path,
    *,
    timeout: float = 600.0,
) -> HarnessRun:
    """Classify each clip (int16 samples) as ``kws eval`` does: the model's state reset, the
    clip laid out by :func:`kws.features.clip_layout`. Records: ``probabilities`` (n_labels
    float32) and the ``frontend`` and ``model`` instructions of the whole clip."""
    parts = [b"KWS1", np.array([0, len(clips)], "<u4").tobytes()]
    for clip in clips:
        samples, lead = clip_layout(np.asarray(clip, dtype=np.int16), config)
        parts += [np.array([lead, len(samples)], "<u4").tobytes(), samples.astype("<i2").tobytes()]
    dtype = np.dtype([("probabilities", "<f4", (n_labels,)), ("frontend", "<u4"), ("model", "<u4")])
    return _parse(_run(firmware, b"".join(parts), work, timeout), dtype, len(clips))


def run_stream(
    firmware: Firmware, pcm: np.ndarray, config: FrontendConfig, work: Path, *, timeout: float = 600.0
) -> HarnessRun:
    """Run a stream (int16 samples) through front-end, streaming model and posterior as
    ``kws stream`` does. One record per frame (:data:`FRAME_RECORD`): the instructions of
    each stage and the event fired on it (label -1: none)."""
    payload = b"KWS1" + np.array([1, len(pcm)], "<u4").tobytes() + np.asarray(pcm, "<i2").tobytes()
    return _parse(_run(firmware, payload, work, timeout), FRAME_RECORD, frame_count(len(pcm), config))


@dataclass(frozen=True)
class FirmwareReport:
    """The exported pipeline of one model on the emulated board, against the host build of
    the same sources and against kws in Python (see :func:`measure`)."""

    model: str
    clips: int
    stream_seconds: float
    board_equals_host: bool  # probabilities, events and arena: byte for byte
    top1_agreement: float  # board vs Python (kws eval), on the clips
    events_board: list[tuple[str, int]]  # (label, frame)
    events_python: list[tuple[str, int]]
    frame_instructions: dict[
        str, float
    ]  # mean per 20-ms frame: frontend, model, posterior, total, and the worst frame
    invoke_instructions: float  # mean per model invoke
    frame_seconds: float
    stream_frames: int
    stream_invokes: int  # model invokes in the stream (every copy)
    ops: dict[str, tuple[int, int]]
    flash_bytes: int  # the firmware alone (kws_board_size.cc), from its linker map
    ram_bytes: int
    arena_used: int

    @property
    def invokes_per_frame(self) -> float:
        return self.stream_invokes / max(self.stream_frames, 1)

    @property
    def events_match(self) -> bool:
        """Same labels in the same order, each within one frame of Python's."""
        return len(self.events_board) == len(self.events_python) and all(
            a[0] == b[0] and abs(a[1] - b[1]) <= 1
            for a, b in zip(self.events_board, self.events_python, strict=True)
        )

    def to_dict(self) -> dict[str, object]:
        return {
            **{k: v for k, v in vars(self).items() if not k.startswith("events_")},
            "events_match": self.events_match,
            "events": len(self.events_board),
            "events_python": len(self.events_python),
        }


def measure(
    model: str | Path,
    tree: Path,
    data_dir: str | Path,
    work: Path,
    *,
    clips: int = 100,
    minutes: float = 2.0,
    split: str = "test",
    seed: int = 0,
    copies: int = FIRMWARE_COPIES,
    reset_every: int = FIRMWARE_RESET_EVERY,
    progress: bool = False,
) -> FirmwareReport:
    """Export ``model``, build it for the board and the host, and run both on ``clips``
    clips of ``data_dir`` (spread evenly over the split) and a ``minutes``-long stream of
    the split's clips (``kws bench``'s stream), compared with kws in Python (TFLM), both
    streaming with ``copies`` and ``reset_every`` (:class:`kws.stream.Detector`).
    ``progress``: a line on stderr for each step (the emulator runs for minutes)."""
    from kws.data import examples, keywords_of, load_example, scan
    from kws.export import export
    from kws.features import clip_features
    from kws.runtime import load_runner
    from kws.stream import Detector, detect
    from kws.streams import build_stream

    # TFLM's reference kernels in Python: the arithmetic the firmware's kernels reproduce
    # bit for bit (LiteRT's LSTM rounds differently: about 2% of outputs a step or more apart).
    runner = load_runner(model, "tflm")
    config, labels = runner.info.frontend, runner.info.labels
    export_dir = work / "export"
    export(model, export_dir, copies=copies, reset_every=reset_every)
    say = functools.partial(stage, enabled=progress)
    say(f"building TFLM (minutes the first time, then cached) and the firmware for {BOARD.name} and the host")
    board = build_firmware(export_dir, tree, BOARD, work / "board")
    host = build_firmware(export_dir, tree, HOST, work / "host")
    size = build_firmware(export_dir, tree, BOARD, work / "size", main="kws_board_size.cc")
    flash, ram = footprint(size.map_file) if size.map_file else (0, 0)

    found = examples(scan(data_dir), split, keywords_of(labels), clip_samples=config.clip_samples)
    chosen = [found[i] for i in np.linspace(0, len(found) - 1, min(clips, len(found))).astype(int)]
    audio = [
        np.round(load_example(c, config.clip_samples, config.sample_rate) * 32768)
        .clip(-32768, 32767)
        .astype(np.int16)
        for c in chosen
    ]
    say(f"running {len(audio)} clips on the emulated {BOARD.name}")
    on_board = run_clips(board, audio, config, len(labels), work / "run-board")
    say(f"running {len(audio)} clips on the host")
    on_host = run_clips(host, audio, config, len(labels), work / "run-host")
    python = np.array([runner.run_clip(clip_features(a / np.float32(32768), config)).argmax() for a in audio])
    top1 = float(np.mean(on_board.records["probabilities"].argmax(axis=1) == python))

    stream, _ = build_stream(data_dir, labels, split=split, minutes=minutes, seed=seed)
    pcm = np.round(stream * 32767).astype(np.int16)
    say(f"running the {minutes:g}-min stream on the emulated {BOARD.name}")
    s_board = run_stream(board, pcm, config, work / "run-board")
    say(f"running the {minutes:g}-min stream on the host")
    s_host = run_stream(host, pcm, config, work / "run-host")
    frame_seconds = config.frame_seconds
    detector = Detector(runner, copies=copies, reset_every=reset_every)
    events_python = [
        (e.label, round((e.time - config.window_ms / 1000) / frame_seconds) + 1)
        for e in detect(detector, pcm / np.float32(32768), progress=progress)
    ]
    fired = s_board.records["label"] >= 0
    events_board = [
        (labels[int(label)], int(frame) + 1)
        for frame, label in zip(np.flatnonzero(fired), s_board.records["label"][fired], strict=True)
    ]

    same = np.array_equal(
        on_board.records["probabilities"], on_host.records["probabilities"]
    ) and np.array_equal(s_board.records[["label", "score"]], s_host.records[["label", "score"]])
    r = s_board.records
    total = r["frontend"].astype(np.int64) + r["model"] + r["posterior"]
    per_frame = {
        "frontend": float(r["frontend"].mean()),
        "model": float(r["model"].mean()),
        "posterior": float(r["posterior"].mean()),
        "total": float(total.mean()),
        "worst": float(total.max()),
    }
    if runner.info.kind == "step":
        stream_invokes = len(r) * copies
    else:
        stream_invokes = max(0, len(r) - config.clip_frames + 1)  # windowed, every frame
    invokes = int(on_board.records["model"].size * (config.clip_frames if runner.info.kind == "step" else 1))
    return FirmwareReport(
        model=str(model),
        clips=len(audio),
        stream_seconds=len(pcm) / config.sample_rate,
        board_equals_host=same,
        top1_agreement=top1,
        events_board=events_board,
        events_python=events_python,
        frame_instructions=per_frame,
        invoke_instructions=float(on_board.records["model"].sum() / invokes),
        frame_seconds=frame_seconds,
        stream_frames=len(r),
        stream_invokes=stream_invokes,
        ops=s_board.ops,
        flash_bytes=flash,
        ram_bytes=ram,
        arena_used=on_board.arena_used,
    )


def figures(report: FirmwareReport) -> dict[str, Any]:
    """The figures ``kws bench`` shows and the bundled model card stores (no event lists)."""
    f = report.frame_instructions
    return {
        "model_sha256": hashlib.sha256(Path(report.model).read_bytes()).hexdigest(),
        "frame_instructions": f,
        "invoke_instructions": report.invoke_instructions,
        "invokes_per_frame": report.invokes_per_frame,
        "frame_seconds": report.frame_seconds,
        "share_of_core": {
            f"{hz / 1e6:g} MHz": core_share(f["total"], report.frame_seconds, hz) for hz in CLOCK_HZ
        },
        "flash_bytes": report.flash_bytes,
        "ram_bytes": report.ram_bytes,
        "arena_used": report.arena_used,
        "board_equals_host": report.board_equals_host,
        "top1_agreement": report.top1_agreement,
        "events_match": report.events_match,
    }


def core_share(instructions_per_frame: float, frame_seconds: float, clock_hz: float) -> float:
    """Share of a core running ``clock_hz`` instructions a second (one per cycle) that
    ``instructions_per_frame`` every ``frame_seconds`` takes."""
    return instructions_per_frame / frame_seconds / clock_hz


def format_report(report: FirmwareReport) -> str:
    """Human-readable lines of a :class:`FirmwareReport`."""
    f, frame_seconds = report.frame_instructions, report.frame_seconds
    shares = " · ".join(
        f"{hz / 1e6:g} MHz {core_share(f['total'], frame_seconds, hz):.1%}" for hz in CLOCK_HZ
    )
    ops = " · ".join(
        f"{name} {n / max(calls, 1):,.0f} x {calls / max(report.stream_invokes, 1):g}"
        for name, (calls, n) in report.ops.items()
    )
    matched = sum(a == b for a, b in zip(report.events_board, report.events_python, strict=False))
    return "\n".join(
        [
            f"{Path(report.model).name} on QEMU {QEMU_MACHINE} (Cortex-M4F), TFLM with CMSIS-NN kernels",
            f"instructions per {frame_seconds * 1000:g}-ms frame: front-end {f['frontend']:,.0f} · model "
            f"{f['model']:,.0f} ({report.invokes_per_frame:g} invoke(s) of {report.invoke_instructions:,.0f}) · "
            f"posterior {f['posterior']:,.0f} · total {f['total']:,.0f} (worst frame {f['worst']:,.0f})",
            f"share of a core at one instruction per cycle: {shares} (instructions, not cycles: QEMU models no "
            "pipeline or wait states, a real core needs more cycles)",
            f"per invoke, by op: {ops}" if ops else "per invoke, by op: (TFLM built without op names)",
            f"firmware alone: flash {report.flash_bytes:,} B · RAM {report.ram_bytes:,} B "
            f"(tensor arena used {report.arena_used:,} B per copy)",
            f"board = host build (bit for bit): {'yes' if report.board_equals_host else 'NO'} · top-1 = Python "
            f"(TFLM) on {report.clips} clips: {report.top1_agreement:.1%} · events = kws stream on a "
            f"{report.stream_seconds:g}-s stream: {matched} of {len(report.events_python)} "
            f"({'all within one frame' if report.events_match else 'DIFFERENT'})",
        ]
    )
