"""The exported firmware, built against TensorFlow Lite Micro on the host, against Python.

Needs a TFLM checkout with its host library built (outside this repository)::

    make -f tensorflow/lite/micro/tools/make/Makefile microlite
    make -f tensorflow/lite/micro/tools/make/Makefile OPTIMIZED_KERNEL_DIR=cmsis_nn microlite  # optional

Then ``python tools/firmware_parity.py --tflm /path/to/tflite-micro`` exports the model,
builds the C front-end, posterior and TFLM glue with it, and reports

- per clip of the data set (state reset, the clip's frames): the C pipeline's top-1
  label against kws's TFLM runner on Python features, and both accuracies;
- on a long stream (16-bit audio): the example main's detections against ``kws stream``'s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from kws.bundled import bundled_model
from kws.data import examples, load_example, scan
from kws.evaluate import keywords_of
from kws.export import export
from kws.features import clip_features
from kws.runtime import load_runner
from kws.stream import Detector, detect
from kws.streameval import build_stream

C_SOURCES = ["model_data.c", "kws_frontend_tables.c", "kws_fft.c", "kws_frontend.c", "kws_posterior.c"]


def build(out: Path, tflm: Path, build_dir: str, main: Path, name: str, flags: list[str]) -> Path:
    """Link ``main`` with the exported C files, the glue and TFLM's library from ``tflm/gen/build_dir``."""
    downloads = tflm / "tensorflow/lite/micro/tools/make/downloads"
    library = tflm / "gen" / build_dir / "lib" / "libtensorflow-microlite.a"
    if not library.is_file():
        sys.exit(f"no {library}: build it first (see this script's docstring)")
    objects = []
    for source in C_SOURCES:
        objects.append(out / (source + ".o"))
        subprocess.run(["cc", "-std=c99", "-O2", "-c", str(out / source), "-o", str(objects[-1])], check=True)
    include = ["-isystem", str(tflm), "-isystem", str(downloads / "flatbuffers/include")]
    include += ["-isystem", str(downloads / "gemmlowp"), "-I", str(out)]
    exe = out / name
    command = [
        "c++",
        "-std=c++17",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-O2",
        "-DTF_LITE_STATIC_MEMORY",
        *flags,
        *include,
    ]
    command += [str(out / "kws_model.cc"), str(main), *map(str, objects), str(library), "-o", str(exe)]
    subprocess.run(command, check=True)
    return exe


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tflm", type=Path, required=True, help="tflite-micro checkout with microlite built")
    parser.add_argument(
        "--build",
        default="linux_x86_64_default_gcc",
        help="TFLM build under gen/ (linux_x86_64_default_cmsis_nn_gcc: built with OPTIMIZED_KERNEL_DIR=cmsis_nn)",
    )
    parser.add_argument(
        "-D",
        dest="defines",
        action="append",
        default=[],
        help="define for the glue (CMSIS_NN, KWS_REFERENCE_LSTM)",
    )
    parser.add_argument("--model", type=Path, default=bundled_model("lstm", "int8_step"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/speech_commands_test12"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--minutes", type=float, default=10.0, help="long stream for the detection check")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        flags = [f"-D{d}" for d in args.defines]
        summary = export(args.model, out)
        print(f"exported {args.model}: arena {summary.arena_bytes} bytes (host {summary.host_arena_bytes})")
        clips_exe = build(
            out, args.tflm, args.build, Path(__file__).with_name("firmware_clips.cc"), "clips", flags
        )
        stream_exe = build(out, args.tflm, args.build, out / "kws_example_main.cc", "kws", flags)

        runner = load_runner(args.model, "tflm")
        config = runner.info.frontend
        labels = runner.info.labels
        clips = examples(scan(args.data), args.split, keywords_of(labels), clip_samples=config.clip_samples)
        audio = [load_example(c, config.clip_samples, config.sample_rate) for c in clips]
        truth = np.array([labels.index(c.label) for c in clips])
        run = subprocess.run(
            [str(clips_exe), str(config.clip_samples)],
            input=np.concatenate(audio).astype("<f4").tobytes(),
            capture_output=True,
            check=True,
        )
        firmware = np.frombuffer(run.stdout, dtype="<f4").reshape(len(clips), len(labels)).argmax(axis=1)
        python = np.array([runner.run_clip(clip_features(a, config)).argmax() for a in audio])
        print(run.stderr.decode().strip())
        print(
            f"{len(clips)} {args.split} clips: top-1 agreement C pipeline vs Python TFLM "
            f"{(firmware == python).mean():.2%}; accuracy C {(firmware == truth).mean():.2%}, "
            f"Python {(python == truth).mean():.2%}"
        )

        stream, _ = build_stream(args.data, labels, split=args.split, minutes=args.minutes, seed=0)
        pcm = np.round(stream * 32767).astype("<i2")
        expected = [(e.label, round(e.time, 3)) for e in detect(Detector(runner), pcm / np.float32(32768))]
        lines = subprocess.run([str(stream_exe)], input=pcm.tobytes(), capture_output=True, check=True).stdout
        got = [
            (label, round(float(t), 3))
            for label, t, _ in (line.split() for line in lines.decode().splitlines())
        ]
        same = "identical" if got == expected else "DIFFERENT"
        print(
            f"{args.minutes:g}-min stream: {len(got)} detections from the example main, {len(expected)} from Python: {same}"
        )


if __name__ == "__main__":
    main()
