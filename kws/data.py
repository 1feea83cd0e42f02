"""Speech data: the official Speech Commands layout and the canonical 12-class test layout.

Official layout (what ``speech_commands_v0.02.tar.gz`` unpacks to)::

    <word>/<speaker>_nohash_<n>.wav, validation_list.txt, testing_list.txt, _background_noise_/

Clips named in neither list are training clips; without the lists, the official
hash-of-speaker rule splits them. The 12-class test layout has one folder a label,
``_silence_`` and ``_unknown_`` included, and is all test data.

Labels are ``_silence_``, ``_unknown_`` and the keywords (a parameter: any word not in
it is unknown). As in TensorFlow's reference recipe, each split gets silence and
unknown examples amounting to a percentage of its keyword clips; silence is cut from
the background-noise recordings at a random RMS level spanning that of real silence
clips (the noise files of this copy of the data set are 40 dB quieter than the
canonical test set's silence). Unlike the reference, each split
takes its noise from its own part of every recording (train the first 80%, validation
the next 10%, test the last 10%), so no noise is shared between train and test.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kws.audio import DEFAULT_SAMPLE_RATE, load_audio, probe
from kws.errors import AudioError, DataError
from kws.progress import bar


class DataWarning(UserWarning):
    """A data folder that works but is probably not what was meant."""


DEFAULT_KEYWORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE = "_silence_"
UNKNOWN = "_unknown_"
SPLITS: tuple[str, ...] = ("train", "validation", "test")
BACKGROUND_DIR = "_background_noise_"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus")  # Ogg: Opus or Vorbis
LIST_SUFFIX = ".txt"  # a list of audio files, one a line (negative_files)

# The part of each background-noise recording a split may use (fractions of its length).
NOISE_REGIONS: dict[str, tuple[float, float]] = {
    "train": (0.0, 0.8),
    "validation": (0.8, 0.9),
    "test": (0.9, 1.0),
}

# Generated silence spans the levels of real "silence" clips: the canonical 12-class test
# set's _silence_ clips measure 2e-4 to 0.33 RMS (median 0.027).
SILENCE_RMS_RANGE = (1e-4, 0.3)

# Silence examples per split, as a percentage of its keyword clips (the reference recipe's).
SILENCE_PERCENTAGE = 10.0

# TensorFlow's speech_commands/input_data.py: the hash split's modulus.
_MAX_NUM_WAVS_PER_CLASS = 2**27 - 1
_SPEAKER_RE = re.compile(r"([^_]+)_nohash_\d+$")


def labels_for(keywords: Sequence[str] = DEFAULT_KEYWORDS) -> list[str]:
    """The model's output labels: silence, unknown, then the keywords in the given order."""
    if len(set(keywords)) != len(keywords) or not keywords:
        raise DataError("keywords must be a non-empty list without repeats")
    reserved = {SILENCE, UNKNOWN} & set(keywords)
    if reserved:
        raise DataError(f"{', '.join(sorted(reserved))} cannot be a keyword")
    return [SILENCE, UNKNOWN, *keywords]


def keywords_of(labels: Sequence[str]) -> list[str]:
    """The keywords of a model's label list (``_silence_``, ``_unknown_``, keywords...)."""
    if list(labels[:2]) != [SILENCE, UNKNOWN]:
        raise DataError(f"label list must start with {SILENCE}, {UNKNOWN}; got {list(labels)}")
    return list(labels[2:])


def speaker_of(path: Path) -> str | None:
    """The speaker id in ``<speaker>_nohash_<n>.wav`` or ``<word>_<speaker>_nohash_<n>.wav``."""
    m = _SPEAKER_RE.search(path.stem)
    return m.group(1) if m else None


def which_set(path: Path, validation_percentage: float = 10.0, testing_percentage: float = 10.0) -> str:
    """The official hash-of-speaker split of a clip, as TensorFlow's ``input_data.which_set``.

    All clips of one speaker land in the same split, and adding clips never moves an
    existing clip to another split.
    """
    hash_name = re.sub(r"_nohash_.*$", "", path.name)
    # The name's bytes as on disk: UTF-8 for every name TensorFlow's code can hash, and a
    # name that is not UTF-8 (kept by Python as surrogates) still gets a split.
    hashed = hashlib.sha1(os.fsencode(hash_name)).hexdigest()
    percentage = (int(hashed, 16) % (_MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / _MAX_NUM_WAVS_PER_CLASS)
    if percentage < validation_percentage:
        return "validation"
    if percentage < testing_percentage + validation_percentage:
        return "test"
    return "train"


@dataclass(frozen=True)
class Clip:
    """One recorded clip on disk.

    ``folder`` is the folder it sits in: the spoken word in the official layout, the
    label (``_unknown_``, ``_silence_`` or a keyword) in the 12-class layout.
    """

    path: Path
    folder: str
    speaker: str | None
    split: str


@dataclass
class DataIndex:
    """What a data folder holds, without reading any audio."""

    root: Path
    layout: str  # "speech_commands" or "test12"
    clips: list[Clip]
    noise_files: list[Path]
    listed_missing: list[str] = field(default_factory=list)

    def label_of(self, clip: Clip, keywords: Sequence[str]) -> str:
        """The 12-class label of a clip for the given keywords."""
        if clip.folder in keywords:
            return clip.folder
        if self.layout == "test12" and clip.folder == SILENCE:
            return SILENCE
        return UNKNOWN


def _is_audio_name(path: Path) -> bool:
    """Named like audio and not a folder: a dangling link or a FIFO named ``.wav`` is listed too,
    so that reading it fails with its reason instead of the file being skipped unseen."""
    return path.suffix.lower() in AUDIO_SUFFIXES and not path.is_dir()


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_audio_name(p))


def audio_files_under(folder: str | Path) -> list[Path]:
    """Every audio file (:data:`AUDIO_SUFFIXES`: WAV, FLAC, Ogg) in a folder and its sub-folders, sorted.

    Raises
    ------
    DataError
        The folder is missing or holds no audio file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    files = sorted(p for p in root.rglob("*") if _is_audio_name(p))
    if not files:
        raise DataError(f"{root}: holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return files


# The share of a negatives folder's files (by name hash) that training never sees: its
# validation windows and the streams thresholds are tuned on.
NEGATIVE_HELD_OUT_SHARE = 0.1


def hash_share(name: str) -> float:
    """Where ``name`` falls in [0, 1), by the SHA-1 of its bytes (as ``which_set`` hashes): a
    fixed, machine-independent draw for splitting files or speakers."""
    digest = hashlib.sha1(os.fsencode(name)).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def held_out_negative(path: Path) -> bool:
    """Whether a negative recording is one of the fixed 10% kept out of training (name hash)."""
    return hash_share(path.name) < NEGATIVE_HELD_OUT_SHARE


def negative_files(source: str | Path, keywords: Sequence[str]) -> list[Path]:
    """Every audio file of a source of speech that holds no keyword: a folder (every audio file
    under it, sorted) or a list file (``.txt``: one audio file a line, relative to the list's
    folder, in its order; a line starting with ``#`` is a comment), such as a fixed split.

    A sub-folder named like a keyword is most likely keyword clips given by mistake:
    they would count as false alarms (or be trained on as ``_unknown_``), so it warns.

    Raises
    ------
    DataError
        The folder or list is missing, holds no audio file, or lists a file that is not there.
    """
    root = Path(source)
    if root.suffix.lower() == LIST_SUFFIX and not root.is_dir():
        return _listed_files(root)
    files = audio_files_under(root)
    named = sorted(
        {p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1} & set(keywords)
    )
    if named:
        warnings.warn(
            f"{root}: sub-folder(s) {', '.join(named)} named like keywords; every clip under "
            f"{root} is taken as speech without a keyword",
            DataWarning,
            stacklevel=2,
        )
    return files


def _listed_files(path: Path) -> list[Path]:
    """The audio files a list file names (:func:`negative_files`)."""
    if not path.is_file():
        raise DataError(f"{path}: list file not found")
    lines = [os.fsdecode(line.strip()) for line in path.read_bytes().splitlines()]
    files = [
        Path(os.path.normpath(path.parent / line)) for line in lines if line and not line.startswith("#")
    ]
    missing = [f for f in files if not f.is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(f"{path}: lists {missing[0]}{more}, not found")
    if not files:
        raise DataError(f"{path}: lists no audio files")
    return files


def split_negatives(
    negatives: Sequence[str | Path], val_negatives: Sequence[str | Path], keywords: Sequence[str]
) -> tuple[list[Path], list[Path]]:
    """The training and the validation recordings of sources of speech without keywords.

    With ``val_negatives`` (fixed validation sources, such as split lists), ``negatives`` are
    trained on whole and ``val_negatives`` validate whole: the splits stay as their author made
    them (by speaker, say). Without, a fixed 10% of each ``negatives`` source
    (:func:`held_out_negative`) validates: a user's own folder needs no split of its own.
    """
    files = [f for source in negatives for f in negative_files(source, keywords)]
    if val_negatives:
        validation = [f for source in val_negatives for f in negative_files(source, keywords)]
        both = {f.resolve() for f in files} & {f.resolve() for f in validation}
        if both:
            raise DataError(
                f"{len(both)} recording(s) both trained on and validating, such as {min(both)}: "
                "give --negatives and --val-negatives that do not overlap"
            )
        return files, validation
    return [f for f in files if not held_out_negative(f)], [f for f in files if held_out_negative(f)]


def _read_list(root: Path, name: str) -> set[str] | None:
    path = root / name
    if not path.is_file():
        return None
    # Bytes decoded as the file system decodes names: a name that is not UTF-8 matches its file.
    return {os.fsdecode(line.strip()) for line in path.read_bytes().splitlines() if line.strip()}


def scan(root: str | Path) -> DataIndex:
    """Index a data folder in either layout.

    Parameters
    ----------
    root : path
        An official Speech Commands folder (word folders, optional split lists and
        ``_background_noise_``) or a 12-class test folder (with ``_silence_`` and/or
        ``_unknown_`` folders).

    Raises
    ------
    DataError
        The folder is missing or has neither layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = {p.name for p in folders}
    if SILENCE in names or UNKNOWN in names:
        clips = [
            Clip(path, folder.name, speaker_of(path), "test")
            for folder in folders
            for path in _audio_files(folder)
        ]
        if not clips:
            raise DataError(f"{root}: the 12-class test layout holds no audio files")
        return DataIndex(root, "test12", clips, [])

    word_folders = [p for p in folders if not p.name.startswith("_")]
    if not word_folders:
        raise DataError(
            f"{root}: no word folders; expected the Speech Commands layout (<word>/<speaker>_nohash_<n>.wav) "
            "or the 12-class test layout (_silence_/, _unknown_/, <keyword>/)"
        )
    validation = _read_list(root, "validation_list.txt")
    testing = _read_list(root, "testing_list.txt")
    use_lists = validation is not None or testing is not None
    validation, testing = validation or set(), testing or set()
    clips = []
    seen = set()
    for folder in word_folders:
        for path in _audio_files(folder):
            rel = f"{folder.name}/{path.name}"
            seen.add(rel)
            if use_lists:
                split = "validation" if rel in validation else "test" if rel in testing else "train"
            else:
                split = which_set(path)
            clips.append(Clip(path, folder.name, speaker_of(path), split))
    if not clips:
        raise DataError(f"{root}: the word folders hold no audio files")
    noise_dir = root / BACKGROUND_DIR
    noise = _audio_files(noise_dir) if noise_dir.is_dir() else []
    missing = sorted((validation | testing) - seen)
    return DataIndex(root, "speech_commands", clips, noise, missing)


@functools.cache
def load_noise(path: Path, sample_rate: int = DEFAULT_SAMPLE_RATE) -> np.ndarray:
    """A background-noise recording, read once a process and kept (they are long and drawn from
    at random: a bounded cache would decode whole recordings again and again)."""
    return load_audio(path, sample_rate)


def noise_region(path: Path, split: str, sample_rate: int = DEFAULT_SAMPLE_RATE) -> np.ndarray:
    """The part of a noise recording that ``split`` may use (see ``NOISE_REGIONS``)."""
    noise = load_noise(path, sample_rate)
    lo, hi = NOISE_REGIONS[split]
    return noise[int(lo * len(noise)) : int(hi * len(noise))]


@dataclass(frozen=True)
class NoiseSlice:
    """A slice of a noise recording, from the part ``split`` may use, scaled to an RMS level."""

    path: Path
    split: str
    start: int  # sample offset within the split's region of the recording
    rms: float  # level of the returned samples (full scale is 1.0)


def random_noise_slice(
    noise_files: Sequence[Path],
    split: str,
    n_samples: int,
    rng: np.random.Generator,
    rms: float,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
) -> NoiseSlice:
    """A random ``n_samples`` slice of a random recording, from ``split``'s region of it."""
    path = noise_files[int(rng.integers(len(noise_files)))]
    region = noise_region(path, split, sample_rate)
    return NoiseSlice(path, split, int(rng.integers(0, max(1, len(region) - n_samples))), rms)


def noise_audio(noise: NoiseSlice, n_samples: int, sample_rate: int = DEFAULT_SAMPLE_RATE) -> np.ndarray:
    """The samples of a :class:`NoiseSlice` at its RMS level, zero-padded to ``n_samples``.

    Levels are set by RMS, not by a gain on the recording, because recordings come at
    any level (the background files of one copy of the data set may be 40 dB quieter
    than another's).
    """
    region = noise_region(noise.path, noise.split, sample_rate)
    audio = region[noise.start : noise.start + n_samples].astype(np.float64)
    level = np.sqrt(np.mean(audio**2)) if len(audio) else 0.0
    audio = audio * (noise.rms / level if level > 0 else 0.0)
    return np.pad(audio, (0, n_samples - len(audio))).astype(np.float32)


@dataclass(frozen=True)
class Example:
    """One labelled model input: a clip on disk, or generated silence."""

    label: str
    path: Path | None = None
    noise: NoiseSlice | None = None


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def examples(
    index: DataIndex,
    split: str,
    keywords: Sequence[str] = DEFAULT_KEYWORDS,
    *,
    silence_percentage: float = SILENCE_PERCENTAGE,
    unknown_percentage: float = 10.0,
    clip_samples: int = DEFAULT_SAMPLE_RATE,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    seed: int = 0,
) -> list[Example]:
    """The labelled examples of one split, balanced as TensorFlow's reference recipe.

    Parameters
    ----------
    index : DataIndex
        From :func:`scan`.
    split : {"train", "validation", "test"}
    keywords : sequence of str
        The words to spot; every other word is ``_unknown_``.
    silence_percentage, unknown_percentage : float
        Silence and unknown examples, each as a percentage of the split's keyword
        clips (the reference recipe's 10 and 10). Unknown clips are a seeded random
        choice; silence is cut from the noise recordings at an RMS level drawn
        log-uniformly from ``SILENCE_RMS_RANGE``.
        The 12-class layout is used as it is (its silence is real, nothing is dropped).
    clip_samples, sample_rate : int
        Length and rate of generated silence.
    seed : int
        Makes the choice of unknowns and the silence reproducible.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    labels_for(keywords)  # validates the keyword list
    clips = [c for c in index.clips if c.split == split]
    labelled = [Example(index.label_of(c, keywords), c.path) for c in clips]
    if index.layout == "test12":
        return labelled
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    known = [e for e in labelled if e.label != UNKNOWN]
    unknown = [e for e in labelled if e.label == UNKNOWN]
    n_unknown = min(len(unknown), math.ceil(len(known) * unknown_percentage / 100))
    chosen = [unknown[i] for i in sorted(rng.permutation(len(unknown))[:n_unknown])]
    n_silence = math.ceil(len(known) * silence_percentage / 100)
    if n_silence and not index.noise_files:
        where = index.root / BACKGROUND_DIR
        problem = "holds no readable audio file" if where.is_dir() else "folder not found"
        raise DataError(f"{where}: {problem} to make silence from")
    silence = [
        Example(
            SILENCE,
            noise=random_noise_slice(
                index.noise_files,
                split,
                clip_samples,
                rng,
                _log_uniform(rng, *SILENCE_RMS_RANGE),
                sample_rate,
            ),
        )
        for _ in range(n_silence)
    ]
    return known + chosen + silence


def load_example(example: Example, clip_samples: int, sample_rate: int = DEFAULT_SAMPLE_RATE) -> np.ndarray:
    """The audio of an example, zero-padded or cut to ``clip_samples``, float32."""
    if example.noise is not None:
        return noise_audio(example.noise, clip_samples, sample_rate).astype(np.float32)
    if example.path is None:
        raise DataError("an example needs a path or a noise slice")
    audio = load_audio(example.path, sample_rate)[:clip_samples]
    return np.pad(audio, (0, clip_samples - len(audio)))


@dataclass
class CheckReport:
    """What :func:`check` found in a data folder."""

    index: DataIndex
    keywords: tuple[str, ...]
    counts: dict[str, Counter[str]]  # split -> label -> clips on disk
    used: dict[str, Counter[str]]  # split -> label -> examples after balancing
    overlap: dict[tuple[str, str], int]  # pairs of splits -> speakers in both
    unreadable: list[tuple[Path, str]]  # path, error message

    @property
    def total_clips(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())


def check(
    root: str | Path, keywords: Sequence[str] = DEFAULT_KEYWORDS, *, progress: bool = False
) -> CheckReport:
    """Index a data folder, probe every file, count clips, and measure speaker overlap.

    Every clip and noise file is read whole, so missing, empty, truncated and non-audio
    files, dangling links, FIFOs and samples that are not finite numbers are listed
    instead of failing later. ``progress``: a bar over the files on stderr (the full
    download's 105,000 take a minute or two).
    """
    index = scan(root)
    keywords = tuple(keywords)
    unreadable = []
    files = [c.path for c in index.clips] + index.noise_files
    for path in bar(files, desc="reading", unit=" files", enabled=progress, leave=False):
        try:
            with warnings.catch_warnings():  # conversions (stereo, 8-bit) are fine here
                warnings.simplefilter("ignore")
                load_audio(path, probe(path).sample_rate)
        except AudioError as e:
            unreadable.append((path, str(e)))
    bad = {path for path, _ in unreadable}
    index.clips = [c for c in index.clips if c.path not in bad]
    index.noise_files = [p for p in index.noise_files if p not in bad]
    counts = {s: Counter(index.label_of(c, keywords) for c in index.clips if c.split == s) for s in SPLITS}
    # Without a readable noise file there is no silence to make (the file is listed as unreadable).
    silence = SILENCE_PERCENTAGE if index.noise_files or index.layout == "test12" else 0.0
    used = {
        s: Counter(e.label for e in examples(index, s, keywords, silence_percentage=silence))
        if counts[s]
        else Counter()
        for s in SPLITS
    }
    speakers = {s: {c.speaker for c in index.clips if c.split == s and c.speaker} for s in SPLITS}
    overlap = {(a, b): len(speakers[a] & speakers[b]) for i, a in enumerate(SPLITS) for b in SPLITS[i + 1 :]}
    return CheckReport(index, keywords, counts, used, overlap, unreadable)


def format_check(report: CheckReport) -> str:
    """A plain-text table of a :class:`CheckReport`."""
    index = report.index
    splits = [s for s in SPLITS if report.counts[s]]
    labels = labels_for(report.keywords)
    width = max(len(label) for label in labels) + 2
    lines = [f"{index.root}: {index.layout} layout, {report.total_clips} clips on disk", ""]
    lines.append("label".ljust(width) + "".join(s.rjust(12) for s in splits) + "total".rjust(9))
    for label in labels:
        row = [report.counts[s][label] for s in splits]
        note = ""
        if label == SILENCE and index.layout == "speech_commands":
            row = [report.used[s][SILENCE] for s in splits]
            note = f"  (generated from {len(index.noise_files)} {BACKGROUND_DIR} files)"
        lines.append(label.ljust(width) + "".join(f"{n:12d}" for n in row) + f"{sum(row):9d}" + note)
    lines.append("clips".ljust(width) + "".join(f"{sum(report.counts[s].values()):12d}" for s in splits))
    if index.layout == "speech_commands":
        lines.append(
            "used".ljust(width)
            + "".join(f"{sum(report.used[s].values()):12d}" for s in splits)
            + "  (after balancing: unknown and silence each 10% of keyword clips)"
        )
    lines.append("")
    speakers = {s: len({c.speaker for c in index.clips if c.split == s and c.speaker}) for s in splits}
    lines.append("speakers: " + ", ".join(f"{s} {speakers[s]}" for s in splits))
    lines.append(
        "speaker overlap between splits: "
        + ", ".join(f"{a}/{b} {n}" for (a, b), n in report.overlap.items() if a in splits and b in splits)
        if len(splits) > 1
        else "speaker overlap between splits: none (one split)"
    )
    if any(report.overlap.values()):
        lines.append("WARNING: some speakers are in more than one split; accuracy will be overestimated")
    if index.listed_missing:
        lines.append(f"listed in validation/testing lists but missing: {len(index.listed_missing)}")
        lines += [f"  {p}" for p in index.listed_missing[:20]]
    lines.append(f"unreadable files: {len(report.unreadable)}")
    lines += [f"  {msg}" for _, msg in report.unreadable]
    return "\n".join(lines)
