"""The fixed splits of the shared non-keyword speech (``splits/``), and list files and fixed
validation negatives wherever negatives are read."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from kws.data import AUDIO_SUFFIXES, held_out_negative, negative_files, split_negatives
from kws.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("measuring", "validation", "training")


@pytest.fixture(scope="module")
def lists(speech: Path) -> dict[str, list[Path]]:
    """Each committed split list's files, resolved (every one must exist)."""
    if speech.parent.resolve() != (ROOT.parent / "shared" / "data").resolve():
        pytest.skip("the split lists name ../shared/data beside the project; KWS_SHARED_DATA is elsewhere")
    return {
        name: [p.resolve() for p in negative_files(ROOT / "splits" / f"{name}.txt", ())] for name in SPLITS
    }


def _librispeech_speakers(files: list[Path]) -> set[str]:
    return {p.name.split("-")[0] for p in files if p.parent.name == "librispeech"}


def test_the_split_lists_hold_every_file_once_and_keep_speakers_apart(
    lists: dict[str, list[Path]], speech: Path
) -> None:
    everything = [p for files in lists.values() for p in files]
    assert len(everything) == len(set(everything)), "a file is listed twice"
    shared = speech.parent.resolve()
    on_disk = {
        p.resolve()
        for folder in (shared / "speech", shared / "negatives" / "picovoice")
        for p in folder.rglob("*")
        if p.suffix in AUDIO_SUFFIXES
    }
    assert set(everything) == on_disk  # every recording in exactly one split
    speakers = {name: _librispeech_speakers(files) for name, files in lists.items()}
    for a in SPLITS:
        for b in SPLITS:
            assert a == b or not speakers[a] & speakers[b], f"LibriSpeech speakers in {a} and {b}"
    assert len(speakers["measuring"]) == 10 and len(speakers["validation"]) > 40
    # The measuring set is its three sources whole, nothing else.
    assert {p.parent.name for p in lists["measuring"]} == {"jarvis", "arctic_bdl", "librispeech"}
    assert {p.parent.name for p in lists["validation"]} == {"snowboy", "librispeech", "music"}
    assert all(p.parent.name not in ("jarvis", "snowboy", "arctic_bdl") for p in lists["training"])


def test_the_split_lists_are_what_the_tool_writes(lists: dict[str, list[Path]], speech: Path) -> None:
    spec = importlib.util.spec_from_file_location("speech_splits", ROOT / "tools" / "speech_splits.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    written = tool.split_lists(speech.parent.resolve(), (ROOT / "splits").resolve())
    for name in SPLITS:
        assert (ROOT / "splits" / f"{name}.txt").read_text().splitlines() == written[name], name


def _files(folder: Path, count: int) -> list[Path]:
    return sorted(folder.glob("*.flac"))[:count]


def test_a_list_file_is_a_source_of_negatives(speech: Path, tmp_path: Path) -> None:
    alexa = speech.parent / "negatives" / "picovoice" / "alexa"
    chosen = _files(alexa, 3)
    listed = tmp_path / "lists" / "mine.txt"
    listed.parent.mkdir()
    listed.write_text("# my negatives, by absolute path\n\n" + "".join(f"{p}\n" for p in chosen))
    assert negative_files(listed, ()) == chosen
    (tmp_path / "lists" / "rel.txt").write_text(f"../a/{chosen[0].name}\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / chosen[0].name).symlink_to(chosen[0])
    assert negative_files(tmp_path / "lists" / "rel.txt", ()) == [tmp_path / "a" / chosen[0].name]
    (tmp_path / "lists" / "gone.txt").write_text("nothing.flac\nalso-nothing.flac\n")
    with pytest.raises(DataError, match=r"gone.txt: lists .*nothing.flac and 1 more, not found"):
        negative_files(tmp_path / "lists" / "gone.txt", ())
    (tmp_path / "lists" / "empty.txt").write_text("# nothing\n")
    with pytest.raises(DataError, match="lists no audio files"):
        negative_files(tmp_path / "lists" / "empty.txt", ())


def test_fixed_validation_negatives_replace_the_held_out_tenth(speech: Path) -> None:
    picovoice = speech.parent / "negatives" / "picovoice"
    alexa, snowboy = picovoice / "alexa", picovoice / "snowboy"
    train, val = split_negatives([alexa], [], ())
    assert val and all(held_out_negative(p) for p in val) and not any(held_out_negative(p) for p in train)
    assert sorted(train + val) == negative_files(alexa, ())
    train, val = split_negatives([alexa], [snowboy], ())
    assert train == negative_files(alexa, ()) and val == negative_files(snowboy, ())
    with pytest.raises(DataError, match=r"401 recording\(s\) both trained on and validating"):
        split_negatives([alexa, snowboy], [snowboy], ())


def test_training_validates_on_the_fixed_negatives_only_and_mixes_in_more_backgrounds(
    small_speech_commands: Path, speech: Path, tmp_path: Path
) -> None:
    from kws.train import TrainConfig, prepare_data

    picovoice = speech.parent / "negatives" / "picovoice"
    train_list, val_list = tmp_path / "train.txt", tmp_path / "val.txt"
    train_list.write_text("".join(f"{p}\n" for p in _files(picovoice / "alexa", 6)))
    val_list.write_text("".join(f"{p}\n" for p in _files(picovoice / "snowboy", 3)))
    music = sorted((speech / "music").glob("*.opus"))[:2]
    config = TrainConfig(
        data=str(small_speech_commands),
        negatives=(str(train_list),),
        val_negatives=(str(val_list),),
        backgrounds=(str(speech / "music"),),
    )
    data = prepare_data(config, progress=False)
    noise = data.sources.noise_files
    assert [p.parent.name for p in noise[:-6]] == ["_background_noise_"] * (len(noise) - 6)
    assert list(noise[-6:]) == sorted((speech / "music").glob("*.opus")) and music[0] in noise
    assert len(data.negative_lengths) == 6  # every training recording, none held out
    assert [p.parent.name for p in data.sources.negatives] == ["alexa"] * 6 + ["snowboy"] * 3
    windows = data.val_y[data.val_sources["negatives"]]
    assert len(windows) >= 3 and np.all(windows == data.labels.index("_unknown_"))
