"""Training input benchmark: augmented examples a second and peak memory, on the data as
it is and on 10x and 100x copies of it (hard links under new names).

    python tools/input_bench.py --data ../shared/data/speech_commands [--scales 1 10 100] [--json]

Each measurement runs in a process of its own: ``kws.train.prepare_data`` for the audio
source of the official layout (no images, no negatives), then one epoch of augmented
training features (``kws.train.augmented_features``, what ``fit`` computes before each
epoch's first step). It reports the seconds of each, the examples a second of the
augmentation, and the process's peak resident memory. A scale whose clips would not fit
in the machine's memory (they are all held at once, as float32) is not run; its need is
reported instead.

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

MEASURE = """
import json, resource, sys, time
from kws.train import TrainConfig, augmented_features, prepare_data
config = TrainConfig(data=sys.argv[1])
start = time.monotonic()
data = prepare_data(config, progress=False)
prepared = time.monotonic()
x = augmented_features(data, config, 0)
done = time.monotonic()
print(json.dumps({
    "train_examples": len(x),
    "prepare_s": round(prepared - start, 1),
    "augment_s": round(done - prepared, 1),
    "examples_per_s": round(len(x) / (done - prepared), 1),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
}))
"""


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


def measure(data: Path) -> dict[str, Any]:
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, str(data)], capture_output=True, text=True, check=False
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
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for scale in args.scales:
            data = args.data if scale == 1 else scaled_copy(args.data, scale, Path(tmp) / f"x{scale}")
            clips = clip_count(data)
            need = clips * CLIP_BYTES
            row: dict[str, Any] = {"scale": scale, "clips": clips, "clips_gb": round(need / 1e9, 2)}
            available = available_bytes()
            if need > 0.8 * available:
                row["skipped"] = (
                    f"its clips need {need / 1e9:.1f} GB, over 80% of the {available / 1e9:.1f} GB available"
                )
            else:
                row |= measure(data)
            results.append(row)
            if not args.json:
                print(row, flush=True)
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
