"""The full Speech Commands as log-mel images, and features made alike from images and audio.

``speech_commands_logmel.tar.gz`` holds one 98 x 40 grey JPEG a clip (10-ms rows, 40 mel
bands, pixels ``min(10 ln(1 + mel / 4.5e-7), 255)``, quality 75) for every training- and
validation-split speaker of Speech Commands v0.02, plus background-noise images::

    speech_commands_logmel/<word>/<speaker>_nohash_<n>.jpg
    speech_commands_logmel/_background_noise_/<n>_background.jpg

The front-end ``logmel_image`` (:data:`kws.features.FRONTENDS`) computes those rows from
audio. A model at a 20-ms hop takes every other row; both row phases are training data.
So that audio and images look alike to the model, audio examples are turned into such an
image (rounded, JPEG quality 75 and back) before the shared path
:func:`image_features` makes model features of both. Where there is no audio, the
augmentation is done on the image: gain and noise in mel power, time shift in rows.

Pillow decodes the JPEGs (it comes with the ``train`` extra, through matplotlib).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from kws.data import BACKGROUND_DIR, SILENCE, UNKNOWN, keywords_of, speaker_of, which_set
from kws.errors import DataError
from kws.features import FRONTENDS, PIXEL_MAX, FrontendConfig, clip_log_mel, log_mel_to_cepstra, normalise
from kws.fileio import atomic_path, cache_dir, write_text_atomic
from kws.progress import bar

IMAGE_ROWS = 98
IMAGE_BANDS = 40
ROW_MS = 10.0
JPEG_QUALITY = 75
# The fields of a front-end that must equal the images' own for a model to train on them.
IMAGE_FIELDS = (
    "sample_rate",
    "window_ms",
    "n_fft",
    "n_mels",
    "fmin",
    "fmax",
    "log_floor",
    "clip_ms",
    "mel_triangles",
    "log",
    "centre_clips",
)


class ImageError(DataError):
    """A log-mel image archive or folder that kws cannot read."""


def row_step(frontend: FrontendConfig) -> int:
    """Image rows per model frame (2 at a 20-ms hop); raises if the front-end is not the images'."""
    reference = FRONTENDS["logmel_image"]
    differ = [f for f in IMAGE_FIELDS if getattr(frontend, f) != getattr(reference, f)]
    step = frontend.hop_ms / ROW_MS
    if differ or step != round(step) or step < 1:
        raise ImageError(
            "the log-mel images need the logmel_image front-end (a hop of a whole number of "
            f"10-ms rows); this one differs in {', '.join(differ) or 'hop_ms'}"
        )
    return round(step)


def row_frontend(frontend: FrontendConfig) -> FrontendConfig:
    """The front-end that computes the images' 10-ms rows (no normalisation)."""
    row_step(frontend)
    return dataclasses.replace(frontend, hop_ms=ROW_MS, mean=None, std=None)


@dataclass
class ImageSet:
    """Decoded images with their labels and official splits."""

    pixels: np.ndarray  # (n, 98, 40) uint8
    labels: np.ndarray  # (n,) index into the label list
    splits: np.ndarray  # (n,) "train" or "validation"
    source: str

    def subset(self, split: str) -> ImageSet:
        keep = self.splits == split
        return ImageSet(self.pixels[keep], self.labels[keep], self.splits[keep], f"{self.source} ({split})")


def _label_of(word: str, labels: Sequence[str]) -> int:
    if word == BACKGROUND_DIR:
        return list(labels).index(SILENCE)
    return list(labels).index(word) if word in keywords_of(labels) else list(labels).index(UNKNOWN)


def _split_of(word: str, name: str) -> str:
    """The official hash-of-speaker split; background images: a fixed 10% by name hash."""
    if word == BACKGROUND_DIR:
        digest = hashlib.sha1(name.encode("utf-8")).digest()
        return "validation" if digest[0] % 10 == 0 else "train"
    return which_set(Path(name))


def decode_image(data: bytes, name: str) -> np.ndarray:
    """One image as uint8 (98, 40); raises :class:`ImageError` naming ``name`` otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageError(f"{name}: not a readable image ({error})") from None
    if pixels.shape != (IMAGE_ROWS, IMAGE_BANDS):
        raise ImageError(
            f"{name}: image is {pixels.shape[1]} x {pixels.shape[0]} pixels, "
            f"expected {IMAGE_BANDS} x {IMAGE_ROWS} (bands x 10-ms rows)"
        )
    return pixels


def _members(source: Path) -> Iterator[tuple[str, str, bytes]]:
    """(word, file name, bytes) of every .jpg in an archive or folder, in archive or sorted order."""
    if source.is_dir():
        for path in sorted(source.rglob("*.jpg")):
            rel = path.relative_to(source).parts
            yield rel[-2] if len(rel) >= 2 else "", path.name, path.read_bytes()
        return
    try:
        with tarfile.open(source, "r|*") as tar:
            for member in tar:
                if not member.isreg() or not member.name.endswith(".jpg"):
                    continue
                parts = PurePosixPath(member.name).parts
                file = tar.extractfile(member)
                if file is None:
                    continue
                yield parts[-2] if len(parts) >= 2 else "", parts[-1], file.read()
    except (tarfile.ReadError, EOFError, zlib.error) as error:
        raise ImageError(f"{source}: not a tar archive, or a damaged or truncated one ({error})") from None
    except tarfile.TarError as error:
        raise ImageError(f"{source}: cannot read the archive ({error})") from None


def _decoded(source: Path, progress: bool) -> Iterator[tuple[str, str, np.ndarray]]:
    """(word, split, uint8 pixels) of every training- and validation-split image, checked."""
    if not source.exists():
        raise ImageError(f"{source}: log-mel image archive not found")
    found = False
    for word, name, data in bar(_members(source), desc="read images", unit=" images", enabled=progress):
        if not word or (word != BACKGROUND_DIR and speaker_of(Path(name)) is None):
            raise ImageError(
                f"{source}: {word + '/' if word else ''}{name} is not <word>/<speaker>_nohash_<n>.jpg "
                f"or {BACKGROUND_DIR}/<n>.jpg; expected the speech_commands_logmel layout"
            )
        split = _split_of(word, name)
        if split == "test":
            continue  # never train or stop on a testing-split speaker
        found = True
        yield word, split, decode_image(data, f"{source}: {word}/{name}")
    if not found:
        raise ImageError(f"{source}: holds no <word>/<name>.jpg images")


def read_images(source: str | Path, labels: Sequence[str], *, progress: bool = True) -> ImageSet:
    """Decode every image of a log-mel archive (``.tar.gz``, read as a stream) or its extracted folder.

    Parameters
    ----------
    source : path
        The archive or folder; images sit in ``<word>/`` folders (``_background_noise_``
        for noise), at any depth.
    labels : sequence of str
        The model's labels: ``_silence_``, ``_unknown_``, then the keywords. Noise images
        are silence, words other than the keywords unknown.
    progress : bool
        A progress bar on stderr.

    Raises
    ------
    ImageError
        A missing, damaged or truncated archive, an image that does not decode or is not
        98 x 40, or a layout without ``<word>/<speaker>_nohash_<n>.jpg`` images (one line).
    """
    decoded = list(_decoded(Path(source), progress))
    return ImageSet(
        np.stack([pixels for _, _, pixels in decoded]),
        np.array([_label_of(word, labels) for word, _, _ in decoded]),
        np.array([split for _, split, _ in decoded]),
        str(source),
    )


@dataclass(frozen=True)
class ImageStore:
    """An archive's images decoded once into the cache (:func:`cached_images`): the pixels
    stay on disk and are read through a memory map, so training holds none of them."""

    path: Path  # raw uint8 pixels, (len(words), 98, 40)
    words: np.ndarray  # (n,) each image's word folder
    splits: np.ndarray  # (n,) "train" or "validation"
    source: str

    def pixels(self) -> np.ndarray:
        """Every image, (n, 98, 40) uint8, memory-mapped read-only (one map a process)."""
        return _memmap(self.path, len(self.words))

    def labels(self, labels: Sequence[str]) -> np.ndarray:
        """Each image's index into ``labels`` (as :func:`read_images` gives them)."""
        words, inverse = np.unique(self.words, return_inverse=True)
        return np.array([_label_of(str(w), labels) for w in words], dtype=int)[inverse]


@functools.lru_cache(maxsize=4)
def _memmap(path: Path, count: int) -> np.ndarray:
    return np.memmap(path, np.uint8, "r", shape=(count, IMAGE_ROWS, IMAGE_BANDS))


def cached_images(source: str | Path, *, progress: bool = True) -> ImageStore:
    """The images of an archive or folder (as :func:`read_images` reads them), decoded once
    into :func:`kws.fileio.cache_dir` and reused while the source is unchanged (same
    path, size and modification time of the archive or of every image in the folder).

    Raises
    ------
    ImageError
        As :func:`read_images`.
    """
    source = Path(source)
    if not source.exists():
        raise ImageError(f"{source}: log-mel image archive not found")
    files = sorted(source.rglob("*.jpg")) if source.is_dir() else [source]
    key = hashlib.sha256(str(source.resolve()).encode())
    for path in files:
        stat = path.stat()
        key.update(
            f"{path.relative_to(source) if source.is_dir() else ''}:{stat.st_size}:{stat.st_mtime_ns};".encode()
        )
    folder = cache_dir() / f"images-{key.hexdigest()[:16]}"
    index = folder / "index.json"
    if not index.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        words, splits = [], []
        with atomic_path(folder / "pixels.u8") as tmp, open(tmp, "wb") as f:
            for word, split, pixels in _decoded(source, progress):
                f.write(pixels.tobytes())
                words.append(word)
                splits.append(split)
        write_text_atomic(index, json.dumps({"source": str(source), "words": words, "splits": splits}))
    saved = json.loads(index.read_text())
    return ImageStore(folder / "pixels.u8", np.array(saved["words"]), np.array(saved["splits"]), str(source))


def jpeg_round_trip(pixels: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
    """Round to 8 bits, save as JPEG and decode, as the images were made; float32 out."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.round(pixels), 0, PIXEL_MAX).astype(np.uint8)).save(
        buffer, "JPEG", quality=quality
    )
    return np.asarray(Image.open(buffer), dtype=np.float32)


def audio_image(audio: np.ndarray, frontend: FrontendConfig) -> np.ndarray:
    """The image of a clip as the archive would hold it: 10-ms pixel rows, JPEG round trip; (98, 40) float32."""
    return jpeg_round_trip(clip_log_mel(audio, row_frontend(frontend)))


def pixels_to_energy(pixels: np.ndarray, frontend: FrontendConfig) -> np.ndarray:
    """Mel energies of pixels (the inverse of the pixel log below saturation)."""
    return frontend.log_floor * np.expm1(np.asarray(pixels, dtype=np.float32) / np.float32(10.0))


def energy_to_pixels(energy: np.ndarray, frontend: FrontendConfig) -> np.ndarray:
    """Pixels of mel energies: ``min(10 ln(1 + e / floor), 255)``, float32."""
    return np.minimum(np.float32(10.0) * np.log1p(energy / frontend.log_floor), PIXEL_MAX).astype(np.float32)


@dataclass(frozen=True)
class ImageAugmentation:
    """Drawn parameters of :func:`augment_images`, one entry an image (``noise`` -1: none)."""

    gain: np.ndarray  # power factor
    noise: np.ndarray  # index into the noise images, or -1
    snr_db: np.ndarray
    shift: np.ndarray  # rows

    @staticmethod
    def concat(parts: Sequence[ImageAugmentation]) -> ImageAugmentation:
        fields = ("gain", "noise", "snr_db", "shift")
        return ImageAugmentation(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))


def draw_image_augmentation(
    rng: np.random.Generator,
    n: int,
    noise_images: int,
    *,
    gain_db: float,
    noise_probability: float,
    snr_db: tuple[float, float],
    max_shift_rows: int,
) -> ImageAugmentation:
    """The random part of :func:`augment_images` for ``n`` images (``noise_images`` to choose from)."""
    gain = 10 ** (rng.uniform(-gain_db, gain_db, n) / 10)
    noise, snr = np.full(n, -1), np.zeros(n)
    if noise_images:
        mixed = rng.uniform(size=n) < noise_probability
        noise = np.where(mixed, rng.integers(0, noise_images, n), -1)
        snr = rng.uniform(*snr_db, n)
    return ImageAugmentation(gain, noise, snr, rng.integers(-max_shift_rows, max_shift_rows + 1, n))


def apply_image_augmentation(
    pixels: np.ndarray, augmentation: ImageAugmentation, frontend: FrontendConfig, noise: np.ndarray
) -> np.ndarray:
    """The deterministic part of :func:`augment_images`: images with drawn parameters applied."""
    energy = pixels_to_energy(pixels, frontend)
    energy *= augmentation.gain[:, None, None].astype(np.float32)
    mixed = augmentation.noise >= 0
    if mixed.any():
        noise_energy = pixels_to_energy(noise[np.maximum(augmentation.noise, 0)], frontend)
        clip_level = energy.mean(axis=(1, 2))
        noise_level = np.maximum(noise_energy.mean(axis=(1, 2)), 1e-30)
        scale = clip_level / noise_level / 10 ** (augmentation.snr_db / 10)
        energy += (noise_energy * (scale * mixed)[:, None, None]).astype(np.float32)
    out = energy_to_pixels(energy, frontend)
    for i, shift in enumerate(augmentation.shift):
        if shift:
            out[i] = np.roll(out[i], shift, axis=0)
            if shift > 0:
                out[i, :shift] = 0
            else:
                out[i, shift:] = 0
    return out


def augment_images(
    pixels: np.ndarray,
    rng: np.random.Generator,
    frontend: FrontendConfig,
    noise: np.ndarray,
    *,
    gain_db: float,
    noise_probability: float,
    snr_db: tuple[float, float],
    max_shift_rows: int,
) -> np.ndarray:
    """Gain, background noise (both in mel power) and a time shift (in rows) on images.

    Parameters
    ----------
    pixels : np.ndarray, (n, rows, bands)
        Images (uint8 or float).
    rng : np.random.Generator
    frontend : FrontendConfig
        The images' front-end (its ``log_floor`` maps pixels to energies).
    noise : np.ndarray, (k, rows, bands)
        Noise images to mix in (the training part of the background images); none if empty.
    gain_db : float
        Uniform gain in [-gain_db, +gain_db] dB: an offset of about 2.3 pixels a dB on
        unclipped pixels, exactly as a gain on the audio would move them.
    noise_probability, snr_db
        Chance of noise, and its SNR range (dB, mean energies of clip and noise image).
    max_shift_rows : int
        Uniform shift in rows either way, filled with silent rows (pixel 0).

    Returns
    -------
    np.ndarray, float32, same shape
    """
    augmentation = draw_image_augmentation(
        rng,
        len(pixels),
        len(noise),
        gain_db=gain_db,
        noise_probability=noise_probability,
        snr_db=snr_db,
        max_shift_rows=max_shift_rows,
    )
    return apply_image_augmentation(pixels, augmentation, frontend, noise)


def image_features(pixels: np.ndarray, phases: np.ndarray, frontend: FrontendConfig) -> np.ndarray:
    """Model features of images: rows ``phase::step`` (one model frame each), DCT, normalisation.

    Parameters
    ----------
    pixels : np.ndarray, (n, 98, 40)
    phases : np.ndarray of int, (n,)
        Which row each image starts from (0 .. step - 1).
    frontend : FrontendConfig
        The model's front-end (fitted or not).

    Returns
    -------
    np.ndarray, float32, (n, clip_frames, n_mfcc)
    """
    step = row_step(frontend)
    frames = frontend.clip_frames
    rows = phases[:, None] + step * np.arange(frames)[None, :]
    chosen = np.take_along_axis(np.asarray(pixels, dtype=np.float64), rows[:, :, None], axis=1)
    return normalise(log_mel_to_cepstra(chosen, frontend), frontend)
