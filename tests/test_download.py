"""Tests for kws.download against a local HTTP server and hand-built archives (no real network)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import posixpath
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import make_tar_gz

from kws.download import download, download_speech_commands, extract_tar
from kws.errors import DownloadError
from kws.progress import Bar

FILES = {
    "yes/abc_nohash_0.wav": b"RIFF-yes-0" * 50,
    "yes/abd_nohash_1.wav": b"RIFF-yes-1" * 70,
    "no/abc_nohash_0.wav": b"RIFF-no-0" * 30,
    "_background_noise_/white_noise.wav": bytes(range(256)) * 8,
    "validation_list.txt": b"yes/abd_nohash_1.wav\n",
    "testing_list.txt": b"no/abc_nohash_0.wav\n",
}


class Server:
    """A local HTTP server for the files in a folder; it honours ``Range`` requests unless told not to."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str | None] = []  # the Range header of each request
        self.ignore_range = False
        self.truncate_to: int | None = None  # send only this many bytes of the body, then hang up
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                range_header = self.headers.get("Range")
                server.requests.append(range_header)
                path = server.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404, "Not Found")
                    return
                data = path.read_bytes()
                start = 0
                if range_header and not server.ignore_range:
                    start = int(range_header.removeprefix("bytes=").removesuffix("-"))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: server.truncate_to])

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep pytest output clean

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "served"
    root.mkdir()
    srv = Server(root)
    # A short poll interval keeps shutdown (once per test) fast.
    thread = threading.Thread(target=srv.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    thread.join()


def add_member(tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> None:
    """Add an empty member of any type, link or device included."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    tar.addfile(info)


def write_tar(path: Path, members: list[tuple[str, bytes, str]]) -> Path:
    """Write a tar.gz at ``path`` from (name, type, linkname) triples, after one harmless file."""
    with tarfile.open(path, "w:gz") as tar:
        add_member(tar, "yes/ok.wav")
        for name, kind, linkname in members:
            add_member(tar, name, kind, linkname)
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serve(server: Server, name: str, data: bytes) -> str:
    (server.root / name).write_bytes(data)
    return server.url(name)


def assert_files(folder: Path) -> None:
    found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert found == set(FILES)
    for name, data in FILES.items():
        assert (folder / name).read_bytes() == data


def leftovers(folder: Path) -> list[str]:
    """Names in ``folder`` other than the served files: temporary folders, partial downloads."""
    return sorted(p.name for p in folder.iterdir() if p.name != "served")


# --- download + extraction ----------------------------------------------------------------------


def test_happy_path_then_nothing_to_do(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_tar_gz(FILES)
    url = serve(server, "sc.tar.gz", data)
    dest = tmp_path / "speech_commands"

    out = download_speech_commands(dest, url=url, sha256=sha256(data), expected_size=len(data))
    # Progress on stderr, no terminal here: a line for each stage.
    assert capsys.readouterr().err.splitlines() == [
        f"sc.tar.gz: {Bar.format_sizeof(len(data), 'B', 1024)}",  # as the bar shows it
        "checking the SHA-256 of sc.tar.gz",
        f"extracting {tmp_path / 'sc.tar.gz'} into {dest}",
    ]

    assert out == dest
    assert_files(dest)
    assert (tmp_path / "sc.tar.gz").read_bytes() == data  # archive cached beside dest
    assert leftovers(tmp_path) == ["sc.tar.gz", "speech_commands"]
    assert server.requests == [None]

    download_speech_commands(dest, url=url, sha256=sha256(data), expected_size=len(data))
    assert server.requests == [None] and capsys.readouterr().err == ""  # nothing done, nothing said


def test_download_skips_a_verified_file(server: Server, tmp_path: Path) -> None:
    data = b"payload" * 100
    url = serve(server, "f.bin", data)
    dest = tmp_path / "f.bin"
    download(url, dest, sha256=sha256(data), progress=False)
    download(url, dest, sha256=sha256(data).upper(), progress=False)
    assert dest.read_bytes() == data
    assert server.requests == [None]


def test_download_replaces_a_file_with_the_wrong_checksum(server: Server, tmp_path: Path) -> None:
    data = b"payload" * 100
    url = serve(server, "f.bin", data)
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"stale")
    download(url, dest, sha256=sha256(data), progress=False)
    assert dest.read_bytes() == data


def test_resume_from_part(server: Server, tmp_path: Path) -> None:
    data = make_tar_gz(FILES)
    url = serve(server, "sc.tar.gz", data)
    half = len(data) // 2
    (tmp_path / "sc.tar.gz.part").write_bytes(data[:half])

    dest = download_speech_commands(
        tmp_path / "data", url=url, sha256=sha256(data), expected_size=len(data), progress=False
    )

    assert server.requests == [f"bytes={half}-"]
    assert_files(dest)
    assert not (tmp_path / "sc.tar.gz.part").exists()


def test_resume_when_server_ignores_range(server: Server, tmp_path: Path) -> None:
    data = b"0123456789" * 100
    url = serve(server, "f.bin", data)
    server.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(data[:300])

    download(url, tmp_path / "f.bin", sha256=sha256(data), progress=False)

    assert server.requests == ["bytes=300-"]
    assert (tmp_path / "f.bin").read_bytes() == data  # restarted from zero, not appended


def test_resume_when_part_is_already_complete(server: Server, tmp_path: Path) -> None:
    data = b"0123456789" * 100
    url = serve(server, "f.bin", data)
    (tmp_path / "f.bin.part").write_bytes(data)

    download(url, tmp_path / "f.bin", sha256=sha256(data), progress=False)

    assert server.requests == [f"bytes={len(data)}-"]  # answered 416
    assert (tmp_path / "f.bin").read_bytes() == data


def test_too_long_part_is_dropped(server: Server, tmp_path: Path) -> None:
    data = b"0123456789" * 100
    url = serve(server, "f.bin", data)
    (tmp_path / "f.bin.part").write_bytes(data + b"junk")

    download(url, tmp_path / "f.bin", sha256=sha256(data), expected_size=len(data), progress=False)

    assert server.requests == [None]
    assert (tmp_path / "f.bin").read_bytes() == data


def test_dropped_connection_keeps_part_then_resumes(server: Server, tmp_path: Path) -> None:
    data = b"0123456789" * 100
    url = serve(server, "f.bin", data)
    dest = tmp_path / "f.bin"
    server.truncate_to = 400

    with pytest.raises(DownloadError, match="resume"):
        download(url, dest, sha256=sha256(data), progress=False)
    assert (tmp_path / "f.bin.part").read_bytes() == data[:400]
    assert not dest.exists()

    server.truncate_to = None
    download(url, dest, sha256=sha256(data), progress=False)
    assert server.requests == [None, "bytes=400-"]
    assert dest.read_bytes() == data


def test_corrupted_archive(server: Server, tmp_path: Path) -> None:
    data = make_tar_gz(FILES)
    url = serve(server, "sc.tar.gz", data[:-1] + bytes([data[-1] ^ 0xFF]))
    dest = tmp_path / "data"

    with pytest.raises(DownloadError, match=f"checksum mismatch.*expected sha256 {sha256(data)}, got"):
        download_speech_commands(dest, url=url, sha256=sha256(data), progress=False, expected_size=None)

    assert leftovers(tmp_path) == []  # no archive, no .part, no extracted folder


def test_404(server: Server, tmp_path: Path) -> None:
    url = server.url("missing.tar.gz")
    with pytest.raises(DownloadError, match=r"cannot download .*missing\.tar\.gz: HTTP 404"):
        download(url, tmp_path / "x.tar.gz", sha256="0" * 64, progress=False)
    assert leftovers(tmp_path) == []


def test_server_down(tmp_path: Path) -> None:
    # A port that was free a moment ago: nothing listens there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/sc.tar.gz"
    with pytest.raises(DownloadError, match=f"cannot download {url}: .*refused"):
        download(url, tmp_path / "sc.tar.gz", sha256="0" * 64, progress=False, timeout=5)


def test_no_file_name_in_url(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="no file name"):
        download_speech_commands(tmp_path / "data", url="http://127.0.0.1:1/", sha256="0" * 64)


# --- extraction -------------------------------------------------------------------------------


def test_extract_tar_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tar_gz(FILES))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    with pytest.raises(DownloadError, match="not an empty folder"):
        extract_tar(archive, dest)
    assert [p.name for p in dest.iterdir()] == ["mine.txt"]


def test_extract_tar_into_an_empty_folder(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tar_gz(FILES))
    dest = tmp_path / "dest"
    dest.mkdir()
    assert_files(extract_tar(archive, dest))


@pytest.mark.parametrize(
    ("name", "kind", "linkname", "message"),
    [
        ("../evil", tarfile.REGTYPE, "", "'../evil' has an absolute path or leaves"),
        ("yes/../../evil", tarfile.REGTYPE, "", "leaves the folder"),
        ("/etc/evil", tarfile.REGTYPE, "", "'/etc/evil' has an absolute path"),
        ("yes/ok.wav", tarfile.REGTYPE, "", "'yes/ok.wav' appears twice"),
        ("./yes/ok.wav", tarfile.REGTYPE, "", "'./yes/ok.wav' appears twice"),
        # Speech Commands holds no link: every link is refused, even one that stays inside.
        ("yes/same.wav", tarfile.SYMTYPE, "ok.wav", "'yes/same.wav' is a link"),
        ("yes/link", tarfile.SYMTYPE, "../../outside", "'yes/link' is a link"),
        ("yes/abs", tarfile.SYMTYPE, "/etc/passwd", "'yes/abs' is a link"),
        ("yes/hard", tarfile.LNKTYPE, "yes/ok.wav", "'yes/hard' is a link"),
        ("yes/dev", tarfile.CHRTYPE, "", "'yes/dev' is a device"),
        ("yes/blk", tarfile.BLKTYPE, "", "'yes/blk' is a device"),
        ("yes/fifo", tarfile.FIFOTYPE, "", "'yes/fifo' is a device, FIFO"),
    ],
)
def test_extract_tar_rejects_unsafe_members(
    tmp_path: Path, name: str, kind: bytes, linkname: str, message: str
) -> None:
    archive = write_tar(tmp_path / "a.tar.gz", [(name, kind, linkname)])
    with pytest.raises(DownloadError, match=message):
        extract_tar(archive, tmp_path / "dest")
    assert leftovers(tmp_path) == ["a.tar.gz"]


def test_extract_tar_rejects_the_cve_2025_4517_archive(tmp_path: Path) -> None:
    """The published exploit: links through directories with 247-character names run the resolved
    path past PATH_MAX, where ``os.path.realpath`` (and so ``filter="data"`` before Python
    3.11.13) stops checking, then a link climbs out and a file is written through it."""
    work = tmp_path / "work"
    work.mkdir()
    long_name = "d" * 247
    steps = "abcdefghijklmnop"
    path = ""
    archive = work / "cve.tar"
    with tarfile.open(archive, "w") as tar:
        for step in steps:
            add_member(tar, posixpath.join(path, long_name), tarfile.DIRTYPE)
            add_member(tar, posixpath.join(path, step), tarfile.SYMTYPE, long_name)
            path = posixpath.join(path, long_name)
        chain = "/".join(steps)
        add_member(tar, chain + "/l", tarfile.SYMTYPE, "../" * len(steps))
        add_member(tar, "escape", tarfile.SYMTYPE, chain + "/l/../../..")
        data = b"written outside"
        info = tarfile.TarInfo("escape/pwned.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DownloadError, match=r"unsafe archive: member 'a' is a link"):
        extract_tar(archive, work / "dest")
    assert sorted(p.name for p in work.iterdir()) == ["cve.tar"]
    assert not any(p.name == "pwned.txt" for p in tmp_path.rglob("*"))


def test_extract_tar_works_without_tarfile_filters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Debian 12's Python 3.11.2 predates tarfile's extraction filters; extraction must not need them.
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    monkeypatch.setattr(tarfile.TarFile, "extractall", None)
    monkeypatch.setattr(tarfile.TarFile, "extract", None)
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tar_gz(FILES))
    assert_files(extract_tar(archive, tmp_path / "dest"))


def test_extract_tar_rejects_an_absurd_declared_size(tmp_path: Path) -> None:
    # A header claiming a terabyte followed by no data: refused from the header alone.
    info = tarfile.TarInfo("yes/huge.wav")
    info.size = 10**12
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(gzip.compress(info.tobuf(tarfile.GNU_FORMAT) + bytes(512)))
    with pytest.raises(DownloadError, match=r"'yes/huge\.wav' declares 1000000000000 bytes"):
        extract_tar(archive, tmp_path / "dest")
    assert leftovers(tmp_path) == ["a.tar.gz"]


def test_extract_tar_rejects_a_large_member(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tar_gz(FILES))
    with pytest.raises(DownloadError, match="declares 2048 bytes, more than the limit of 1000"):
        extract_tar(archive, tmp_path / "dest", max_member_bytes=1000)
    assert leftovers(tmp_path) == ["a.tar.gz"]


def test_extract_tar_rejects_a_large_total(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tar_gz(FILES))
    with pytest.raises(DownloadError, match="more than the limit of 1000"):
        extract_tar(archive, tmp_path / "dest", max_total_bytes=1000)
    assert leftovers(tmp_path) == ["a.tar.gz"]


def test_extract_tar_rejects_too_many_members(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tar_gz(FILES))
    with pytest.raises(DownloadError, match="more than 3 members"):
        extract_tar(archive, tmp_path / "dest", max_members=3)
    assert leftovers(tmp_path) == ["a.tar.gz"]


@pytest.mark.parametrize(
    "content",
    [b"this is not a tar file at all" * 40, gzip.compress(b"not a tar inside gzip" * 40), b""],
    ids=["text", "gzip-of-text", "empty"],
)
def test_extract_tar_rejects_a_non_tar_file(tmp_path: Path, content: bytes) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(DownloadError, match=r"cannot extract .*: not a tar archive, or a damaged one$"):
        extract_tar(archive, tmp_path / "dest")
    assert leftovers(tmp_path) == ["a.tar.gz"]


def test_extract_tar_rejects_a_truncated_archive(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tar_gz(FILES)[:200])
    with pytest.raises(DownloadError, match=r"cannot extract .*: not a tar archive, or a damaged one$"):
        extract_tar(archive, tmp_path / "dest")
    assert leftovers(tmp_path) == ["a.tar.gz"]
