"""Training input benchmark: augmented examples a second and peak memory, on the data as
it is and on 10x and 100x copies of it (hard links under new names).

    python tools/input_bench.py --data ../shared/data/speech_commands [--scales 1 10 100]
        [--workers 1 2] [--steps 300] [--before CHECKOUT] [--json]

Each measurement runs in a process of its own: ``kws.train.prepare_data`` for the audio
source of the official layout (no images, no negatives), then the first ``--steps``
batches of epoch 0 as ``kws train`` streams them (``tf.data``, features from
``--workers`` worker processes), without the model. It reports the seconds of each, the
examples a second, and the peak memory of the process and its workers together (their proportional set
size: a page shared by n processes counts 1/n each; sampled every 0.2 s; and at the end, the process's and the workers' own) while preparing
and while streaming. With ``--before``, a checkout of kws from before the streaming
pipeline (its ``kws/`` is imported instead), that loop is measured too: epoch 0's features
computed whole, up front, in one process, as its ``fit`` did; a scale whose clips (all
held in memory then) would not fit is skipped for it.

The copies keep the official splits' proportions: a copy of a validation or testing clip
is listed in the copy's ``validation_list.txt`` or ``testing_list.txt``. They are made in
a temporary folder, which must be on the data's file system (``TMPDIR`` chooses it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kws.data import BACKGROUND_DIR

CLIP_BYTES = 16000 * 4  # a 1-s clip at 16 kHz as float32

# Peak memory of the process and its children (proportional set size), sampled in a thread.
PEAK = """
import os, threading, time
def rss(pid):  # proportional: a page shared by n processes counts 1/n in each
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
def children(pid):
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        return [int(c) for t in tasks for c in open(f"/proc/{pid}/task/{t}/children").read().split()]
    except OSError:
        return []
phase = ["prepare"]  # the phase whose peak the sampler updates
peaks = {"prepare": 0, "stream": 0}
last = {}
def sample():
    while True:
        me, now = os.getpid(), phase[0]
        last["parent"] = rss(me)
        last["workers"] = sum(rss(c) for c in children(me))
        peaks[now] = max(peaks[now], last["parent"] + last["workers"])
        time.sleep(0.2)
threading.Thread(target=sample, daemon=True).start()
"""

LOOP = (
    PEAK
    + """
import json, sys
from kws.train import TrainConfig, prepare_data
from kws.training.fit import augmented_features
config = TrainConfig(data=sys.argv[1])
start = time.monotonic()
data = prepare_data(config, progress=False)
prepared = time.monotonic()
phase[0] = "stream"
x = augmented_features(data, config, 0)
done = time.monotonic()
print(json.dumps({"examples": len(x), "prepare_s": round(prepared - start, 1), "input_s": round(done - prepared, 1),
    "examples_per_s": round(len(x) / (done - prepared), 1), "prepare_peak_mb": round(peaks["prepare"] / 2**20), "peak_mb": round(peaks["stream"] / 2**20),
    "end_mb": {k: round(v / 2**20) for k, v in last.items()}}))
"""
)

PIPELINE = (
    PEAK
    + """
import json, sys
if __name__ == "__main__":  # spawned workers import this file: not TensorFlow
    import numpy as np
    import tensorflow as tf
    from kws.inputs import Workers
    from kws.train import TrainConfig, prepare_data
    from kws.training.fit import EpochInput, epoch_batches, epoch_examples
    config, workers, steps = TrainConfig(data=sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    start = time.monotonic()
    data = prepare_data(config, progress=False, input_workers=workers)
    prepared = time.monotonic()
    phase[0] = "stream"
    refs, y = epoch_examples(data, config, 0)
    batches = epoch_batches(len(refs), config, 0)[:steps]
    weights = np.ones(len(data.labels), np.float32)
    with Workers(data.sources, workers) as pool:
        started = time.monotonic()
        epoch = EpochInput(pool, data, config, 0, refs, y, batches, weights)
        count = sum(len(x) for x, _, _ in epoch.batches_of(tf.distribute.InputContext()))
        done = time.monotonic()
    print(json.dumps({"examples": count, "prepare_s": round(prepared - start, 1), "input_s": round(done - started, 1),
        "examples_per_s": round(count / (done - started), 1), "prepare_peak_mb": round(peaks["prepare"] / 2**20), "peak_mb": round(peaks["stream"] / 2**20),
    "end_mb": {k: round(v / 2**20) for k, v in last.items()}}))
"""
)


def scaled_copy(data: Path, scale: int, dest: Path) -> Path:
    """``data`` (official layout) ``scale`` times over as hard links in ``dest``: copy ``k`` of
    ``word/<speaker>_nohash_<n>.wav`` is ``word/<speaker>x<k>_nohash_<n>.wav`` (a new speaker)."""
    lists = {
        name: set((data / name).read_text().split()) if (data / name).is_file() else set()
        for name in ("validation_list.txt", "testing_list.txt")
    }
    listed: dict[str, list[str]] = {name: [] for name in lists}
    for folder in sorted(p for p in data.iterdir() if p.is_dir()):
        (dest / folder.name).mkdir(parents=True)
        for file in sorted(folder.iterdir()):
            if folder.name == BACKGROUND_DIR:
                os.link(file, dest / folder.name / file.name)
                continue
            speaker, _, rest = file.name.partition("_nohash_")
            splits = [name for name, members in lists.items() if f"{folder.name}/{file.name}" in members]
            for k in range(scale):
                name = f"{speaker}x{k}_nohash_{rest}"
                os.link(file, dest / folder.name / name)
                for list_name in splits:
                    listed[list_name].append(f"{folder.name}/{name}")
    for list_name, names in listed.items():
        (dest / list_name).write_text("\n".join(names) + "\n")
    return dest


def clip_count(data: Path) -> int:
    return sum(1 for p in data.glob("*/*.wav") if p.parent.name != BACKGROUND_DIR)


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def measure(script: str, *args: str, before: Path | None = None) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(before)} if before is not None else None
    with tempfile.NamedTemporaryFile("w", suffix=".py") as file:  # a file: spawned workers import it
        file.write(script)
        file.flush()
        run = subprocess.run(
            [sys.executable, file.name, *args], capture_output=True, text=True, check=False, env=env
        )
    if run.returncode != 0:
        return {
            "error": run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"
        }
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="Speech Commands folder (official layout)")
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="input worker processes")
    parser.add_argument("--steps", type=int, default=300, help="batches of 64 streamed")
    parser.add_argument("--before", type=Path, help="a kws checkout from before the pipeline: its loop too")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for scale in args.scales:
            data = args.data if scale == 1 else scaled_copy(args.data, scale, Path(tmp) / f"x{scale}")
            clips = clip_count(data)
            runs: list[tuple[str, str, tuple[str, ...]]] = [
                (f"pipeline, {w} workers", PIPELINE, (str(data), str(w), str(args.steps)))
                for w in args.workers
            ]
            if args.before is not None:
                runs.insert(0, ("loop before", LOOP, (str(data),)))
            for name, script, script_args in runs:
                row: dict[str, Any] = {"scale": scale, "clips": clips, "input": name}
                need, available = clips * CLIP_BYTES, available_bytes()
                if script is LOOP and need > 0.8 * available:
                    row["skipped"] = (
                        f"its clips need {need / 1e9:.1f} GB, over 80% of the {available / 1e9:.1f} GB available"
                    )
                else:
                    row |= measure(script, *script_args, before=args.before if script is LOOP else None)
                results.append(row)
                if not args.json:
                    print(row, flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
