"""Audio files in and out: float32 mono at the front-end's sample rate.

Every reading problem becomes an :class:`~kws.errors.AudioError` whose message names
the file and the problem in one line. What can be converted safely (more than one
channel, another sample rate, 8-bit samples) is converted, with a warning.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from kws.errors import AudioError
from kws.fileio import atomic_path

DEFAULT_SAMPLE_RATE = 16000


class AudioConversionWarning(UserWarning):
    """Audio was converted (downmixed, resampled, widened from 8 bits) on reading."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header without decoding the samples."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


# What a header may ask of us: rates that resampling turns into a sane amount of audio.
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 384000
MAX_CHANNELS = 64


@contextlib.contextmanager
def _interrupts_kept() -> Iterator[None]:
    """Raise a Ctrl-C (or SIGTERM) that arrived inside libsndfile's read callbacks after the call.

    soundfile reads an open file through cffi callbacks, and cffi prints and drops an
    exception raised in a callback: the interrupt was lost and the read failed as "cannot
    decode audio" on a good file (seen once in five SIGTERMs 5 s into ``kws bench``).
    """
    caught: list[BaseException] = []
    previous = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            caught.append(unraisable.exc_value)
        else:
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous
        if caught:
            raise caught[0]


def _wav_truncation(path: Path, file_size: int) -> str | None:
    """Return a message if a RIFF/WAVE file's data chunk claims more bytes than the file has.

    libsndfile reads a truncated WAV silently (it just returns fewer frames), so a copy
    cut short by a failed transfer would pass unnoticed without this check.
    """
    with path.open("rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= file_size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                available = file_size - pos - 8
                # 0 and 0xFFFFFFFF mark a stream whose length was never filled in.
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                    return f"truncated: its header declares {chunk_size} bytes of audio, the file holds {available}"
                return None
            pos += 8 + chunk_size + (chunk_size & 1)
        return "truncated: no audio data chunk before the end of the file"


OGG_END_OF_STREAM = 0x04  # the flag of an Ogg stream's last page


def _ogg_truncation(path: Path, file_size: int) -> str | None:
    """Return a message if an Ogg file (Opus, Vorbis) ends before its stream does.

    libsndfile decodes a cut Ogg file up to the cut without a word, as it does a WAV. An Ogg
    stream is a chain of pages, the last flagged end-of-stream: walk the page headers (about
    two reads a page, some 7,000 for an hour of Opus) and check the chain reaches that page.
    Bytes after an end-of-stream page that start no page are left alone, as libsndfile does.
    """
    with path.open("rb") as f:
        if f.read(4) != b"OggS":
            return None
        pos, last_flags = 0, 0
        while pos < file_size:
            f.seek(pos)
            header = f.read(27)  # "OggS", version, flags, granule, serial, sequence, CRC, segments
            if len(header) < 27 or header[:4] != b"OggS":
                if last_flags & OGG_END_OF_STREAM:
                    return None  # trailing bytes after the stream's end
                return f"truncated or damaged: no Ogg page where one should start (byte {pos})"
            lacing = f.read(header[26])
            end = pos + 27 + len(lacing) + sum(lacing)
            if len(lacing) < header[26] or end > file_size:
                return f"truncated: its last Ogg page is cut ({file_size - pos} of {end - pos} bytes)"
            pos, last_flags = end, header[5]
        if not last_flags & OGG_END_OF_STREAM:
            return "truncated: the Ogg stream ends without its end-of-stream page"
    return None


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Check that ``path`` is a readable audio file and return its header facts.

    Parameters
    ----------
    path : path
        A WAV, FLAC, Ogg (Opus, Vorbis) or other file libsndfile reads.

    Raises
    ------
    AudioError
        The file is missing, not a regular file, empty, truncated, not audio, or
        holds no samples.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: {'dangling symbolic link' if path.is_symlink() else 'file not found'}")
    if not path.is_file():
        raise AudioError(f"{path}: not a file")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    problem = _wav_truncation(path, size) or _ogg_truncation(path, size)
    if problem:
        raise AudioError(f"{path}: {problem}")
    try:
        # Opened here, not by name: libsndfile takes names as UTF-8 only, and a file's
        # name need not be (Python keeps such bytes as surrogates).
        with path.open("rb") as f, _interrupts_kept():
            info = sf.info(f)
    except OSError as e:
        raise AudioError(f"{path}: cannot be read ({e.strerror or e})") from None
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{path}: not an audio file, or a format libsndfile cannot read ({e})") from None
    if info.frames <= 0:
        raise AudioError(f"{path}: contains no audio samples")
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        # A header's rate sets how much resampling makes of the samples: 1 Hz would make 16,000x.
        raise AudioError(
            f"{path}: sample rate {info.samplerate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    if info.channels > MAX_CHANNELS:
        raise AudioError(f"{path}: {info.channels} channels; at most {MAX_CHANNELS} are read")
    return AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames), str(info.subtype))


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels of a ``(frames, channels)`` array; a 1-D array is returned as is."""
    if audio.ndim == 1:
        return audio
    return audio.mean(axis=1)


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample mono ``audio`` from ``orig_rate`` to ``target_rate`` Hz (soxr, high quality).

    Parameters
    ----------
    audio : np.ndarray, 1-D
        Samples.
    orig_rate, target_rate : int
        Sample rates in Hz.
    """
    if orig_rate == target_rate:
        return audio
    return np.asarray(soxr.resample(audio, orig_rate, target_rate, quality="HQ"))


def load_audio(path: str | os.PathLike[str], sample_rate: int = DEFAULT_SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as float32 mono samples in [-1, 1] at ``sample_rate``.

    Parameters
    ----------
    path : path
        The file (WAV, FLAC, Ogg Opus or Vorbis, or another format libsndfile reads).
    sample_rate : int
        The rate to return, in Hz. Other rates are resampled with a warning.

    Returns
    -------
    np.ndarray, float32, shape (n,)

    Raises
    ------
    AudioError
        See :func:`probe`; also for samples that are not finite numbers.

    Warns
    -----
    AudioConversionWarning
        When the file had several channels (averaged), another sample rate (resampled)
        or 8-bit samples (low resolution). The message names the conversion, not the
        file, so Python's default filter shows each kind once, not once a clip.
    """
    info = probe(path)
    try:
        with info.path.open("rb") as f, _interrupts_kept():
            audio, rate = sf.read(f, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{info.path}: cannot decode audio ({e})") from None
    if audio.shape[0] == 0:
        raise AudioError(f"{info.path}: contains no audio samples")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{info.path}: contains samples that are not finite numbers (NaN or Inf)")
    if audio.shape[1] > 1:
        warnings.warn(
            f"{audio.shape[1]}-channel audio averaged to mono", AudioConversionWarning, stacklevel=2
        )
    if info.subtype in ("PCM_U8", "PCM_S8"):
        warnings.warn("8-bit audio widened to float; expect more noise", AudioConversionWarning, stacklevel=2)
    mono = to_mono(audio)
    if rate != sample_rate:
        warnings.warn(
            f"audio resampled from {rate} Hz to {sample_rate} Hz", AudioConversionWarning, stacklevel=2
        )
        mono = resample(mono, rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def write_wav(
    path: str | os.PathLike[str], audio: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE
) -> None:
    """Write mono float ``audio`` to a 16-bit PCM WAV file, atomically.

    Parameters
    ----------
    path : path
        Destination; replaced only once the new file is complete.
    audio : np.ndarray, 1-D
        Samples in [-1, 1]; values outside are clipped (libsndfile would wrap them).
    sample_rate : int
        Sample rate in Hz.
    """
    with atomic_path(path, suffix=".wav") as tmp:
        samples = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
        sf.write(str(tmp), samples, sample_rate, subtype="PCM_16", format="WAV")


def word_extent(
    audio: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE, floor_db: float = -25.0
) -> tuple[float, float]:
    """Start and end (seconds) of the speech in a clip: 10-ms frames within ``floor_db`` of its loudest."""
    hop = sample_rate // 100
    n = len(audio) // hop
    energy = np.square(audio[: n * hop].astype(np.float64)).reshape(n, hop).mean(axis=1)
    loud = np.flatnonzero(10 * np.log10(energy + 1e-12) >= 10 * np.log10(energy.max() + 1e-12) + floor_db)
    return float(loud[0] * hop / sample_rate), float((loud[-1] + 1) * hop / sample_rate)
