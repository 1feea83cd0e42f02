"""The command line as a user runs it: output, exit status, one-line errors, no TensorFlow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import run_kws

from kws.bundled import bundled_model
from kws.cli import main
from kws.data import BACKGROUND_DIR
from kws.errors import KwsError

pytestmark = pytest.mark.system  # kws commands as a user types them, many in a process of their own


def test_data_check_official_layout(speech_commands: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(speech_commands)]) == 0
    out, err = capsys.readouterr()
    assert err == "reading: 3696 files\n"  # stderr is no terminal here: one line, no bar
    assert "3690 clips on disk" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["label"] == ["train", "validation", "test", "total"]
    assert rows["clips"] == ["2772", "517", "401"]
    assert rows["yes"] == ["267", "55", "40", "362"]
    assert "train/validation 0, train/test 0, validation/test 0" in out
    assert "unreadable files: 0" in out


def test_data_check_test12_and_keywords(
    test12: Path, speech_commands: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "check", str(test12)]) == 0
    out = capsys.readouterr().out
    assert "574 clips on disk" in out and "_silence_           173" in out
    assert main(["data", "check", str(speech_commands), "--keywords", "marvin,sheila", "--quiet"]) == 0
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["marvin"][0] != "0" and "yes" not in rows and err == ""


def test_data_check_fails_on_unreadable_file(speech_commands: Path, tmp_path: Path) -> None:
    (tmp_path / "yes").mkdir()
    (tmp_path / "yes" / "0a7c2a8d_nohash_0.wav").write_bytes(
        (speech_commands / "yes" / sorted(os.listdir(speech_commands / "yes"))[0]).read_bytes()[:3000]
    )
    result = run_kws("data", "check", str(tmp_path))
    assert result.returncode == 1
    assert "unreadable files: 1" in result.stdout and "truncated" in result.stdout


def test_data_check_names_every_bad_entry_and_exits_1(speech_commands: Path, tmp_path: Path) -> None:
    import soundfile as sf

    good = sorted((speech_commands / "yes").glob("*.wav"))[:2]
    (tmp_path / "yes").mkdir()
    for f in good:
        (tmp_path / "yes" / f.name).symlink_to(f)
    nan = np.zeros(16000, np.float32)
    nan[100] = np.nan
    sf.write(tmp_path / "yes" / "aaaa0001_nohash_0.wav", nan, 16000, subtype="FLOAT")
    (tmp_path / "yes" / "aaaa0002_nohash_0.wav").symlink_to(tmp_path / "nowhere.wav")
    os.mkfifo(tmp_path / "yes" / "aaaa0003_nohash_0.wav")
    (tmp_path / "validation_list.txt").write_text("yes/bbbb0001_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("")
    result = run_kws("data", "check", str(tmp_path))
    assert result.returncode == 1, result.stdout
    out = result.stdout
    assert "unreadable files: 3" in out
    assert "aaaa0001_nohash_0.wav: contains samples that are not finite numbers" in out
    assert "aaaa0002_nohash_0.wav: dangling symbolic link" in out
    assert "aaaa0003_nohash_0.wav: not a file" in out
    assert "listed in validation/testing lists but missing: 1" in out and "bbbb0001_nohash_0.wav" in out
    # Listed-but-missing alone is a failure too.
    for f in ("aaaa0001_nohash_0.wav", "aaaa0002_nohash_0.wav", "aaaa0003_nohash_0.wav"):
        (tmp_path / "yes" / f).unlink()
    assert run_kws("data", "check", str(tmp_path)).returncode == 1


def test_a_background_folder_of_bad_files_is_named_for_what_it_is(
    speech_commands: Path, tmp_path: Path
) -> None:
    from kws.data import examples, scan

    (tmp_path / "yes").mkdir()
    for f in sorted((speech_commands / "yes").glob("*.wav"))[:3]:
        (tmp_path / "yes" / f.name).symlink_to(f)
    (tmp_path / BACKGROUND_DIR).mkdir()
    (tmp_path / BACKGROUND_DIR / "noise.wav").write_bytes(b"not audio")
    index = scan(tmp_path)
    index.noise_files = []  # what data check leaves of a folder whose only file is unreadable
    with pytest.raises(KwsError, match=f"{BACKGROUND_DIR}: holds no readable audio file"):
        examples(index, index.clips[0].split, ["yes"])
    result = run_kws("data", "check", str(tmp_path))
    assert result.returncode == 1 and "noise.wav: not an audio file" in result.stdout
    assert "folder not found" not in result.stdout + result.stderr


def test_files_and_folders_the_system_refuses_are_one_line_errors(
    speech_commands: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As root, chmod does not stop reading: the refusal is made where the file is opened."""
    clip = sorted((speech_commands / "yes").glob("*.wav"))[0]
    opened = Path.open
    refused = {clip.name, "locked"}

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        if self.name in refused:
            raise PermissionError(13, "Permission denied", str(self))
        return opened(self, *args, **kwargs)  # type: ignore[arg-type]

    def refuse_listing(self: Path) -> object:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    assert main(["features", str(clip)]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(f"kws: error: {clip}: ") and "Permission denied" in err and len(err.splitlines()) == 1
    )
    (tmp_path / "locked").mkdir()
    monkeypatch.setattr(Path, "iterdir", refuse_listing)
    assert main(["data", "check", str(tmp_path / "locked")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("kws: error: ") and "Permission denied" in err and len(err.splitlines()) == 1


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    for args, message in [
        (("features", str(tmp_path / "missing.wav")), "missing.wav: file not found"),
        (("data", "check", str(tmp_path / "nowhere")), "nowhere: data folder not found"),
    ]:
        result = run_kws(*args)
        assert result.returncode == 1
        assert result.stderr.strip().startswith("kws: error: ") and message in result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_features_command_saves_the_array(fsdd: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.npy"
    result = run_kws("features", str(fsdd / "0_george_0.wav"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "kws: warning: audio resampled from 8000 Hz to 16000 Hz" in result.stderr
    feats = np.load(out)
    assert feats.shape[1] == 10 and f"{feats.shape[0]} frames x 10 MFCCs" in result.stdout


def test_export_writes_the_bundled_model_or_refuses_a_float_one(tmp_path: Path) -> None:
    result = run_kws("export", "--out", str(tmp_path / "fw"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fw" / "model_data.h").is_file() and (tmp_path / "fw" / "kws_frontend.c").is_file()
    result = run_kws("export", "--model", str(bundled_model("lstm", "float")), "--out", str(tmp_path / "f"))
    assert result.returncode == 1 and "float model" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_runtime_commands_never_import_tensorflow(speech_commands: Path, fsdd: Path) -> None:
    # TensorFlow is installed in the dev environment; the runtime must still not load it.
    code = (
        "import sys\n"
        "from kws.cli import main\n"
        f"main(['data', 'check', {str(speech_commands)!r}])\n"
        f"main(['features', {str(fsdd / '1_nicolas_0.wav')!r}])\n"
        "import kws.audio, kws.augment, kws.data, kws.download, kws.features\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'librosa'))\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_train_without_the_train_extra_says_what_to_install(test12: Path, tmp_path: Path) -> None:
    """The runtime install has no TensorFlow: kws train says which extra it needs, in one line."""
    code = (
        "import sys; sys.modules['tf_keras'] = None\n"  # as if tf-keras were not installed
        "from kws.cli import main\n"
        f"sys.exit(main(['train', '--data', {str(test12)!r}, '--out', {str(tmp_path / 'run')!r}]))"
    )
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=False)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "kws: error: training and Keras models need the train extra (tf_keras is not installed): "
        "pip install -e '.[train]'"  # this checkout is a clone, and the command runs in it
    ]
    assert not (tmp_path / "run").exists()


def test_the_install_hint_fits_how_kws_was_installed(tmp_path: Path) -> None:
    """`kws demo` and the errors of the runtime install name the train extra as this kws was
    installed: a clone (editable, from anywhere), a wheel file, or the package index."""
    root = Path(__file__).resolve().parents[1]
    code = "from kws.errors import install_command; print(install_command('train'))"

    def hint(cwd: Path, pythonpath: Path | None = None) -> str:
        env = {**os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {})}
        run = subprocess.run(
            [sys.executable, "-P", "-c", code], capture_output=True, text=True, cwd=cwd, env=env, check=True
        )
        return run.stdout.strip()

    assert hint(root) == "pip install -e '.[train]'"
    assert hint(tmp_path) == f"pip install -e '{root}[train]'"
    # kws as pip installs a wheel: the package and its metadata in a folder with no pyproject.toml.
    site = tmp_path / "site"
    shutil.copytree(
        root / "kws", site / "kws", ignore=shutil.ignore_patterns("__pycache__", "models", "samples")
    )
    info = site / "kws-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kws\nVersion: 0.1.0\n")
    assert hint(tmp_path, site) == "pip install 'kws[train]'"  # from the index: no direct_url.json
    wheel = tmp_path / "dist" / "kws-0.1.0-py3-none-any.whl"
    (info / "direct_url.json").write_text(json.dumps({"url": wheel.as_uri(), "archive_info": {}}))
    assert hint(tmp_path, site) == "pip install './dist/kws-0.1.0-py3-none-any.whl[train]'"  # from cwd
    assert hint(site, site) == f"pip install '{wheel}[train]'"


def test_bench_refuses_a_plot_path_it_cannot_write_before_working(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for plot, problem in ((tmp_path, "is a folder"), (tmp_path / "file" / "x.png", "a file stands where")):
        start = time.monotonic()
        result = run_kws("bench", "--data", str(tmp_path), "--plot", str(plot))
        assert result.returncode == 1 and problem in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert time.monotonic() - start < 60  # refused up front, not after the benchmark


def test_export_never_replaces_a_readme_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# my firmware project\n")
    result = run_kws("export", "--out", str(tmp_path))
    assert result.returncode == 1 and "README.md exists and was not written by kws export" in result.stderr
    assert (tmp_path / "README.md").read_text() == "# my firmware project\n"
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]
    result = run_kws("export", "--out", str(tmp_path / "README.md" / "fw"))
    assert (
        result.returncode == 1
        and "cannot write the export" in result.stderr
        and "Traceback" not in result.stderr
    )


def test_sigterm_exits_143_after_cleaning_up_like_ctrl_c(test12: Path) -> None:
    proc = subprocess.Popen(
        # A long job (minutes): it is surely still running when the signal comes.
        [sys.executable, "-m", "kws", "bench", "--data", str(test12), "--minutes", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(5)  # importing and reading clips
    assert proc.poll() is None
    proc.terminate()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    # Progress bars may still be cleared after it: the line is there, and no traceback.
    assert "kws: terminated" in [line.strip() for line in stderr.splitlines()] and "Traceback" not in stderr


def test_closed_output_pipe_ends_quietly(speech_commands: Path) -> None:
    code = (
        "import os, sys\n"
        "read, write = os.pipe(); os.close(read); os.dup2(write, 1)\n"  # nobody reads our stdout
        "from kws.cli import main\n"
        f"sys.exit(main(['data', 'check', {str(speech_commands)!r}, '--quiet']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 141 and result.stderr == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stream", "kws/samples/yes.wav", "--smoothing", "nan"], "must be a finite number, not nan"),
        (["stream", "kws/samples/yes.wav", "--threshold", "1.5"], "must be at most 1"),
        (["stream", "kws/samples/yes.wav", "--refractory", "-1"], "must be above zero or zero"),
        (["tune", "x.tflite", "--data", "d", "--target", "inf"], "must be a finite number, not inf"),
        (["train", "--data", "d", "--out", "o", "--epochs", "0"], "must be above zero, not 0"),
    ],
)
def test_bad_numbers_are_argument_errors(args: list[str], message: str) -> None:
    result = run_kws(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_export_replaces_only_what_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "fw"
    assert run_kws("export", "--out", str(out)).returncode == 0
    (out / "main.c").write_text("/* the user's own file */\n")
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "kws_export.json" in first and oct((out / "model_data.c").stat().st_mode & 0o777) == oct(0o644)
    # Unchanged files of the earlier export are replaced; the user's own file stays.
    again = run_kws("export", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    # An exported file the user edited is never overwritten, and nothing else is touched.
    (out / "kws_frontend.c").write_text("/* tuned by hand */\n")
    edited = run_kws("export", "--out", str(out))
    assert (
        edited.returncode == 1 and "kws_frontend.c exists and was not written by kws export" in edited.stderr
    )
    assert (out / "kws_frontend.c").read_text() == "/* tuned by hand */\n"
    # An export without a manifest (an older kws, or the user's folder) counts as the user's.
    (out / "kws_frontend.c").write_bytes(first["kws_frontend.c"])
    (out / "kws_export.json").unlink()
    assert "exists and was not written by kws export" in run_kws("export", "--out", str(out)).stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_eval_json_keeps_stdout_to_the_json_and_its_progress_to_stderr(
    test12: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Progress goes to stderr with --json too (a run of minutes is not silent): one line a
    stage where stderr is no terminal (as here), none with --quiet; stdout is the JSON alone."""
    assert main(["eval", "--data", str(test12), "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["clips"] == 574 and result["accuracy"] > 0.9
    assert err.splitlines() == ["features test: 574 clips", f"{bundled_model().name} litert: 574 clips"]
    assert "\r" not in err and err.endswith("\n")
    assert main(["eval", "--data", str(test12), "--json", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == result and err == ""


def test_eval_negatives_reads_a_folder_of_ogg_sentences(
    speech: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shared sentences are Ogg Opus: a negatives folder of them (and of Vorbis) is read whole."""
    folder = tmp_path / "sentences"
    folder.mkdir()
    chosen = sorted((speech / "arctic_bdl").glob("*.opus"))[:2]
    for path in chosen:
        (folder / path.name).symlink_to(path)
    audio, rate = sf.read(chosen[0])
    sf.write(folder / "vorbis.ogg", audio, rate, format="OGG", subtype="VORBIS")
    (folder / "credits.txt").write_text("not audio: left out by its name\n")
    assert main(["eval", "--negatives", str(folder), "--json", "--quiet"]) == 0
    negatives = json.loads(capsys.readouterr().out)["negatives"]
    seconds = sum(sf.info(p).duration for p in chosen) + len(audio) / rate
    assert negatives["minutes"] == pytest.approx(seconds / 60, abs=1e-3)
    assert negatives["windows"] >= 2 * (seconds - 3)  # a 1-s window every 0.5 s of each recording
