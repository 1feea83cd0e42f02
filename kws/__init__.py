"""kws: a keyword spotter for microcontrollers (MFCC front-end, stacked LSTM, int8 TFLite).

The Python API, for programs that embed kws (runtime install only, no TensorFlow)::

    import kws

    model = kws.load_runner(kws.bundled_model())        # or a path to your int8.tflite
    label, probability, _ = kws.classify(model, kws.load_audio("yes.wav"))

    detector = kws.Detector(kws.load_runner(kws.bundled_model(variant="int8_step")))
    for event in kws.detect(detector, kws.load_audio("long.wav")):
        print(event.label, event.time, event.score)

    detector.reset()
    events = detector.push(chunk)    # live audio: float32 chunks of any size, 16 kHz

Names are imported on first use, so ``import kws`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it.
_API = {
    "load_audio": "kws.audio",
    "bundled_model": "kws.bundled",
    "load_runner": "kws.runtime",
    "classify": "kws.runtime",
    "Runner": "kws.runtime",
    "Detector": "kws.stream",
    "DetectorConfig": "kws.artifact",
    "Detection": "kws.stream",
    "detect": "kws.stream",
    "listen": "kws.microphone",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'kws' has no attribute {name!r}")
