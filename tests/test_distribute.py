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
            "2",
            "--units",
            "32",
            "--batch-size",
            "32",
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
    # dropout (random per replica) the same sums, in another order, so the same loss every
    # epoch (measured: equal to 6 digits), and the same models.
    histories = [run["training"]["history"] for run in (single, double)]
    assert len(histories[1]) == len(histories[0]) == 2
    for one_worker, two_workers in zip(*histories, strict=True):
        assert two_workers["loss"] == pytest.approx(one_worker["loss"], rel=1e-3), histories
    # It learned (measured: 2.4772 -> 2.4241; the first epoch's mean is near ln 12 = 2.4849).
    assert histories[1][-1]["loss"] < histories[1][0]["loss"] - 0.03
    for model in ("float keras", "int8 litert", "int8 tflm"):
        gap = abs(double["accuracy"]["validation"][model] - single["accuracy"]["validation"][model])
        assert gap <= 0.03, (model, single["accuracy"]["validation"], double["accuracy"]["validation"])
    agreement = [run["tflm_vs_litert"]["int8, validation"]["top1_agreement"] for run in (single, double)]
    assert abs(agreement[1] - agreement[0]) <= 0.02, agreement  # the chief's files convert alike
    record_property(
        "log",
        "two workers vs one: validation accuracy "
        + ", ".join(
            f"{m} {double['accuracy']['validation'][m]:.3f} vs {single['accuracy']['validation'][m]:.3f}"
            for m in ("float keras", "int8 litert", "int8 tflm")
        )
        + "; loss by epoch "
        + ", ".join(f"{b['loss']:.5f} vs {a['loss']:.5f}" for a, b in zip(*histories, strict=True)),
    )
