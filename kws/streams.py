"""Labelled streams to measure a detector on: test clips laid end to end with gaps.

Keywords at known times, unknown words between them, all over background noise at a
chosen SNR (:func:`build_stream`); or a folder's recordings of speech without keywords
(:func:`build_negative_stream`). Each keyword's extent inside its 1-s clip is measured
from its energy, so latency is counted from the end of the spoken word, not of the clip.
Deterministic for a given seed. :mod:`kws.streameval` scores a detector on them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.audio import load_audio, word_extent
from kws.data import SILENCE, UNKNOWN, Example, examples, keywords_of, load_example, scan
from kws.errors import DataError


@dataclass(frozen=True)
class Word:
    """A word placed in a stream: its label, where it is spoken (seconds) and its file."""

    label: str
    start: float
    end: float
    source: str = ""


# Every placed clip is scaled to this RMS; the background is set relative to it (SNR).
SPEECH_RMS = 0.05


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def _lay_out(
    clips: Iterator[tuple[np.ndarray, str, str]],
    total: int | None,
    gap: tuple[float, float],
    rng: np.random.Generator,
    sample_rate: int,
) -> tuple[np.ndarray, list[Word]]:
    """Speech alone: ``(audio, label, source)`` clips end to end, ``gap`` seconds apart.

    With ``total`` (samples), clips are taken until the next would not fit; with None,
    every clip is placed and the stream ends one gap after the last.
    """
    pieces: list[np.ndarray] = []
    words: list[Word] = []
    pos = 0
    while True:
        silence = int(rng.uniform(*gap) * sample_rate)
        clip, label, source = next(clips, (None, "", ""))
        if clip is None:
            break
        if total is not None and pos + silence + len(clip) > total:
            break
        start, end = word_extent(clip, sample_rate)
        pieces += [
            np.zeros(silence, np.float32),
            (clip / max(_rms(clip), 1e-6) * SPEECH_RMS).astype(np.float32),
        ]
        pos += silence
        words.append(Word(label, pos / sample_rate + start, pos / sample_rate + end, source))
        pos += len(clip)
    end_length = total if total is not None else pos + int(rng.uniform(*gap) * sample_rate)
    pieces.append(np.zeros(end_length - pos, np.float32))
    return np.concatenate(pieces), words


def _over_background(
    speech: np.ndarray,
    background: Sequence[Example],
    snr_db: float,
    rng: np.random.Generator,
    sample_rate: int,
) -> np.ndarray:
    """``speech`` over background clips (noise recordings or real silence) end to end at ``snr_db``."""
    noise = np.concatenate(
        [
            load_example(background[int(rng.integers(len(background)))], sample_rate, sample_rate)
            for _ in range(len(speech) // sample_rate + 1)
        ]
    )[: len(speech)]
    noise *= SPEECH_RMS / 10 ** (snr_db / 20) / max(_rms(noise), 1e-9)
    return np.clip(speech + noise, -1, 1).astype(np.float32)


def _pools(
    data_dir: str | Path, labels: Sequence[str], split: str, sample_rate: int
) -> tuple[list[Example], list[Example], list[Example]]:
    """A split's keyword, unknown-word and background (silence) examples."""
    chosen = examples(
        scan(data_dir), split, keywords_of(labels), clip_samples=sample_rate, unknown_percentage=100
    )
    keyword_pool = [e for e in chosen if e.label not in (SILENCE, UNKNOWN)]
    unknown_pool = [e for e in chosen if e.label == UNKNOWN]
    background_pool = [e for e in chosen if e.label == SILENCE]
    if not background_pool:
        raise DataError(
            f"{data_dir}: no background noise or silence clips in split {split!r} to build a stream on"
        )
    return keyword_pool, unknown_pool, background_pool


def build_stream(
    data_dir: str | Path,
    labels: Sequence[str],
    *,
    split: str = "test",
    minutes: float = 10.0,
    unknown_share: float = 0.25,
    gap: tuple[float, float] = (1.0, 3.0),
    snr_db: float = 20.0,
    seed: int = 0,
    sample_rate: int = 16000,
) -> tuple[np.ndarray, list[Word]]:
    """A long stream of one split's clips over background noise, with its ground truth.

    Parameters
    ----------
    data_dir : path
        Speech Commands folder or 12-class test folder.
    labels : sequence of str
        The model's labels; its keywords are placed, other words are unknown.
    split : str
        Which clips to use (the 12-class layout is all ``test``).
    minutes : float
        Length of the stream.
    unknown_share : float
        Fraction of placed words that are unknown words.
    gap : (float, float)
        Seconds of background between words, uniform in this range.
    snr_db : float
        Speech RMS over background RMS.
    seed : int
        Makes the stream reproducible.
    sample_rate : int

    Returns
    -------
    audio : np.ndarray, float32
    words : list of Word
        Every placed word (keywords and unknowns) with its spoken extent.
    """
    keyword_pool, unknown_pool, background_pool = _pools(data_dir, labels, split, sample_rate)
    if not keyword_pool:
        raise DataError(f"{data_dir}: no keyword clips in split {split!r} to build a stream from")
    if minutes * 60 < 1:
        raise DataError(f"a stream needs at least a second of audio, not {minutes:g} minutes")
    rng = np.random.default_rng(seed)

    def clips() -> Iterator[tuple[np.ndarray, str, str]]:
        while True:
            pool = unknown_pool if unknown_pool and rng.uniform() < unknown_share else keyword_pool
            example = pool[int(rng.integers(len(pool)))]
            yield load_example(example, sample_rate, sample_rate), example.label, str(example.path)

    speech, words = _lay_out(clips(), int(minutes * 60 * sample_rate), gap, rng, sample_rate)
    return _over_background(speech, background_pool, snr_db, rng, sample_rate), words


def build_negative_stream(
    files: Sequence[Path],
    data_dir: str | Path,
    labels: Sequence[str],
    *,
    split: str = "test",
    gap: tuple[float, float] = (1.0, 3.0),
    snr_db: float = 20.0,
    seed: int = 0,
    sample_rate: int = 16000,
) -> tuple[np.ndarray, list[Word]]:
    """Every recording of ``files`` once, in a seeded order, over ``data_dir``'s background noise.

    The recordings hold no keyword, so every detection on the stream is a false alarm
    (:func:`score`). Each is placed whole, at the same speech level as :func:`build_stream`'s
    words, with ``gap`` seconds of background between them; the words are labelled
    ``_unknown_`` and keep their file name (``Word.source``) to say which set off a false
    alarm.

    Parameters
    ----------
    files : sequence of path
        Audio files of speech without keywords (:func:`kws.data.negative_files`).
    data_dir, labels, split
        Where the background comes from: ``split``'s silence examples, as for
        :func:`build_stream`.
    gap, snr_db, seed, sample_rate
        As for :func:`build_stream`.
    """
    if not files:
        raise DataError("no negative recordings to build a stream from")
    _, _, background_pool = _pools(data_dir, labels, split, sample_rate)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(files))

    def clips() -> Iterator[tuple[np.ndarray, str, str]]:
        for i in order:
            yield load_audio(files[i], sample_rate), UNKNOWN, str(files[i])

    speech, words = _lay_out(clips(), None, gap, rng, sample_rate)
    return _over_background(speech, background_pool, snr_db, rng, sample_rate), words
