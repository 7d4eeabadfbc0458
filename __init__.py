"""tapeloop: explicit tf.GradientTape training loops on tf.data, logged per step to TensorBoard.

The public API, importable from here (`import tapeloop`); each name is loaded on first
use, so `python -m tapeloop.trainers.train --help` answers without TensorFlow.
"""

import importlib

from tapeloop import quiet

quiet.install()  # TensorFlow's start-up lines off the terminal (TAPELOOP_TF_LOGS=1: on)

# name -> module that defines it
_EXPORTS = {
    # A run: its settings, and the one call that trains, evaluates and logs it.
    "Config": "tapeloop.trainers.records.config",
    "train_and_evaluate": "tapeloop.trainers.run.controller",
    # Data: any arrays, finite tf.data, MNIST.
    "Splits": "tapeloop.data.splits",
    "from_arrays": "tapeloop.data.splits",
    "from_datasets": "tapeloop.data.splits",
    "load_splits": "tapeloop.trainers.run.setup",
    "FASHION_MNIST_CLASSES": "tapeloop.data.splits",
    # Extending: the step's contract, the default step, losses, actions.
    "StepMetrics": "tapeloop.trainers.engine.steps",
    "make_train_step": "tapeloop.trainers.engine.steps",
    "Action": "tapeloop.trainers.extend.actions",
    "PeriodicEvaluation": "tapeloop.trainers.extend.actions",
    "RunContext": "tapeloop.trainers.extend.actions",
    # The order of the data: the tutorial's orders, a continual-learning scenario's tasks;
    # remedies against forgetting.
    "Shuffled": "tapeloop.trainers.extend.scenarios.orders",
    "Sorted": "tapeloop.trainers.extend.scenarios.orders",
    "Blocked": "tapeloop.trainers.extend.scenarios.orders",
    "Scenario": "tapeloop.trainers.extend.scenarios",
    "Task": "tapeloop.trainers.extend.scenarios",
    "Split": "tapeloop.trainers.extend.scenarios",
    "Permuted": "tapeloop.trainers.extend.scenarios",
    "Remedy": "tapeloop.trainers.extend.remedies",
    # absl scripts: every flag from one call, and the run they drive.
    "define_flags": "tapeloop.trainers.cli",
    "config_from_flags": "tapeloop.trainers.cli",
    "run_from_flags": "tapeloop.trainers.cli",
    # Errors a caller may catch (each message is one line).
    "SetupError": "tapeloop.trainers.records.run_dirs",
    "RunDirError": "tapeloop.trainers.records.run_dirs",
    "DataError": "tapeloop.data.mnist",
    "Interrupted": "tapeloop.trainers.run.standard_actions",
    "StoppedAfter": "tapeloop.trainers.run.standard_actions",
    "NonFiniteError": "tapeloop.trainers.run.controller",
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
