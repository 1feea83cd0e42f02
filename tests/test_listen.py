"""The live microphone path: a PulseAudio null sink's monitor as the microphone, real clips played into it."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import interruptible, need, run_kws

from kws.audio import load_audio
from kws.bundled import STREAMING_VARIANT, bundled_model, sample_clips
from kws.features import clip_features
from kws.microphone import MicrophoneError, Session, listen
from kws.runtime import load_runner
from kws.stream import Detector

pytestmark = pytest.mark.system  # the live microphone, through a virtual PulseAudio source in real time

SINK = "kwsmic"
GAP = 1.5  # seconds of silence between clips


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private PulseAudio daemon whose null sink's monitor is the default source; yields the device name."""
    need("libportaudio2", library="portaudio")
    need("pulseaudio", program="pulseaudio")
    need("pulseaudio-utils", program="paplay")
    runtime = tmp_path_factory.mktemp("pulse")
    with pytest.MonkeyPatch.context() as mp:
        # A daemon of our own, whatever else runs on the machine; clients find it by this path.
        mp.setenv("PULSE_RUNTIME_PATH", str(runtime))
        mp.setenv("PULSE_STATE_PATH", str(runtime))
        mp.setenv("PULSE_SERVER", f"unix:{runtime}/native")  # never the user's own daemon
        daemon = subprocess.Popen(
            [
                "pulseaudio",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "-n",
                "--load=module-native-protocol-unix",
                f"--load=module-null-sink sink_name={SINK} rate=16000 channels=1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                if subprocess.run(["pactl", "info"], capture_output=True, check=False).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the PulseAudio daemon did not start")
            subprocess.run(["pactl", "set-default-source", f"{SINK}.monitor"], check=True)
            yield "pulse"
        finally:
            daemon.terminate()
            daemon.wait(timeout=10)


@pytest.fixture(scope="module")
def clips() -> list[Path]:
    """The bundled sample clips (test speakers), each checked to be classified right offline."""
    runner = load_runner(bundled_model(variant=STREAMING_VARIANT))
    labels = runner.info.labels
    for path in sample_clips():
        p = runner.run_clip(clip_features(load_audio(path), runner.info.frontend))
        expected = path.stem if path.stem in labels else "_unknown_"
        assert labels[int(np.argmax(p))] == expected, f"{path.name} is misclassified offline"
    keywords = [p for p in sample_clips() if p.stem in labels]
    unknown = [p for p in sample_clips() if p.stem not in labels]
    assert len({p.stem for p in keywords}) >= 3 and unknown
    return [*keywords[:2], unknown[0], *keywords[2:]]  # the unknown word among the keywords


def play(clips: list[Path]) -> None:
    """Play the clips into the null sink, with silence between them."""
    time.sleep(GAP)
    for path in clips:
        subprocess.run(["paplay", "-d", SINK, str(path)], check=True)
        time.sleep(GAP)


def expected(clips: list[Path]) -> list[str]:
    labels = load_runner(bundled_model(variant=STREAMING_VARIANT)).info.labels
    return [p.stem for p in clips if p.stem in labels]


@dataclass
class Heard:
    """One playback as two listeners heard it."""

    clips: list[Path]
    returncode: int  # `kws listen --json` in a subprocess, at the model's 16 kHz
    stdout: str
    stderr: str
    session: Session  # listen() in this process, capturing at 44.1 kHz
    detector: Detector


@pytest.fixture(scope="module")
def heard(microphone: str, clips: list[Path]) -> Heard:
    """The clips played once into the microphone, heard at the same time by ``kws listen`` and
    by :func:`listen` capturing at another rate (each playback takes ~20 s of real time)."""
    duration = len(clips) * (1 + GAP) + 2 * GAP + 2
    command = [sys.executable, "-m", "kws", "listen", "--json", "--device", microphone]
    proc = subprocess.Popen(
        [*command, "--duration", str(duration)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("listening")  # printed once the input stream runs
    detector = Detector(load_runner(bundled_model(variant=STREAMING_VARIANT)))
    started = threading.Event()
    player = threading.Thread(target=lambda: (started.wait(10), play(clips)))
    player.start()
    try:  # in the main thread: listen() handles Ctrl-C
        session = listen(
            detector, device=microphone, rate=44100, duration=duration, on_start=lambda _: started.set()
        )
    except BaseException:
        proc.kill()  # no `kws listen` left running after a failed set-up
        raise
    finally:
        started.set()
        player.join()
    out, err = proc.communicate(timeout=60)
    return Heard(clips, proc.returncode, out, err, session, detector)


def test_kws_listen_reports_the_keywords_played_into_the_microphone(heard: Heard) -> None:
    assert heard.returncode == 0, heard.stderr
    events = [json.loads(line) for line in heard.stdout.splitlines()]
    assert [e["label"] for e in events] == expected(heard.clips), "\n".join(map(str, events))
    assert f"{len(events)} detections" in heard.stderr and "input overflows: 0" in heard.stderr
    # One event per played keyword, at least a clip-and-gap apart.
    assert all(b["time"] - a["time"] > 1 + GAP / 2 for a, b in itertools.pairwise(events))


def test_capture_at_another_rate_is_resampled(heard: Heard) -> None:
    assert heard.session.capture_rate == 44100
    assert [e.label for e in heard.session.events] == expected(heard.clips)
    # 44.1 kHz in, the model's 16 kHz through the front-end: frame count matches the time listened.
    assert abs(heard.detector.frame_count * 0.02 - heard.session.seconds) < 0.2


def test_unknown_device_is_a_clear_error(microphone: str) -> None:
    detector = Detector(load_runner(bundled_model(variant=STREAMING_VARIANT)))
    with pytest.raises(MicrophoneError, match=r"no-such-microphone.*--list-devices"):
        listen(detector, device="no-such-microphone", duration=1)


def test_list_devices_shows_the_virtual_microphone(microphone: str) -> None:
    result = run_kws("listen", "--list-devices")
    assert result.returncode == 0 and "pulse" in result.stdout


def test_missing_portaudio_names_the_package_to_install(tmp_path: Path) -> None:
    # sounddevice raises this OSError at import when libportaudio is not installed.
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = run_kws("listen", "--duration", "1", env=env)
    assert result.returncode == 1
    assert "PortAudio library not found" in result.stderr and "libportaudio2" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_ends_with_a_summary(microphone: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kws", "listen", "--device", microphone],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=interruptible,
    )
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("listening")
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "listened" in err and "0 detections: none" in err and "Traceback" not in err
