"""Checkpoints: the last epoch's model and the best epoch's weights with the run's
progress, written so that Ctrl-C never leaves half of one, and the checks that a resumed
or fine-tuned run continues what it claims to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from kws.errors import KwsError
from kws.features import FrontendConfig
from kws.fileio import atomic_path, write_text_atomic
from kws.model import keras, save_h5
from kws.training.config import TrainConfig

CHECKPOINT_DIR = "checkpoint"


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C while a checkpoint is written, then raise it: no half-updated checkpoint."""
    caught: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


@dataclass
class TrainState:
    """Progress saved with each checkpoint."""

    epoch: int = 0  # epochs finished
    best_accuracy: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0


def save_checkpoint(model: keras.Model, state: TrainState, ckpt: Path, best: bool) -> None:
    """The epoch's model and progress (and its weights as the best, if ``best``) into ``ckpt``."""
    with _deferred_interrupt():
        with atomic_path(ckpt / "last.h5", suffix=".h5") as tmp:
            save_h5(model, tmp)
        if best:
            with atomic_path(ckpt / "best_weights.h5", suffix=".h5") as tmp:
                model.save_weights(tmp)
        write_text_atomic(ckpt / "state.json", json.dumps(dataclasses.asdict(state), indent=1))


def load_checkpoint(ckpt: Path) -> tuple[keras.Model, TrainState]:
    """The last epoch's compiled model (with its optimiser state) and the run's progress."""
    return keras.models.load_model(ckpt / "last.h5"), TrainState(
        **json.loads((ckpt / "state.json").read_text())
    )


def _as_read_back(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` as it reads back from a JSON file (tuples become lists), to compare with one."""
    result: dict[str, Any] = json.loads(json.dumps(d))
    return result


def check_resume(config: TrainConfig, run_dir: Path) -> None:
    """Refuse to resume a run with settings that differ from the checkpoint's."""
    saved = run_dir / CHECKPOINT_DIR / "config.json"
    if not saved.is_file():
        raise KwsError(f"{run_dir}: no checkpoint to resume from")
    old = json.loads(saved.read_text())
    new = _as_read_back(config.to_dict())
    # A setting added since the checkpoint was written had its default then.
    defaults = _as_read_back(TrainConfig(data="").to_dict())
    differ = [k for k in new if k != "epochs" and old.get(k, defaults[k]) != new[k]]
    if differ:
        raise KwsError(f"{run_dir}: cannot resume with different settings ({', '.join(differ)})")


def check_finetune_source(config: TrainConfig) -> FrontendConfig:
    """Refuse to fine-tune from a run that is unfinished, of another model or front-end, or already as long.

    Returns the source's front-end with its normalisation, which fine-tuning keeps (its
    weights were trained on it), whatever sources the fine-tuning adds.
    """
    source = Path(str(config.finetune_from))
    report = source / "report.json"
    if not (source / CHECKPOINT_DIR / "last.h5").is_file() or not report.is_file():
        raise KwsError(
            f"{source}: not a finished kws train run (no report.json and checkpoint) to fine-tune from"
        )
    finished = json.loads(report.read_text())
    model = {k: finished["config"].get(k) for k in ("arch", "units", "layers", "keywords")}
    settings = _as_read_back(config.to_dict())
    if model != {k: settings[k] for k in model}:
        raise KwsError(
            f"{source}: a different model ({model}); fine-tuning keeps the architecture and keywords"
        )
    frontend = FrontendConfig.from_dict(finished["frontend"])
    if dataclasses.replace(frontend, mean=None, std=None) != dataclasses.replace(
        config.frontend, mean=None, std=None
    ):
        raise KwsError(f"{source}: trained on another front-end; fine-tuning keeps the front-end")
    epochs = json.loads((source / CHECKPOINT_DIR / "state.json").read_text())["epoch"]
    if config.epochs <= epochs:
        raise KwsError(f"--epochs {config.epochs}: the run to fine-tune already trained {epochs}; give more")
    return frontend
