"""tapeloop: explicit tf.GradientTape training loops on tf.data, logged per step to TensorBoard.

The public API, importable from here (`import tapeloop`); each name is loaded on first
use, so `python -m tapeloop.trainers.train --help` answers without TensorFlow.
"""

import importlib

# name -> module that defines it
_EXPORTS = {
    "Config": "tapeloop.trainers.config",
    "train_and_evaluate": "tapeloop.trainers.controller",
    "SetupError": "tapeloop.trainers.run_dirs",
    "Splits": "tapeloop.data.splits",
    "DataError": "tapeloop.data.mnist",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tapeloop' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
