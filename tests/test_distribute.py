"""`kws train --distribute multiworker`: two workers on this machine train as one does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = [pytest.mark.training, pytest.mark.system]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_two_workers_train_as_one_worker_does(
    small_speech_commands: Path, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    def train(out: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        command = [
            sys.executable,
            "-m",
            "kws",
            "train",
            "--data",
            str(small_speech_commands),
            "--out",
            str(out),
        ]
        settings = [
            "--epochs",
            "8",
            "--units",
            "32",
            "--batch-size",
            "16",
            "--dropout",
            "0",
            "--tune-minutes",
            "0",
            "--input-workers",
            "1",
            "--quiet",
        ]
        return subprocess.Popen(
            [*command, *settings, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )

    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    one = train(tmp_path / "one")
    workers = [
        train(
            tmp_path / "two",
            "--distribute",
            "multiworker",
            env={
                **os.environ,
                "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
            },
        )
        for i in range(2)
    ]
    errors = []
    for process in (one, *workers):
        _, stderr = process.communicate(timeout=280)
        assert process.returncode == 0, stderr[-3000:]
        assert "Traceback" not in stderr
        errors.append(stderr)
    assert "the chief wrote the models" in errors[2]  # worker 1 wrote nothing
    single = json.loads((tmp_path / "one" / "report.json").read_text())
    double = json.loads((tmp_path / "two" / "report.json").read_text())  # the chief's, worker 0
    # The same global batches each step, each worker computing half of every batch: without
    # dropout (random per replica) the same sums, in another order.
    first = [run["training"]["history"][0] for run in (single, double)]
    assert first[1]["loss"] == pytest.approx(first[0]["loss"], rel=1e-3), first
    assert len(double["training"]["history"]) == 8
    for model in ("float keras", "int8 litert", "int8 tflm"):
        gap = abs(double["accuracy"]["validation"][model] - single["accuracy"]["validation"][model])
        assert gap <= 0.03, (model, single["accuracy"]["validation"], double["accuracy"]["validation"])
    record_property(
        "log",
        "two workers vs one: validation accuracy "
        + ", ".join(
            f"{m} {double['accuracy']['validation'][m]:.3f} vs {single['accuracy']['validation'][m]:.3f}"
            for m in ("float keras", "int8 litert", "int8 tflm")
        )
        + f"; first epoch's loss {first[1]['loss']:.5f} vs {first[0]['loss']:.5f}",
    )
    assert double["accuracy"]["validation"]["int8 litert"] > 0.25  # it learned (chance: 1/12)
    assert double["tflm_vs_litert"]["int8, validation"]["top1_agreement"] >= 0.99
