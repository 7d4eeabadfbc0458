"""Helpers the tests share (`from helpers import ...`): tiny MNIST-shaped files, scripts run as
processes, event reading, ports."""

import gzip
import json
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from tapeloop.data import mnist

REPO = Path(__file__).resolve().parents[1]
# The environment of a script run as a subprocess: this one's. tapeloop imports from its
# installation, as a user's script does; the repository root is never put on the path.
SCRIPT_ENV = dict(os.environ)


def train_command(*args) -> list[str]:
    """The command line of `python -m tapeloop.trainers.train` with `args`."""
    return [sys.executable, "-m", "tapeloop.trainers.train", *args]


def run_train(*args, timeout: float = 300, env: dict | None = None):
    """Runs `python -m tapeloop.trainers.train` with `args` to completion; output captured
    as text."""
    return subprocess.run(train_command(*args), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=SCRIPT_ENV | (env or {}))


_WORKER: list = []  # this test process's train_worker.py, started on first use
_WORKER_LOG = tempfile.NamedTemporaryFile(prefix="tapeloop-train-worker-", suffix=".log",
                                          delete=False)  # its TensorFlow messages


def run_train_here(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m tapeloop.trainers.train ARGS`, run by a long-lived worker process
    (`train_worker.py`): the same flag parsing and `main`, the exit code and output kept.

    For runs whose subject is not the process itself (bad values, run directories,
    stop and resume): it saves TensorFlow's start-up on every run. Runs that change
    TensorFlow's global state (`--run_eagerly`, `--check_numerics`, a strategy) or get
    a signal stay processes of their own (`run_train`).
    """
    if not _WORKER or _WORKER[0].poll() is not None:
        _WORKER[:] = [subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "train_worker.py")], cwd=REPO,
            env=SCRIPT_ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=_WORKER_LOG, text=True)]
    worker = _WORKER[0]
    worker.stdin.write(json.dumps(list(args)) + "\n")
    worker.stdin.flush()
    ready, _, _ = select.select([worker.stdout], [], [], timeout)
    line = worker.stdout.readline() if ready else ""
    if not line:
        worker.kill()
        raise RuntimeError(f"train_worker.py gave no answer to {args} within {timeout} s "
                           f"(exit code {worker.poll()}; its log: {_WORKER_LOG.name})")
    answer = json.loads(line)
    return subprocess.CompletedProcess(["train", *args], answer["returncode"],
                                       answer["stdout"], answer["stderr"])


def fake_mnist(n_train: int = 60, n_test: int = 20, seed: int = 0) -> mnist.Mnist:
    """Small random uint8 arrays in Keras's MNIST layout, every class present."""
    rng = np.random.default_rng(seed)
    return mnist.Mnist(
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=(np.arange(n_train) % 10).astype(np.uint8),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=(np.arange(n_test) % 10).astype(np.uint8))


def idx_bytes(array: np.ndarray) -> bytes:
    """Encodes a uint8 array as an IDX file (magic 0x0803 for 3 dims, 0x0801 for 1)."""
    header = struct.pack(">I", 0x800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(directory: Path, m: mnist.Mnist, *, gzipped: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in mnist.IDX_FILES.items():
        raw = idx_bytes(getattr(m, key))
        if gzipped:
            (directory / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return directory


def read_events(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar of a run as {tag: {step: value}}, read with TensorBoard's own reader."""
    from tapeloop.trainers.records import events

    return events.read_scalars(run_dir)


def tags_by_plugin(run_dir: Path) -> dict[str, list[str]]:
    """`{plugin name: [tags]}` of everything written to a run (scalars, images, text, ...)."""
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        out.setdefault(acc.SummaryMetadata(tag).plugin_data.plugin_name, []).append(tag)
    return out


def event_tags(run_dir: Path) -> list[str]:
    """Every tag of a run, of any plugin."""
    return [tag for tags in tags_by_plugin(run_dir).values() for tag in tags]


SMALL_SORTED = dict(order="sorted", epochs=2, batch_size=6, hidden_sizes=(8,), steps_per_loop=4,
                    probe_per_class=5, eval_every_steps=3, seed=0)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a TensorBoard server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 10):
    """GET `url` and decode its JSON."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


# The test tiers (setup.cfg's markers; `make test` runs them in this order and times each):
# a file named here is unit or end to end, any other integration; `slow` tests are end to end.
