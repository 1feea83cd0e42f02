"""The fixed splits of the shared non-keyword speech, by source and speaker: writes the lists
in ``splits/`` that ``kws train --negatives / --val-negatives``, ``kws tune`` and ``kws bench
--negatives`` read (one audio file a line, relative to the list's folder).

    python tools/speech_splits.py [--data ../shared/data] [--out splits]   # prints each list's files and minutes

- ``measuring.txt``, never trained or tuned on, read once per recipe: the "jarvis" wake
  phrases, the ten LibriSpeech test-other speakers, all of CMU ARCTIC bdl;
- ``validation.txt``, for choices and thresholds: the "snowboy" wake phrases, the LibriSpeech
  train-clean speakers whose id hashes into :data:`VALIDATION_SHARE`, two music files;
- ``training.txt``: the rest, the coffee orders whole (their speakers are not named, so they
  are never split).

The lists are committed; a test checks they are what this script writes, that they hold no
file twice and that no LibriSpeech speaker is in two of them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from kws.audio import probe
from kws.data import AUDIO_SUFFIXES, hash_share

ROOT = Path(__file__).resolve().parents[1]
VALIDATION_SHARE = 0.25  # of the LibriSpeech train-clean speakers
# LibriSpeech test-other's speakers (speech/README.md): the measuring set's.
MEASURING_SPEAKERS = frozenset({"1688", "1998", "2033", "2414", "2609", "3005", "3080", "3331", "367", "533"})
# One piece of music and one sound validate; the other four train.
VALIDATION_MUSIC = frozenset({"Kevin_MacLeod_-_Vibe_Ace.opus", "glacier-bay-humpback.opus"})
SPLITS = ("measuring", "validation", "training")


def split_of(relative: Path) -> str:
    """The split of a file, from its path under the shared data folder."""
    parts = relative.parts
    if parts[:2] == ("negatives", "picovoice"):
        return {"jarvis": "measuring", "snowboy": "validation"}.get(parts[2], "training")
    source = parts[1]
    if source == "arctic_bdl":
        return "measuring"
    if source == "librispeech":
        speaker = relative.name.split("-")[0]
        if speaker in MEASURING_SPEAKERS:
            return "measuring"
        return "validation" if hash_share(speaker) < VALIDATION_SHARE else "training"
    if source == "music":
        return "validation" if relative.name in VALIDATION_MUSIC else "training"
    return "training"  # coffee_orders: speakers not named, never split


def split_lists(data: Path, out: Path) -> dict[str, list[str]]:
    """Every audio file of ``data/negatives/picovoice`` and ``data/speech`` in its split, as the
    lines of lists that will live in ``out`` (paths relative to it)."""
    files = sorted(
        p.relative_to(data)
        for folder in (data / "negatives" / "picovoice", data / "speech")
        for p in folder.rglob("*")
        if p.suffix.lower() in AUDIO_SUFFIXES
    )
    lists: dict[str, list[str]] = {name: [] for name in SPLITS}
    for relative in files:
        lists[split_of(relative)].append(os.path.relpath(data / relative, out))
    return lists


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "splits")
    args = parser.parse_args()
    data, out = args.data.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for name, lines in split_lists(data, out).items():
        (out / f"{name}.txt").write_text("".join(f"{line}\n" for line in lines))
        minutes = sum(probe(out / line).duration for line in lines) / 60
        print(f"{out / name}.txt: {len(lines)} files, {minutes:.1f} min")


if __name__ == "__main__":
    main()
