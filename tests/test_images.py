"""The log-mel image source: reading archives and folders, feature-domain augmentation, one feature path."""

from __future__ import annotations

import dataclasses
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from helpers import make_tar_gz
from PIL import Image

from kws.audio import load_audio
from kws.data import labels_for, which_set
from kws.features import FRONTENDS, clip_features, clip_log_mel
from kws.images import (
    ImageError,
    audio_image,
    augment_images,
    energy_to_pixels,
    image_features,
    pixels_to_energy,
    read_images,
    row_frontend,
    row_step,
)

IMAGE = FRONTENDS["logmel_image"]
LABELS = labels_for()


@pytest.fixture(scope="module")
def pairs(speech_commands: Path) -> Path:
    return speech_commands.parent / "speech_commands_logmel_pairs"


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=75)
    return buffer.getvalue()


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    path.write_bytes(make_tar_gz(members))
    return path


@pytest.fixture(scope="module")
def full_archive(speech_commands: Path) -> Path:
    return speech_commands.parent / "speech_commands_logmel.tar.gz"


@pytest.fixture(scope="module")
def small_archive(full_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real images of the full set (a keyword, an other word, noise), read from the start of its archive."""
    wanted = {"_background_noise_": 1, "bed": 6, "down": 6}
    members: dict[str, bytes] = {}
    with tarfile.open(full_archive, "r|gz") as tar:
        for member in tar:
            word = Path(member.name).parent.name
            if member.isfile() and sum(Path(n).parent.name == word for n in members) < wanted.get(word, 0):
                file = tar.extractfile(member)
                assert file is not None
                members[member.name] = file.read()
            if len(members) == sum(wanted.values()):
                break
    return _archive(tmp_path_factory.mktemp("images") / "logmel.tar.gz", members)


def test_archive_and_folder_read_alike(small_archive: Path, tmp_path: Path) -> None:
    images = read_images(small_archive, LABELS, progress=False)
    assert images.pixels.shape == (13, 98, 40) and images.pixels.dtype == np.uint8
    names = [LABELS[i] for i in images.labels]
    assert names.count("down") == 6 and names.count("_unknown_") == 6 and names.count("_silence_") == 1
    # Splits follow the official hash of the speaker.
    with tarfile.open(small_archive) as tar:
        speech = [Path(n) for n in tar.getnames() if "nohash" in n]
    assert sorted(images.splits[1:]) == sorted(which_set(p) for p in speech)
    assert set(images.splits) <= {"train", "validation"}
    with tarfile.open(small_archive) as tar:
        tar.extractall(tmp_path, filter="data")
    folder = read_images(tmp_path / "speech_commands_logmel", LABELS, progress=False)
    np.testing.assert_array_equal(folder.pixels, images.pixels)
    np.testing.assert_array_equal(folder.labels, images.labels)


def test_damaged_archives_and_bad_images_give_one_line_errors(small_archive: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(small_archive.read_bytes()[: small_archive.stat().st_size // 2])
    corrupt = tmp_path / "corrupt.tar.gz"
    corrupt.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 20)
    wrong_size = _archive(
        tmp_path / "size.tar.gz", {"x/yes/a1b2c3d4_nohash_0.jpg": _jpeg(np.zeros((40, 98)))}
    )
    not_jpeg = _archive(tmp_path / "notjpeg.tar.gz", {"x/yes/a1b2c3d4_nohash_0.jpg": b"not an image"})
    flat = _archive(tmp_path / "flat.tar.gz", {"a1b2c3d4_nohash_0.jpg": _jpeg(np.zeros((98, 40)))})
    badname = _archive(tmp_path / "badname.tar.gz", {"x/yes/photo.jpg": _jpeg(np.zeros((98, 40)))})
    empty = _archive(tmp_path / "empty.tar.gz", {"x/README.txt": b"hello"})
    cases = {
        truncated: "damaged or truncated",
        corrupt: "damaged or truncated",
        wrong_size: r"yes/a1b2c3d4_nohash_0\.jpg: image is 98 x 40 pixels, expected 40 x 98",
        not_jpeg: "not a readable image",
        flat: "expected the speech_commands_logmel layout",
        badname: r"yes/photo\.jpg is not <word>/<speaker>_nohash_<n>\.jpg",
        empty: "holds no <word>/<name>.jpg images",
        tmp_path / "missing.tar.gz": "not found",
    }
    for path, message in cases.items():
        with pytest.raises(ImageError, match=message) as error:
            read_images(path, LABELS, progress=False)
        assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_wrong_frontend_is_refused() -> None:
    with pytest.raises(ImageError, match=r"differs in .*window_ms"):
        row_step(FRONTENDS["hello_edge"])
    with pytest.raises(ImageError, match="hop_ms"):
        row_step(dataclasses.replace(IMAGE, hop_ms=15.0))
    assert row_step(IMAGE) == 2 and row_step(dataclasses.replace(IMAGE, hop_ms=10.0)) == 1


def test_image_features_are_the_audio_features(speech_commands: Path) -> None:
    """Even rows of a clip's 10-ms image give exactly the 20-ms front-end's features (one path for both)."""
    config = IMAGE.with_normalisation(np.linspace(-1, 1, 10), np.linspace(1, 3, 10))
    audio = load_audio(sorted((speech_commands / "_background_noise_").glob("*.wav"))[0])[:16000]
    rows = clip_log_mel(audio, row_frontend(config))
    np.testing.assert_allclose(
        image_features(rows[None], np.zeros(1, dtype=int), config)[0], clip_features(audio, config), atol=1e-5
    )
    # The odd phase is the same audio 10 ms later.
    later = clip_features(np.pad(audio[160:], (0, 160)), config)
    np.testing.assert_allclose(
        image_features(rows[None], np.ones(1, dtype=int), config)[0][:-1], later[:-1], atol=1e-5
    )


def test_audio_image_looks_like_the_archive(speech_commands: Path, pairs: Path) -> None:
    image_path = sorted((pairs / "left").glob("*.jpg"))[3]
    audio = load_audio(speech_commands / "left" / image_path.with_suffix(".wav").name)
    ours = audio_image(audio, IMAGE)
    theirs = np.asarray(Image.open(image_path), dtype=np.float32)
    assert ours.shape == (98, 40) and np.abs(ours - theirs).mean() < 2.5


def test_feature_domain_gain_noise_and_shift(small_archive: Path) -> None:
    pixels = read_images(small_archive, LABELS, progress=False).pixels[1:]  # the speech images
    rng = np.random.default_rng(0)
    gain_only = augment_images(
        pixels,
        rng,
        IMAGE,
        np.zeros((0, 98, 40)),
        gain_db=6.0,
        noise_probability=0.0,
        snr_db=(5, 25),
        max_shift_rows=0,
    )
    # A gain moves every pixel well above the floor by the same offset (2.3 pixels a dB), up or down.
    lit = (pixels > 60) & (pixels < 230)
    assert lit.sum(axis=(1, 2)).min() > 100
    offsets = [(gain_only[i] - pixels[i])[lit[i]] for i in range(len(pixels))]
    assert all(o.std() < 0.05 for o in offsets)
    assert max(abs(o.mean()) for o in offsets) <= 6 * 10 * np.log(10) / 10 + 0.1
    assert len({round(float(o.mean()), 1) for o in offsets}) > 5
    # Noise only ever adds energy; a shift moves rows and fills with silence.
    noise = np.full((1, 98, 40), 80, dtype=np.uint8)
    noisy = augment_images(
        pixels, rng, IMAGE, noise, gain_db=0.0, noise_probability=1.0, snr_db=(0, 0), max_shift_rows=0
    )
    assert np.all(noisy >= pixels - 1e-3) and np.mean(noisy > pixels + 0.5) > 0.2
    shifted = augment_images(
        pixels[:1],
        np.random.default_rng(3),
        IMAGE,
        noise[:0],
        gain_db=0,
        noise_probability=0,
        snr_db=(0, 0),
        max_shift_rows=10,
    )[0]
    moved = [
        s
        for s in range(-10, 11)
        if np.allclose(np.roll(pixels[0].astype(np.float32), s, axis=0)[10:-10], shifted[10:-10], atol=1e-3)
    ]
    assert len(moved) == 1
    s = moved[0]
    assert np.all(shifted[:s] == 0) if s > 0 else np.all(shifted[len(shifted) + s :] == 0)
    np.testing.assert_allclose(energy_to_pixels(pixels_to_energy(pixels, IMAGE), IMAGE), pixels, atol=1e-3)


def test_the_image_cache_holds_what_read_images_reads_and_is_reused_until_the_archive_changes(
    small_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from kws.images import cached_images

    monkeypatch.setenv("KWS_CACHE_DIR", str(tmp_path / "cache"))
    images = read_images(small_archive, LABELS, progress=False)
    store = cached_images(small_archive, progress=False)
    assert store.path.is_relative_to(tmp_path / "cache")
    np.testing.assert_array_equal(np.asarray(store.pixels()), images.pixels)
    np.testing.assert_array_equal(store.labels(LABELS), images.labels)
    np.testing.assert_array_equal(store.splits, images.splits)
    written = store.path.stat().st_mtime_ns
    assert cached_images(small_archive, progress=False).path == store.path  # reused, not decoded again
    assert store.path.stat().st_mtime_ns == written
    stat = small_archive.stat()
    os.utime(small_archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a changed archive
    assert cached_images(small_archive, progress=False).path != store.path
