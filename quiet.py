"""TensorFlow's start-up lines kept off the terminal: tapeloop's commands print only its own.

Importing TensorFlow prints about ten C++ log lines (oneDNN, CPU features, a CUDA probe
that fails on a CPU machine), written before its logging is set up, so no level turns
them off. `install()` (called when `tapeloop` is imported) makes the first `import
tensorflow` after it run with the process's stderr pointed at /dev/null, probes the
devices while it still is, and sets TensorFlow's Python logger to errors only (no
retracing or checkpoint notices). A failing import still raises, with its traceback.

A script that imports TensorFlow before tapeloop has had its lines printed already.
`TAPELOOP_TF_LOGS=1` in the environment leaves all of it as TensorFlow has it.
"""

import importlib.abc
import importlib.machinery
import os
import sys

ENV = "TAPELOOP_TF_LOGS"


def wanted() -> bool:
    """Whether TensorFlow's own lines were asked for (`TAPELOOP_TF_LOGS=1`)."""
    return os.environ.get(ENV, "") not in ("", "0")


class _Silenced:
    """File descriptor 2 pointed at /dev/null inside the block, restored after it."""

    def __enter__(self):
        sys.stderr.flush()
        self._saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)

    def __exit__(self, *exc):
        os.dup2(self._saved, 2)
        os.close(self._saved)


class _Loader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with _Silenced():
            self._loader.exec_module(module)
            module.config.list_physical_devices()  # the CUDA probe's line, now
        module.get_logger().setLevel("ERROR")


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once, and the real spec comes from the other finders
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    """Quiets the next `import tensorflow` (nothing when it ran already or is wanted)."""
    if wanted() or "tensorflow" in sys.modules or any(
            isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())
