"""The pretrained models and sample clips that ship inside the package.

``kws/models/`` holds the default int8 LSTM (whole-clip and one-time-step files, plus
its float TFLite for comparisons) and the DS-CNN peer, trained by
``tools/train_default.py`` and described in ``kws/models/MODEL_CARD.md``.
``kws/samples/`` holds a few test-speaker clips for ``kws demo`` (CC BY 4.0, see its
README). Commands use these when no ``--model`` is given.
"""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

from kws.errors import KwsError

MODELS_DIR = Path(str(files("kws") / "models"))
SAMPLES_DIR = Path(str(files("kws") / "samples"))

# name -> {variant: file}; "int8" runs whole clips (windowed streaming), "int8_step"
# one frame per invoke (stateful streaming), "float" is the unquantised reference.
MODELS = {
    "lstm": {"int8": "lstm_int8.tflite", "int8_step": "lstm_int8_step.tflite", "float": "lstm_float.tflite"},
    "dscnn": {"int8": "dscnn_int8.tflite", "float": "dscnn_float.tflite"},
}
DEFAULT = "lstm"
# Streaming uses the one-time-step model: same detection quality as the windowed mode
# at a fraction of its compute (README, "Streaming").
STREAMING_VARIANT = "int8_step"


def bundled_model(name: str = DEFAULT, variant: str = "int8") -> Path:
    """Path of a bundled model file.

    Parameters
    ----------
    name : {"lstm", "dscnn"}
        Which model.
    variant : {"int8", "int8_step", "float"}
        Which file of it (the DS-CNN has no step model).
    """
    try:
        path = MODELS_DIR / MODELS[name][variant]
    except KeyError:
        choices = ", ".join(f"{n} ({'/'.join(v)})" for n, v in MODELS.items())
        raise KwsError(f"no bundled model {name!r} {variant!r}; there are: {choices}") from None
    if not path.is_file():
        raise KwsError(f"bundled model {path} is missing: reinstall kws")
    return path


def sample_clips() -> list[Path]:
    """The bundled sample clips, named ``<word>.wav`` (``<word>`` is what is said)."""
    clips = sorted(SAMPLES_DIR.glob("*.wav"))
    if not clips:
        raise KwsError(f"no sample clips in {SAMPLES_DIR}: reinstall kws")
    return clips


def stored_firmware_figures(path: Path) -> dict[str, Any] | None:
    """The emulated-board figures ``card.json`` stores for a bundled model file (see
    :func:`kws.board.figures`), if ``path`` has the same bytes as the file measured."""
    card = json.loads((MODELS_DIR / "card.json").read_text())
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    for entry in card.values():
        firmware = entry.get("firmware")
        if firmware and firmware.get("model_sha256") == digest:
            return dict(firmware)
    return None
