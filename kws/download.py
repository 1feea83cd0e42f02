"""Download and unpack the Google Speech Commands data set: resumable, checksummed, safe to extract."""

from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

from kws.errors import DownloadError
from kws.progress import bar, stage

# Sizes and SHA-256 sums as recorded by TensorFlow Datasets in
# github.com/tensorflow/datasets, file tensorflow_datasets/url_checksums/speech_commands.txt
# (commit 333639b37af6c6fedf3610a4a2d42f1c6ef6f7d5); torchaudio's SPEECHCOMMANDS lists the same
# SHA-256 for the training archive.
SPEECH_COMMANDS_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
SPEECH_COMMANDS_SIZE = 2_428_923_189
SPEECH_COMMANDS_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"

SPEECH_COMMANDS_TEST_SET_URL = "http://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz"
SPEECH_COMMANDS_TEST_SET_SIZE = 112_563_277
SPEECH_COMMANDS_TEST_SET_SHA256 = "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df"

# The v0.02 archive unpacks to ~105k files, ~3.8 GB, the largest a few MB (background noise):
# these limits leave a wide margin and still stop a tar bomb.
MAX_MEMBER_BYTES = 200 * 1024**2
MAX_TOTAL_BYTES = 8 * 1024**3
MAX_MEMBERS = 200_000

_CHUNK = 1024**2


def download(
    url: str,
    dest_file: str | os.PathLike[str],
    *,
    sha256: str,
    expected_size: int | None = None,
    progress: bool = True,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``dest_file``, resuming an interrupted download, and verify its SHA-256.

    Parameters
    ----------
    url : str
        HTTP(S) address of the file.
    dest_file : path
        Where the verified file ends up. Data is written to ``dest_file + ".part"`` first and
        renamed into place only once its checksum matches, so ``dest_file`` is never partial.
    sha256 : str
        Expected SHA-256 of the whole file, as hex.
    expected_size : int or None
        Expected size in bytes, if known: lets an existing file of the wrong size skip hashing,
        drops a ``.part`` that is already too long, and sizes the progress bar.
    progress : bool
        Progress on stderr (:mod:`kws.progress`): the transfer, then the checksum.
    timeout : float
        Seconds to wait for the server on each network operation.

    Returns
    -------
    Path
        ``dest_file``. If it already exists with the right checksum nothing is downloaded; if
        its checksum is wrong it is downloaded again and replaced.

    Raises
    ------
    DownloadError
        On a network or HTTP error (the ``.part`` is kept, so the next call resumes), or when
        the downloaded data does not match ``sha256`` (the ``.part`` is deleted).
    """
    dest = Path(dest_file)
    sha256 = sha256.lower()
    if dest.is_file() and _has_checksum(dest, sha256, expected_size):
        return dest

    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A .part longer than the file cannot be a prefix of it: start over rather than ask for a range past the end.
    if expected_size is not None and part.is_file() and part.stat().st_size > expected_size:
        part.unlink()
    _fetch(url, part, expected_size=expected_size, progress=progress, timeout=timeout)

    stage(f"checking the SHA-256 of {dest.name}", progress)  # seconds for the 2.4 GB archive
    got = _sha256_of(part)
    if got != sha256:
        part.unlink()
        raise DownloadError(
            f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}; "
            "the download was deleted, run again to retry"
        )
    os.replace(part, dest)
    return dest


def extract_tar(
    archive: str | os.PathLike[str],
    dest_dir: str | os.PathLike[str],
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_members: int = MAX_MEMBERS,
) -> Path:
    """Extract a (possibly compressed) tar archive into ``dest_dir``, safely and atomically.

    Every member is checked before anything is written: only regular files and folders are
    accepted (Speech Commands has nothing else), so links, devices and FIFOs are refused, as are
    absolute paths, ``..`` components, names that appear twice and archives that are too large
    or hold too many members. Extraction is done here, not by ``tarfile.extractall``: with no
    link ever written, no path can resolve outside the folder (CVE-2025-4517 bypasses
    ``filter="data"`` in Pythons before 3.11.13 with a chain of links, and 3.11.2 has no
    ``filter`` at all). The archive is extracted into a temporary
    folder beside ``dest_dir`` that is renamed into place at the end, so ``dest_dir`` either
    does not exist or holds the complete archive.

    Parameters
    ----------
    archive : path
        The tar file (plain, gzip, bzip2 or xz).
    dest_dir : path
        Folder to create. It may exist only if it is empty.
    max_member_bytes : int
        Largest size a single member may declare.
    max_total_bytes : int
        Largest sum of the sizes the members declare.
    max_members : int
        Largest number of members.

    Returns
    -------
    Path
        ``dest_dir``.

    Raises
    ------
    DownloadError
        If ``dest_dir`` is not empty, the archive is not a readable tar file, or a member is
        unsafe (the message names it). Nothing is left in ``dest_dir`` in that case.
    """
    dest = Path(dest_dir)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DownloadError(f"cannot extract into {dest}: it exists and is not an empty folder")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _checked_members(
                tar,
                max_member_bytes=max_member_bytes,
                max_total_bytes=max_total_bytes,
                max_members=max_members,
            )
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
            try:
                for member in members:
                    _extract_member(tar, member, tmp)
                if dest.exists():
                    dest.rmdir()
                os.replace(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except (tarfile.ReadError, EOFError, zlib.error) as error:
        # tarfile's own message for a non-tar file spans several lines; the CLI prints one.
        raise DownloadError(f"cannot extract {archive}: not a tar archive, or a damaged one") from error
    except (tarfile.TarError, OSError) as error:
        raise DownloadError(f"cannot extract {archive}: {error}") from error
    return dest


def download_speech_commands(
    dest_dir: str | os.PathLike[str],
    *,
    url: str = SPEECH_COMMANDS_URL,
    sha256: str = SPEECH_COMMANDS_SHA256,
    expected_size: int | None = SPEECH_COMMANDS_SIZE,
    progress: bool = True,
) -> Path:
    """Download the Speech Commands archive and extract it into ``dest_dir``.

    Parameters
    ----------
    dest_dir : path
        Folder for the extracted data set (one sub-folder per word). If it already exists and
        is not empty it is taken as a finished extraction and returned as is.
    url : str
        Address of the archive; the default is the official v0.02 release.
    sha256 : str
        Expected SHA-256 of the archive.
    expected_size : int or None
        Expected size of the archive in bytes, or None if unknown.
    progress : bool
        Progress on stderr (:mod:`kws.progress`): the download, then the extraction.

    Returns
    -------
    Path
        ``dest_dir``.

    Notes
    -----
    The archive is kept beside ``dest_dir``, named after the last part of ``url``, so an
    interrupted download resumes and a failed extraction does not download again.
    """
    dest = Path(dest_dir)
    # Extraction renames a complete folder into place, so a non-empty one is a finished run.
    if dest.is_dir() and any(dest.iterdir()):
        return dest
    name = posixpath.basename(urllib.parse.urlsplit(url).path)
    if not name:
        raise DownloadError(f"cannot name a cache file after {url}: its path has no file name")
    archive = download(url, dest.parent / name, sha256=sha256, expected_size=expected_size, progress=progress)
    stage(f"extracting {archive} into {dest}", progress)  # a minute or more for 105,000 files
    return extract_tar(archive, dest)


def _fetch(url: str, part: Path, *, expected_size: int | None, progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part``, or fill it from the start if the server cannot resume."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout
        ) as response:
            if offset and response.status != 206:
                offset = 0  # the server ignored the Range header and sends the whole file
            length = response.headers.get("Content-Length")
            remaining = int(length) if length is not None else None
            total = offset + remaining if remaining is not None else expected_size
            received = 0
            with (
                part.open("ab" if offset else "wb") as out,
                bar(
                    desc=part.name.removesuffix(".part"),
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    enabled=progress,
                ) as shown,
            ):
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    shown.update(len(chunk))
            if remaining is not None and received != remaining:
                raise DownloadError(
                    f"cannot download {url}: the connection closed after {received} of {remaining} bytes; "
                    "run again to resume"
                )
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return  # nothing lies past the .part: it is already whole (the checksum will tell)
        raise DownloadError(f"cannot download {url}: HTTP {error.code} {error.reason}") from error
    except urllib.error.URLError as error:
        raise DownloadError(f"cannot download {url}: {error.reason}") from error
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(f"cannot download {url}: {error!r}; run again to resume") from error


def _has_checksum(path: Path, sha256: str, expected_size: int | None) -> bool:
    """Whether ``path`` has the expected size (if given) and SHA-256."""
    if expected_size is not None and path.stat().st_size != expected_size:
        return False
    return _sha256_of(path) == sha256


def _sha256_of(path: Path) -> str:
    """SHA-256 of a file as hex, read in chunks so a multi-GB archive does not fill memory."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _checked_members(
    tar: tarfile.TarFile, *, max_member_bytes: int, max_total_bytes: int, max_members: int
) -> list[tarfile.TarInfo]:
    """Read all member headers and refuse the archive if any member is unsafe or the whole is too big.

    Members are checked as they are read, so a header declaring an absurd size is refused before
    tarfile tries to skip over data that is not there.
    """
    members: list[tarfile.TarInfo] = []
    files: set[str] = set()
    total = 0
    for member in tar:
        name = member.name
        if len(members) == max_members:
            raise DownloadError(f"unsafe archive: more than {max_members} members (at {name!r})")
        if member.issym() or member.islnk():
            raise DownloadError(f"unsafe archive: member {name!r} is a link (to {member.linkname!r})")
        if not (member.isreg() or member.isdir()):
            raise DownloadError(f"unsafe archive: member {name!r} is a device, FIFO or other special file")
        if _escapes(name):
            raise DownloadError(f"unsafe archive: member {name!r} has an absolute path or leaves the folder")
        if member.isreg():
            normal = posixpath.normpath(name)
            if normal in files:
                raise DownloadError(f"unsafe archive: member {name!r} appears twice")
            files.add(normal)
        if member.size > max_member_bytes:
            raise DownloadError(
                f"unsafe archive: member {name!r} declares {member.size} bytes, "
                f"more than the limit of {max_member_bytes}"
            )
        total += member.size
        if total > max_total_bytes:
            raise DownloadError(
                f"unsafe archive: members up to {name!r} declare {total} bytes, "
                f"more than the limit of {max_total_bytes}"
            )
        members.append(member)
    return members


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path) -> None:
    """Write one checked folder or regular file under ``root``, never following a link.

    ``root`` is a fresh folder and no link is ever written into it, so every path stays inside;
    ``O_NOFOLLOW | O_EXCL`` make that hold even if something else creates one meanwhile.
    """
    relative = posixpath.normpath(member.name)
    if relative == ".":
        return
    path = root.joinpath(*relative.split("/"))
    if member.isdir():
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    if source is None:  # cannot happen for a regular file; keeps the type checker honest
        raise DownloadError(f"cannot read member {member.name!r}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    with source, os.fdopen(os.open(path, flags, 0o666), "wb") as out:
        shutil.copyfileobj(source, out, _CHUNK)
    os.utime(path, (member.mtime, member.mtime))


def _escapes(path: str) -> bool:
    """Whether an archive path is absolute or, once normalised, climbs above the folder."""
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        return True  # POSIX root, Windows root or drive letter
    normal = posixpath.normpath(path.replace("\\", "/"))
    return normal == ".." or normal.startswith("../")
