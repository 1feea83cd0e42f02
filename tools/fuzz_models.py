"""Fuzz kws's model loading with byte mutations of the bundled int8 models.

    python tools/fuzz_models.py [--mutations 3000] [--seed 0] [--model NAME ...] [--json]

Each mutation takes one of the bundled models (by default the int8 LSTM files, whole clip
and step; ``--model`` names others in ``kws/models/``) and sets 1
to 4 bytes, at seeded random positions, to random or boundary values (0x00, 0x01, 0x40,
0x7F, 0x80, 0xFF). Half the positions fall anywhere in the file, half outside the weight
buffers, where the flatbuffer's tables (indices, shapes, types, quantisation) live. One
long-lived worker process does with each mutated file what ``kws eval`` does, in LiteRT
and TFLM alternately: ``load_runner`` (which verifies the file first), then a clip from
a reset state and another on top of it. It answers one of

- ``refused``: the verifier refused the file, no interpreter saw it;
- ``error``: a one-line :class:`kws.errors.KwsError` from loading or running it;
- ``ran``: it loaded and ran (a mutation of weights, names or padding);
- ``traceback``: any other exception (a defect: the CLI would print a traceback).

A worker that dies (a segfault, an abort) is a crash, and one that takes over
``--timeout`` seconds a hang; either is restarted and the fuzzing goes on. The report
counts each outcome per file and runtime and lists every crash, hang and traceback with
the bytes that caused it; the exit status is 1 if there was any.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

MODELS = ("lstm_int8.tflite", "lstm_int8_step.tflite")
RUNTIMES = ("litert", "tflm")
BOUNDARY_VALUES = (0x00, 0x01, 0x40, 0x7F, 0x80, 0xFF)
WEIGHT_BUFFER_MIN_BYTES = 64  # buffers at least this long are weights, not structure


def weight_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the file holding weight buffers (where a mutation changes values only)."""
    from kws.artifact import unpack_model

    ranges = []
    for buffer in unpack_model(data, "model").buffers:
        if buffer.data is not None and len(buffer.data) >= WEIGHT_BUFFER_MIN_BYTES:
            start = data.find(buffer.data.tobytes())
            if start >= 0:
                ranges.append((start, start + len(buffer.data)))
    return ranges


def structure_positions(data: bytes) -> np.ndarray:
    """Every byte position outside the weight buffers."""
    outside = np.ones(len(data), dtype=bool)
    for start, end in weight_ranges(data):
        outside[start:end] = False
    return np.flatnonzero(outside)


def mutate(data: bytes, structure: np.ndarray, rng: random.Random) -> tuple[bytes, list[tuple[int, int]]]:
    """``data`` with 1-4 bytes changed; the (position, new value) pairs."""
    mutated = bytearray(data)
    changes = []
    for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
        position = (
            int(structure[rng.randrange(len(structure))]) if rng.random() < 0.5 else rng.randrange(len(data))
        )
        value = rng.choice(BOUNDARY_VALUES) if rng.random() < 0.5 else rng.randrange(256)
        mutated[position] = value
        changes.append((position, value))
    return bytes(mutated), changes


# The worker: one request after another on stdin (a JSON header line, then the model's
# bytes), one JSON line per answer on stdout.


def _serve(scratch: Path) -> None:
    from kws.artifact import ModelError
    from kws.errors import KwsError
    from kws.runtime import load_runner

    requests, answers = sys.stdin.buffer, sys.stdout
    while header := requests.readline():
        request = json.loads(header)
        data = requests.read(request["bytes"])
        path = scratch / request["name"]
        path.write_bytes(data)
        try:
            try:
                runner = load_runner(path, request["runtime"])
            except ModelError as e:
                # The interpreters' own refusals say so; the rest is kws's checks before them.
                outcome = "error" if "cannot load" in str(e) or "failed to run" in str(e) else "refused"
                answer = {"outcome": outcome, "message": str(e)}
            else:
                clip = np.random.default_rng(0).normal(size=runner.input_shape[1:]).astype(np.float32)
                frames = np.zeros((runner.info.frontend.clip_frames, runner.info.frontend.n_mfcc), np.float32)
                runner.run_clip(frames)
                runner.invoke(clip)
                answer = {"outcome": "ran"}
        except KwsError as e:
            answer = {"outcome": "error", "message": str(e)}
        except Exception:  # a defect to report, not to hide
            answer = {"outcome": "traceback", "message": traceback.format_exc(limit=-3)}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


class Worker:
    """The long-lived worker process, restarted when it dies."""

    def __init__(self, log: BinaryIO) -> None:
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def ask(self, runtime: str, name: str, data: bytes, timeout: float) -> dict[str, Any]:
        if self.process is None:
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.log,
            )
        process = self.process
        assert process.stdin is not None and process.stdout is not None
        header = json.dumps({"runtime": runtime, "name": name, "bytes": len(data)}) + "\n"
        try:
            process.stdin.write(header.encode() + data)
            process.stdin.flush()
        except BrokenPipeError:
            pass
        line = _read_line(process, timeout)
        if line:
            return dict(json.loads(line))
        self.process = None
        if line is None:
            process.kill()
            process.wait()
            return {"outcome": "hang"}
        return {"outcome": "crash", "signal": -process.wait()}

    def close(self) -> None:
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait()


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> bytes | None:
    """One line from the worker: b"" if it died, None if it took over ``timeout`` seconds."""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return None
    return process.stdout.readline()


def fuzz(
    models: dict[str, bytes], mutations: int, seed: int, timeout: float, log: BinaryIO
) -> dict[str, Any]:
    """Run ``mutations`` mutated files through the worker; the report as a dict."""
    rng = random.Random(seed)
    structure = {name: structure_positions(data) for name, data in models.items()}
    counts: Counter[tuple[str, str, str]] = Counter()
    defects: list[dict[str, Any]] = []
    worker = Worker(log)
    start = time.perf_counter()
    try:
        for n in range(mutations):
            name = sorted(models)[n % len(models)]
            runtime = RUNTIMES[n // len(models) % len(RUNTIMES)]
            data, changes = mutate(models[name], structure[name], rng)
            answer = worker.ask(runtime, name, data, timeout)
            counts[name, runtime, answer["outcome"]] += 1
            if answer["outcome"] in ("crash", "hang", "traceback"):
                defects.append(
                    {"mutation": n, "model": name, "runtime": runtime, "changes": changes, **answer}
                )
    finally:
        worker.close()
    outcomes = ("refused", "error", "ran", "traceback", "crash", "hang")
    total = Counter({outcome: sum(v for k, v in counts.items() if k[2] == outcome) for outcome in outcomes})
    return {
        "mutations": mutations,
        "seed": seed,
        "seconds": round(time.perf_counter() - start, 1),
        "total": dict(total),
        "reached": {
            r: sum(v for k, v in counts.items() if k[1] == r and k[2] != "refused") for r in RUNTIMES
        },
        "by_model_and_runtime": {
            f"{name} {runtime}": {o: counts[name, runtime, o] for o in outcomes}
            for name in sorted(models)
            for runtime in RUNTIMES
        },
        "defects": defects,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutations", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one mutation may take")
    parser.add_argument(
        "--model", action="append", help=f"a bundled model file (default: {', '.join(MODELS)})"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        with tempfile.TemporaryDirectory() as scratch:
            _serve(Path(scratch))
        return 0
    from kws.bundled import MODELS_DIR

    models = {name: (MODELS_DIR / name).read_bytes() for name in args.model or MODELS}
    with tempfile.TemporaryFile() as log:
        report = fuzz(models, args.mutations, args.seed, args.timeout, log)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{report['mutations']} mutations (seed {report['seed']}) in {report['seconds']} s")
        for key, outcomes in report["by_model_and_runtime"].items():
            print(f"  {key:32s} " + "  ".join(f"{o} {n}" for o, n in outcomes.items()))
        print("  reached the interpreters: " + ", ".join(f"{r} {n}" for r, n in report["reached"].items()))
        for defect in report["defects"]:
            print(
                f"  {defect['outcome']}: {defect['model']} in {defect['runtime']}, bytes {defect['changes']}"
            )
    return 1 if report["defects"] else 0


if __name__ == "__main__":
    sys.exit(main())
