"""``kws train`` and ``kws tune``: a model trained, and its streaming thresholds tuned.

The training options' defaults are :class:`~kws.training.config.TrainConfig`'s (a module
without TensorFlow); training itself is imported when the command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from kws.artifact import ARCHITECTURES
from kws.cli.options import (
    INTERRUPTED,
    Subcommands,
    defaults,
    dropout,
    frontend_option,
    keywords,
    positive,
    quiet_option,
    sources_option,
    val_negatives_option,
)
from kws.data import SPLITS
from kws.errors import KwsError
from kws.features import FRONTENDS
from kws.inputs import DEFAULT_DISTRIBUTE, DEFAULT_INPUT_WORKERS, DISTRIBUTE
from kws.streameval import DEFAULT_TARGET_FA, DEFAULT_TUNE_MINUTES, tune_model
from kws.training.config import TrainConfig


def add_train(sub: Subcommands) -> None:
    default = defaults(TrainConfig)
    train = sub.add_parser(
        "train", help="train a model and quantise it to int8 (float, int8 and step models)"
    )
    train.add_argument("--data", type=Path, required=True, help="Speech Commands folder (official layout)")
    train.add_argument("--out", type=Path, required=True, help="run folder for models, checkpoint and report")
    train.add_argument("--arch", choices=ARCHITECTURES, default=default["arch"])
    train.add_argument(
        "--keywords", type=keywords, default=default["keywords"], help="comma-separated keywords"
    )
    train.add_argument(
        "--images",
        type=Path,
        help="the full set's log-mel images (speech_commands_logmel.tar.gz or its folder), trained on beside --data",
    )
    sources_option(
        train,
        "--negatives",
        "a folder or .txt list of non-keyword speech trained on as _unknown_ (repeatable; 10%% held "
        "out for validation unless --val-negatives)",
    )
    val_negatives_option(train, instead="with it, no part of --negatives is held out")
    sources_option(
        train,
        "--backgrounds",
        "a folder or .txt list of more background recordings (music, say) mixed into the training "
        "audio beside the data set's _background_noise_ (repeatable)",
        metavar="SOURCE",
    )
    train.add_argument(
        "--negative-hop",
        type=positive(float),
        help="train on every 1-s window of each negative recording, this many seconds apart "
        "(default: one window a recording each epoch)",
    )
    train.add_argument(
        "--unknown-weight",
        type=positive(float),
        default=default["unknown_weight"],
        help="the _unknown_ class's share of the loss relative to one keyword's "
        f"(default {default['unknown_weight']:g}: balanced)",
    )
    train.add_argument(
        "--finetune-from",
        type=Path,
        metavar="RUN",
        help="continue a finished run's last checkpoint with these settings up to --epochs (same model "
        "and training sources; the best epoch is chosen among the new ones)",
    )
    train.add_argument(
        "--hard-negatives",
        type=positive(int, allow_zero=True),
        default=default["hard_negatives"],
        help="each epoch, also train on this many of the negatives' 1-s windows the model found most "
        f"keyword-like (hard-negative mining; default {default['hard_negatives']}: off)",
    )
    train.add_argument(
        "--sequence-clips",
        type=positive(int),
        default=default["sequence_clips"],
        help="LSTM/GRU: train on sequences of this many examples in a row, the state carried as "
        f"when streaming, non-keywords trained on at every frame (default {default['sequence_clips']}: "
        "each clip alone)",
    )
    frontend_option(
        train, help="front-end setting (logmel_image: the images' log-mel; hello_edge: the first release's)"
    )
    train.add_argument(
        "--n-mfcc",
        type=positive(int),
        default=default["frontend"].n_mfcc,
        help="cepstral coefficients a frame",
    )
    train.add_argument(
        "--epochs",
        type=positive(int),
        default=default["epochs"],
        help="most epochs (early stopping may end sooner)",
    )
    train.add_argument("--batch-size", type=positive(int), default=default["batch_size"])
    train.add_argument(
        "--patience",
        type=positive(int),
        default=default["patience"],
        help="epochs without progress before stopping",
    )
    train.add_argument(
        "--units", type=positive(int), default=default["units"], help="recurrent units per layer"
    )
    train.add_argument(
        "--dropout",
        type=dropout,
        default=default["dropout"],
        help=f"dropout rate, 0 to below 1 (default {default['dropout']:g})",
    )
    train.add_argument("--seed", type=int, default=default["seed"])
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument(
        "--input-workers",
        type=positive(int, allow_zero=True),
        default=DEFAULT_INPUT_WORKERS,
        help=f"processes computing the augmented features beside training (default {DEFAULT_INPUT_WORKERS}: "
        "one a core; 0: in the training process)",
    )
    train.add_argument(
        "--distribute",
        choices=DISTRIBUTE,
        default=DEFAULT_DISTRIBUTE,
        help="none: one device; mirrored: every local GPU (else the CPU); multiworker: the machines "
        "in $TF_CONFIG, each running this same command (the chief writes --out); --batch-size is the "
        "global batch",
    )
    train.add_argument("--benchmark", type=Path, help="also report accuracy on this data folder's test clips")
    train.add_argument(
        "--tune-minutes",
        type=positive(float, allow_zero=True),
        default=DEFAULT_TUNE_MINUTES,
        help="validation stream the streaming thresholds are tuned on (0: keep the default threshold)",
    )
    train.add_argument(
        "--target-fa",
        type=positive(float),
        help=f"false alarms per hour the thresholds aim at (default: {DEFAULT_TARGET_FA:g})",
    )
    quiet_option(train, help="no progress output")
    train.set_defaults(func=cmd_train)


def add_tune(sub: Subcommands) -> None:
    default = defaults(tune_model)
    tune = sub.add_parser(
        "tune", help="choose per-keyword thresholds on a validation stream and store them in the model"
    )
    tune.add_argument(
        "model", type=Path, nargs="+", help=".tflite model files (rewritten in place, unless --out)"
    )
    tune.add_argument(
        "--out", type=Path, help="write the tuned model here instead (one model; needed for the bundled ones)"
    )
    tune.add_argument(
        "--data", type=Path, required=True, help="Speech Commands folder the streams are built from"
    )
    tune.add_argument("--split", choices=SPLITS, default=default["split"])
    tune.add_argument(
        "--target",
        type=positive(float),
        help=f"false alarms per hour, all keywords (default: {DEFAULT_TARGET_FA:g})",
    )
    tune.add_argument(
        "--minutes", type=positive(float), default=default["minutes"], help="length of the tuning stream"
    )
    sources_option(
        tune,
        "--negatives",
        "a folder or .txt list of non-keyword speech whose held-out 10%% (the part kws train never "
        "trains on) also counts false alarms (repeatable)",
    )
    val_negatives_option(tune, instead="with it, --negatives' held-out 10%% is not used")
    tune.add_argument("--seed", type=int, default=default["seed"])
    quiet_option(tune)
    tune.set_defaults(func=cmd_tune)


def cmd_train(args: argparse.Namespace) -> int:
    from kws.pipeline import run

    config = TrainConfig(
        data=str(args.data),
        images=None if args.images is None else str(args.images),
        negatives=tuple(str(p) for p in args.negatives),
        val_negatives=tuple(str(p) for p in args.val_negatives),
        backgrounds=tuple(str(p) for p in args.backgrounds),
        negative_hop_s=args.negative_hop,
        unknown_weight=args.unknown_weight,
        hard_negatives=args.hard_negatives,
        sequence_clips=args.sequence_clips,
        finetune_from=None if args.finetune_from is None else str(args.finetune_from),
        arch=args.arch,
        keywords=args.keywords,
        epochs=args.epochs,
        batch_size=args.batch_size,
        patience=args.patience,
        units=args.units,
        dropout=args.dropout,
        seed=args.seed,
        frontend=dataclasses.replace(FRONTENDS[args.frontend], n_mfcc=args.n_mfcc),
    )
    report = run(
        config,
        args.out,
        resume=args.resume,
        benchmark=args.benchmark,
        progress=not args.quiet,
        tune_minutes=args.tune_minutes,
        target_false_alarms_per_hour=DEFAULT_TARGET_FA if args.target_fa is None else args.target_fa,
        input_workers=args.input_workers,
        distribute=args.distribute,
    )
    if report is None:  # a worker of a cluster other than the chief
        print(f"trained {config.arch} as a worker; the chief wrote the models", file=sys.stderr)
        return 0
    main_set = report.main_set
    print(f"trained {config.arch} in {report.state.train_seconds / 60:.1f} min; models in {args.out}")
    for name, value in report.accuracy[main_set].items():
        print(f"  {name:<18} {main_set} accuracy {value:.2%}")
    for name, a in report.tflm_vs_litert.items():
        print(f"  TFLM vs LiteRT, {name}: top-1 agreement {a['top1_agreement']:.2%}")
    for name, t in report.thresholds.items():
        print(
            f"  {name} thresholds for {t['target_false_alarms_per_hour']:g} false alarms/h: hit rate "
            f"{t['hit_rate']:.1%} at {t['false_alarms_per_hour']:.1f} false alarms/h ({t['minutes']:g}-min validation stream)"
        )
    print(f"report: {Path(args.out) / 'report.md'}")
    # An interrupted run still wrote its models; its status is the interrupt's, as for every command.
    return INTERRUPTED if report.interrupted else 0


def cmd_tune(args: argparse.Namespace) -> int:
    args.target = DEFAULT_TARGET_FA if args.target is None else args.target
    if args.out is not None and len(args.model) > 1:
        raise KwsError("--out names the tuned copy of one model; give one model with it")
    for path in args.model:
        tuning = tune_model(
            path,
            args.data,
            target_false_alarms_per_hour=args.target,
            negatives=args.negatives,
            val_negatives=args.val_negatives,
            split=args.split,
            minutes=args.minutes,
            seed=args.seed,
            out=args.out,
            progress=not args.quiet,
        )
        negatives = tuning.get("negatives")
        on = f" + {negatives['minutes']:.1f} min of validation negatives" if negatives else ""
        print(
            f"{args.out or path}: thresholds for {args.target:g} false alarms/h on {args.minutes:g} min of {args.split} "
            f"stream{on}: hit rate {tuning['hit_rate']:.1%}, {tuning['false_alarms_per_hour']:.1f} false alarms/h"
        )
        print("  " + ", ".join(f"{k} {t:.2f}" for k, t in tuning["thresholds"].items()))
    return 0
