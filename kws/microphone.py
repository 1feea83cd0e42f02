"""Microphone input: live audio from a sounddevice (PortAudio) input into a Detector.

The device is opened at the model's rate (16 kHz) when it accepts it; otherwise at its
own default rate, and the audio is resampled on the fly (soxr, streaming). Every problem
the user can fix (no PortAudio library, no input device, a bad ``--device``) becomes one
:class:`~kws.errors.KwsError` line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np
import soxr

from kws.errors import KwsError
from kws.stream import Detection, Detector


class MicrophoneError(KwsError):
    """No usable audio input: PortAudio missing, no input device, a device that cannot be opened."""


PORTAUDIO_HINT = (
    "install the PortAudio library (Debian/Ubuntu: apt install libportaudio2; "
    "Fedora: dnf install portaudio; macOS: brew install portaudio)"
)


def _sounddevice() -> ModuleType:
    """Import sounddevice, turning its missing-PortAudio OSError into a MicrophoneError."""
    try:
        import sounddevice
    except OSError as e:  # raised at import when libportaudio is not installed
        raise MicrophoneError(f"cannot use the microphone: {e}; {PORTAUDIO_HINT}") from None
    return sounddevice


def list_devices() -> str:
    """The audio input devices, one a line: index, name, channels and default rate."""
    sd = _sounddevice()
    lines = []
    default = sd.default.device[0]
    for index, device in enumerate(sd.query_devices()):
        if device["max_input_channels"] > 0:
            mark = "*" if index == default else " "
            lines.append(
                f"{mark} {index:3d}  {device['name']}  ({device['max_input_channels']} in, "
                f"{device['default_samplerate']:.0f} Hz)"
            )
    if not lines:
        return "no audio input devices"
    return "\n".join(lines) + "\n(* = default; choose one with --device INDEX or a part of its name)"


def _device(sd: ModuleType, device: int | str | None) -> dict[str, Any]:
    """The input device's description; a clear error if there is none or it is not an input."""
    try:
        info = sd.query_devices(device, kind="input" if device is None else None)
    except (ValueError, sd.PortAudioError) as e:
        which = "no default audio input device" if device is None else f"audio device {device!r}: {e}"
        raise MicrophoneError(f"{which}; see `kws listen --list-devices`") from None
    if info["max_input_channels"] < 1:
        raise MicrophoneError(f"audio device {info['name']!r} has no input channels")
    return dict(info)


def capture_rate(device: int | str | None, sample_rate: int) -> int:
    """The rate to open ``device`` at: ``sample_rate`` if it accepts it, else its own default rate."""
    sd = _sounddevice()
    info = _device(sd, device)
    try:
        sd.check_input_settings(device=device, channels=1, samplerate=sample_rate, dtype="float32")
        return sample_rate
    except (ValueError, sd.PortAudioError):
        return int(info["default_samplerate"])


@dataclass
class Session:
    """What a listening session saw: its events, length and how often the input overflowed."""

    events: list[Detection] = field(default_factory=list)
    seconds: float = 0.0
    overflows: int = 0
    capture_rate: int = 0


def listen(
    detector: Detector,
    *,
    device: int | str | None = None,
    rate: int | None = None,
    block: float = 0.05,
    duration: float | None = None,
    on_start: Callable[[Session], None] | None = None,
    on_event: Callable[[Detection], None] | None = None,
    on_block: Callable[[np.ndarray, Detector], None] | None = None,
) -> Session:
    """Stream the microphone through ``detector`` until ``duration`` seconds or Ctrl-C.

    Parameters
    ----------
    detector : Detector
        Reset at the start; its front-end's rate is the rate the model needs.
    device : int, str or None
        sounddevice input device (index or part of a name); None for the default.
    rate : int or None
        Capture rate; None picks the model's rate if the device takes it, else the
        device's default rate. Audio at another rate is resampled to the model's.
    block : float
        Seconds read per block.
    duration : float or None
        Stop after this many seconds of audio; None: until Ctrl-C.
    on_start : callable, optional
        Called once the input stream runs (audio is being captured from then on).
    on_event : callable, optional
        Called with each detection as it fires.
    on_block : callable, optional
        Called after each block with its samples (at the model's rate) and the detector,
        e.g. for a level meter.

    Returns
    -------
    Session
        Also on Ctrl-C (the KeyboardInterrupt is absorbed: stopping is the normal end).
    """
    sd = _sounddevice()
    model_rate = detector.frontend.config.sample_rate
    rate = rate or capture_rate(device, model_rate)
    resampler = soxr.ResampleStream(rate, model_rate, 1, dtype="float32") if rate != model_rate else None
    session = Session(capture_rate=rate)
    detector.reset()
    frames = max(1, round(block * rate))
    try:
        stream = sd.InputStream(device=device, channels=1, samplerate=rate, dtype="float32", blocksize=frames)
    except (ValueError, sd.PortAudioError) as e:
        raise MicrophoneError(f"cannot open audio input {device!r} at {rate} Hz: {e}") from None
    started = time.monotonic()
    try:
        with stream:
            if on_start is not None:
                on_start(session)
            while duration is None or session.seconds < duration:
                data, overflowed = stream.read(frames)
                session.overflows += bool(overflowed)
                audio = data[:, 0]
                if resampler is not None:
                    audio = resampler.resample_chunk(audio)
                session.seconds += len(data) / rate
                for event in detector.push(audio):
                    session.events.append(event)
                    if on_event is not None:
                        on_event(event)
                if on_block is not None:
                    on_block(audio, detector)
    except KeyboardInterrupt:
        pass
    except sd.PortAudioError as e:
        raise MicrophoneError(f"audio input stopped after {time.monotonic() - started:.1f} s: {e}") from None
    return session


def level_dbfs(audio: np.ndarray) -> float:
    """RMS level of a block in dB relative to full scale (-100 for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    return 20 * np.log10(max(rms, 1e-5))
