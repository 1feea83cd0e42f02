"""Shared fixtures: the public speech data beside the project (never copied into it)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
from helpers import make_tar_gz

# One thread for TensorFlow's ops (and oneDNN's) in every test process and the `kws`
# processes tests start: pytest-xdist's workers already fill the cores, and the tiny
# models gain nothing from more. Measured on the tiny run alone: 82 s -> 54 s (103 -> 71 s
# of CPU), the same models and accuracies to the last digit.
for _variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

# Fixtures that train a model: every test using one is marked `training`.
TRAINING_FIXTURES = {"tiny_run"}
SHARED_DATA = Path(os.environ.get("KWS_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        scopes = {defs[-1].scope for defs in info.name2fixturedefs.values()} if info else set()
        # pytest-xdist (--dist loadgroup): the tests sharing a costly fixture run in one worker,
        # which builds it once; the others are spread over every worker.
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.training)
            item.add_marker(pytest.mark.xdist_group("training"))
        elif "module" in scopes:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    # Longest first, the short tests last to fill the gaps: the whole run ends sooner on few
    # cores. pytest-xdist hands a worker its next test while the current one runs, so a long
    # test queued late can leave the other worker idle at the end.
    items.sort(key=_rank)


def _rank(item: pytest.Item) -> int:
    """0: the tests of the shared training run; 1: other tests that train (subprocesses);
    2: other single system tests (emulator, fuzzing, the bundled models' figures); 3: tests
    sharing a module fixture (many short tests each); 4: the rest."""
    group = item.get_closest_marker("xdist_group")
    if group is not None:
        return 0 if group.args == ("training",) else 3
    if item.get_closest_marker("training"):
        return 1
    return 2 if item.get_closest_marker("system") else 4


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Lines a test recorded for the log (``record_property("log", ...)``), pass or fail, with or
    without pytest-xdist (whose workers' output is not shown)."""
    for stat in ("passed", "failed"):
        for report in terminalreporter.stats.get(stat, []):
            for name, value in getattr(report, "user_properties", ()):
                if name == "log" and report.when == "call":
                    terminalreporter.write_line(f"{report.nodeid}: {value}")


def _shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        # Fail, not skip: CI always has the data, and a skipped suite would pass silently.
        pytest.fail(f"shared data not found at {path}; set KWS_SHARED_DATA to the folder holding it")
    return path


@pytest.fixture(scope="session")
def speech_commands() -> Path:
    """The Speech Commands v0.02 subset in the official layout."""
    return _shared("speech_commands")


@pytest.fixture(scope="session")
def test12() -> Path:
    """The same test speakers in the canonical 12-class layout."""
    return _shared("speech_commands_test12")


@pytest.fixture(scope="session")
def speech() -> Path:
    """Real sentences without keywords and some music, as Ogg Opus (``speech/`` of the shared data)."""
    return _shared("speech")


@pytest.fixture(scope="session")
def fsdd() -> Path:
    """Free Spoken Digit Dataset recordings (8 kHz)."""
    return _shared("fsdd") / "recordings"


@pytest.fixture(scope="session")
def small_speech_commands(tmp_path_factory: pytest.TempPathFactory, speech_commands: Path) -> Path:
    """A small copy (symlinks) of the official layout: up to 70 training and 12 validation clips a word."""
    root = tmp_path_factory.mktemp("small_speech_commands")
    validation = set((speech_commands / "validation_list.txt").read_text().split())
    testing = set((speech_commands / "testing_list.txt").read_text().split())
    kept_validation = []
    for folder in sorted(p for p in speech_commands.iterdir() if p.is_dir()):
        (root / folder.name).mkdir()
        if folder.name == "_background_noise_":
            for f in folder.iterdir():
                (root / folder.name / f.name).symlink_to(f)
            continue
        rels = [f"{folder.name}/{f.name}" for f in sorted(folder.glob("*.wav"))]
        train = [r for r in rels if r not in validation and r not in testing][:70]
        val = [r for r in rels if r in validation][:12]
        kept_validation += val
        for rel in train + val:
            (root / rel).symlink_to(speech_commands / rel)
    (root / "validation_list.txt").write_text("\n".join(kept_validation) + "\n")
    (root / "testing_list.txt").write_text("")
    return root


@pytest.fixture(scope="session")
def small_logmel_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small log-mel image archive in the full set's layout: the first 25 images of each folder up to "left"."""
    wanted = 25
    members: dict[str, bytes] = {}
    counts: dict[str, int] = {}
    with tarfile.open(_shared("") / "speech_commands_logmel.tar.gz", "r|gz") as tar:
        for member in tar:
            word = Path(member.name).parent.name
            if not member.isfile() or counts.get(word, 0) == wanted:
                continue
            if word > "left" and word != "_background_noise_":
                break  # folders come in alphabetical order
            file = tar.extractfile(member)
            assert file is not None
            members[member.name] = file.read()
            counts[word] = counts.get(word, 0) + 1
    path = tmp_path_factory.mktemp("logmel") / "small_logmel.tar.gz"
    path.write_bytes(make_tar_gz(members))
    return path


@pytest.fixture(scope="session")
def small_negatives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few recordings of a non-keyword phrase (symlinks), never "jarvis" (the measuring phrase)."""
    root = tmp_path_factory.mktemp("negatives") / "alexa"
    root.mkdir()
    for path in sorted((_shared("negatives") / "picovoice" / "alexa").glob("*.flac"))[
        :60
    ]:  # 3 of them fall in the held-out 10%
        (root / path.name).symlink_to(path)
    return root


@pytest.fixture(scope="session")
def tiny_run(
    tmp_path_factory: pytest.TempPathFactory,
    small_speech_commands: Path,
    small_logmel_archive: Path,
    small_negatives: Path,
    test12: Path,
) -> Path:
    """A short real training run (LSTM, few epochs, audio + images + negatives): its run folder."""
    from kws.pipeline import run
    from kws.train import TrainConfig

    out = tmp_path_factory.mktemp("tiny_run")
    config = TrainConfig(
        data=str(small_speech_commands),
        images=str(small_logmel_archive),
        negatives=(str(small_negatives),),
        # 10 epochs of 16 (80 updates an epoch) learn what 20 of 32 did for half the features
        # (measured: benchmark int8 0.467 against 0.462, TFLM/LiteRT agreement >= 98.9%).
        epochs=10,
        batch_size=16,
        units=32,
        patience=10,
        calibration_clips=100,
        hard_negatives=20,
    )
    # Features in this process: on this tiny data the workers' start-up and hand-over cost more
    # (measured alone: 163 s, 198 s with two workers); tests/test_distribute.py and the
    # Ctrl-C test train with worker processes.
    run(config, out, benchmark=test12, progress=False, tune_minutes=1, input_workers=0)
    return out
