"""Microcontroller export: the model as a C array, the C front-end's tables and the C sources.

:func:`export` writes into one folder everything a TensorFlow Lite Micro project needs:
the generated files (:mod:`kws.export.generate`, from the templates in
``kws/export/templates/`` filled by :mod:`kws.export.c_text`) and the C sources of
``kws/firmware_export/``, copied as they are (``kws_*.h/.c/.cc``). A later export
replaces only the files an export wrote and nobody changed since.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path

from kws.artifact import ModelError, tflite_ops
from kws.errors import KwsError
from kws.export.generate import (
    ExportSummary,
    FrontendTables,
    frontend_tables,
    model_data_files,
    op_resolver_header,
    readme,
    streaming_settings,
    tables_files,
    tflm_method,
)
from kws.fileio import UMASK, write_text_atomic
from kws.footprint import (
    ARENA_SLACK,
    arena_bytes,
    cmsis_nn_extra_bytes,
    posterior_state_bytes,
    tflm_arena_bytes,
)
from kws.runtime import load_runner
from kws.stream import FIRMWARE_COPIES, FIRMWARE_RESET_EVERY, detector_config

__all__ = [
    "ExportError",
    "ExportSummary",
    "FrontendTables",
    "export",
    "format_summary",
    "frontend_tables",
    "op_resolver_header",
    "tflm_method",
]

FIRMWARE_DIR = Path(str(files("kws") / "firmware_export"))
# Copied unchanged into every export.
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


class ExportError(KwsError):
    """An export that cannot be written (output folder problems)."""


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
    streaming = streaming_settings(info, detector_config(info, copies=copies, reset_every=reset_every))
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
        **model_data_files(data, info, quantization, tables, streaming, summary.arena_bytes, source),
        **tables_files(tables, source),
        "kws_model_ops.h": op_resolver_header(ops, source),
        "README.md": readme(summary, streaming, source),
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
