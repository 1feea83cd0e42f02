"""Audio reading: conversions with warnings, and a one-line error for each bad file."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kws.audio import AudioConversionWarning, load_audio, probe, write_wav
from kws.errors import AudioError
from kws.features import FRONTENDS, log_mel
from kws.fileio import write_text_atomic


@pytest.fixture()
def clip(speech_commands: Path, tmp_path: Path) -> Path:
    """A real 16 kHz clip copied into the test's folder."""
    dst = tmp_path / "yes.wav"
    shutil.copy(sorted((speech_commands / "yes").glob("*.wav"))[0], dst)
    return dst


def test_reads_real_clip_as_float32_mono(clip: Path) -> None:
    audio = load_audio(clip)
    raw, rate = sf.read(clip, dtype="int16")
    assert rate == 16000 and audio.dtype == np.float32 and audio.ndim == 1
    np.testing.assert_array_equal(audio, raw / 32768.0)


def test_8khz_is_resampled_with_warning(fsdd: Path) -> None:
    path = fsdd / "3_jackson_0.wav"
    native, rate = sf.read(path)
    assert rate == 8000
    with pytest.warns(AudioConversionWarning, match="8000 Hz to 16000 Hz"):
        audio = load_audio(path)
    assert abs(len(audio) - 2 * len(native)) <= 2
    # Resampling keeps the signal: the spectrum's energy below 4 kHz is preserved.
    assert np.sum(audio.astype(np.float64) ** 2) / 2 == pytest.approx(np.sum(native**2), rel=0.05)


def test_stereo_is_averaged_with_warning(clip: Path, tmp_path: Path) -> None:
    mono = load_audio(clip)
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([mono, np.zeros_like(mono)], axis=1), 16000, subtype="FLOAT")
    with pytest.warns(AudioConversionWarning, match="2-channel"):
        audio = load_audio(stereo)
    np.testing.assert_allclose(audio, mono / 2, atol=1e-7)


def test_8bit_is_widened_with_warning(clip: Path, tmp_path: Path) -> None:
    path = tmp_path / "u8.wav"
    sf.write(path, load_audio(clip), 16000, subtype="PCM_U8")
    with pytest.warns(AudioConversionWarning, match="8-bit"):
        audio = load_audio(path)
    assert np.abs(audio - load_audio(clip)).max() < 2 / 128


def _wav_claiming_rate(path: Path, source: Path, rate: int) -> None:
    """A copy of a 16-bit WAV whose header claims another sample rate (and matching byte rate)."""
    data = bytearray(source.read_bytes())
    assert data[:4] == b"RIFF" and data[12:16] == b"fmt "
    data[24:28] = struct.pack("<I", rate)
    data[28:32] = struct.pack("<I", rate * 2)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p, src: None, "file not found"),
        (lambda p, src: _wav_claiming_rate(p, src, 1), "sample rate 1 Hz is outside 4000-384000 Hz"),
        (lambda p, src: _wav_claiming_rate(p, src, 16_000_000), "sample rate 16000000 Hz is outside"),
        (lambda p, src: p.write_bytes(b""), "file is empty"),
        (lambda p, src: p.write_bytes(src.read_bytes()[: len(src.read_bytes()) // 2]), "truncated"),
        (lambda p, src: p.write_bytes(src.read_bytes()[:40]), "truncated"),
        (lambda p, src: p.write_text("this is a text file, not audio\n" * 20), "not an audio file"),
        (lambda p, src: sf.write(p, np.zeros(0, dtype=np.float32), 16000), "no audio samples"),
        (lambda p, src: p.mkdir(), "not a file"),
    ],
    ids=[
        "missing",
        "1-hz-header",
        "16-mhz-header",
        "empty",
        "truncated-data",
        "truncated-header",
        "not-audio",
        "zero-length",
        "directory",
    ],
)
def test_bad_input_gives_one_line_error_naming_file(make, message: str, clip: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    make(bad, clip)
    with pytest.raises(AudioError) as info:
        load_audio(bad)
    text = str(info.value)
    assert text.startswith(str(bad)) and message in text and "\n" not in text
    with pytest.raises(AudioError, match=message):
        probe(bad)


def test_non_finite_samples_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    sf.write(path, np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="not finite"):
        load_audio(path)


def test_write_wav_round_trips_and_leaves_no_temporary(clip: Path, tmp_path: Path) -> None:
    audio = load_audio(clip)
    out = tmp_path / "out" / "copy.wav"
    write_wav(out, np.concatenate([audio, [1.5, -1.5]]))
    back = load_audio(out)
    np.testing.assert_allclose(back[:-2], audio, atol=1 / 32768)
    assert back[-2] == pytest.approx(32767 / 32768) and back[-1] == -1.0  # clipped, not wrapped
    assert [p.name for p in out.parent.iterdir()] == ["copy.wav"]


def test_atomic_writes_get_the_usual_file_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "report.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


class _InterruptedInCallback:
    """An open file whose reads into libsndfile's buffer are cut by Ctrl-C, as a signal
    arriving while soundfile's cffi read callback runs would."""

    def __init__(self, file: object) -> None:
        self._file = file

    def readinto(self, buffer: object) -> int:
        raise KeyboardInterrupt

    def __getattr__(self, name: str) -> object:
        return getattr(self._file, name)

    def __enter__(self) -> _InterruptedInCallback:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()  # type: ignore[attr-defined]


def test_an_interrupt_inside_the_decoders_callback_is_not_lost(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cffi drops an exception raised in a callback: without care a Ctrl-C or SIGTERM there
    became "cannot decode audio" on a good file (kws bench, SIGTERM 5 s in, 1 run in 5)."""
    real_open = Path.open

    def open_(self: Path, mode: str = "r", *args: object, **kwargs: object) -> object:
        file = real_open(self, mode, *args, **kwargs)  # type: ignore[call-overload]
        return _InterruptedInCallback(file) if self == clip and mode == "rb" else file

    monkeypatch.setattr(Path, "open", open_)
    with pytest.raises(KeyboardInterrupt):
        load_audio(clip)
    monkeypatch.undo()
    assert len(load_audio(clip)) == 16000  # and nothing is left behind


def test_an_opus_file_reads_as_its_wav_does(speech: Path, tmp_path: Path) -> None:
    """Ogg Opus (the format of the shared sentences) and Vorbis read like WAV: same length and,
    through lossy coding at libsndfile's default rate, the same log-mel image to a few pixel
    units (a read sentence: 1.9-2.4 measured; a wrong rate, offset or scale would be tens)."""
    config = FRONTENDS["logmel_image"]
    sentence = sorted((speech / "librispeech").glob("*.opus"))[0]
    wav = tmp_path / "sentence.wav"
    sf.write(wav, load_audio(sentence), 16000, subtype="PCM_16")
    reference = load_audio(wav)
    for suffix, subtype in ((".opus", "OPUS"), (".ogg", "VORBIS")):
        coded = tmp_path / f"sentence{suffix}"
        sf.write(coded, reference, 16000, format="OGG", subtype=subtype)
        assert probe(coded).subtype == subtype
        audio = load_audio(coded)
        assert len(audio) == len(reference)
        difference = np.abs(log_mel(audio, config) - log_mel(reference, config)).mean()
        assert difference < 3.0, f"{subtype}: {difference:.2f} pixel units on average"


def _ogg_pages(data: bytes) -> list[int]:
    """Where each page of an Ogg file starts."""
    starts, pos = [], 0
    while pos < len(data):
        starts.append(pos)
        segments = data[pos + 27 : pos + 27 + data[pos + 26]]
        pos += 27 + len(segments) + sum(segments)
    return starts


def test_a_cut_or_damaged_ogg_file_is_a_one_line_error(clip: Path, tmp_path: Path) -> None:
    """libsndfile decodes a cut Ogg file up to the cut without a word: kws says it is truncated,
    whether the cut falls inside a page or between two; other damage names libsndfile's reason."""
    whole = tmp_path / "whole.opus"
    sf.write(whole, np.tile(load_audio(clip), 4), 16000, format="OGG", subtype="OPUS")
    data = whole.read_bytes()
    pages = _ogg_pages(data)
    assert len(pages) > 3
    cases = {
        "inside-a-page": (data[: (pages[-2] + pages[-1]) // 2], "truncated: its last Ogg page is cut"),
        "between-pages": (data[: pages[-1]], "truncated: the Ogg stream ends without its end-of-stream page"),
        "not-ogg-audio": (b"OggS" + bytes(200), "truncated or damaged"),
        "text": (b"not audio at all\n" * 20, "not an audio file, or a format libsndfile cannot read"),
    }
    padded = tmp_path / "padded.opus"  # bytes after the end-of-stream page: read as libsndfile reads them
    padded.write_bytes(data + bytes(10))
    assert len(load_audio(padded)) == len(load_audio(whole))
    for name, (content, message) in cases.items():
        bad = tmp_path / f"{name}.ogg"
        bad.write_bytes(content)
        with pytest.raises(AudioError) as info:
            load_audio(bad)
        text = str(info.value)
        assert text.startswith(str(bad)) and message in text and "\n" not in text, (name, text)
