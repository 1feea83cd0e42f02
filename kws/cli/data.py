"""``kws data check``, ``kws data download`` and ``kws features``: the speech data and its features."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from kws.cli.options import Subcommands, frontend_option, keywords, quiet_option
from kws.data import DEFAULT_KEYWORDS
from kws.features import FRONTENDS


def add_data(sub: Subcommands) -> None:
    data = sub.add_parser("data", help="check or download speech data")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    check = data_sub.add_parser("check", help="count clips per label and split, check speakers and files")
    check.add_argument("dir", type=Path, help="a Speech Commands folder, or a 12-class test folder")
    check.add_argument(
        "--keywords",
        type=keywords,
        default=DEFAULT_KEYWORDS,
        help=f"comma-separated keywords (default: {','.join(DEFAULT_KEYWORDS)})",
    )
    quiet_option(check)
    check.set_defaults(func=cmd_data_check)
    download = data_sub.add_parser("download", help="download and unpack Speech Commands v0.02 (2.4 GB)")
    download.add_argument("--dest", type=Path, default=Path("data/speech_commands"), help="target folder")
    quiet_option(download, help="no progress bar")
    download.set_defaults(func=cmd_data_download)


def add_features(sub: Subcommands) -> None:
    feats = sub.add_parser("features", help="compute the MFCC features of an audio file")
    feats.add_argument(
        "file", type=Path, help="a WAV, FLAC or Ogg (Opus, Vorbis) file (converted to 16 kHz mono)"
    )
    feats.add_argument("--out", type=Path, help="save the (frames, cepstra) array as .npy")
    frontend_option(feats, help="front-end setting (see README)")
    feats.set_defaults(func=cmd_features)


def cmd_data_check(args: argparse.Namespace) -> int:
    from kws.data import check, format_check

    report = check(args.dir, args.keywords, progress=not args.quiet)
    print(format_check(report))
    return 1 if report.unreadable or report.index.listed_missing or any(report.overlap.values()) else 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from kws.download import download_speech_commands

    folder = download_speech_commands(args.dest, progress=not args.quiet)
    print(f"Speech Commands v0.02 is in {folder}")
    print(f"check it with: kws data check {folder}")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from kws.audio import load_audio
    from kws.features import features

    config = FRONTENDS[args.frontend]
    audio = load_audio(args.file, config.sample_rate)
    feats = features(audio, config)
    print(
        f"{args.file}: {len(audio) / config.sample_rate:.3f} s -> {feats.shape[0]} frames x {feats.shape[1]} "
        f"MFCCs ({config.window_length}-sample window, {config.hop_length}-sample hop, {config.n_mels} mel bands)"
    )
    if len(feats):
        with np.printoptions(precision=2, suppress=True, linewidth=120):
            print("mean per coefficient:", feats.mean(axis=0))
            print("std per coefficient: ", feats.std(axis=0))
    if args.out:
        from kws.fileio import atomic_path

        with atomic_path(args.out, suffix=".npy") as tmp, tmp.open("wb") as f:
            np.save(f, feats)
        print(f"wrote {args.out}")
    return 0
