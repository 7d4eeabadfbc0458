"""Shared fixtures: tiny MNIST-shaped files, the real MNIST when prepared, event reading."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from data import mnist

REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def real_mnist() -> mnist.Mnist:
    """The real MNIST from tapeloop's cache (`make data` fills it); skipped if absent."""
    cached = mnist.default_cache_dir() / mnist.CACHE_FILE
    if not cached.is_file() and mnist.hub_file() is None:
        pytest.skip("real MNIST not prepared: run `make data`")
    m, _ = mnist.load_mnist(download=False)
    return m


def read_events(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar of a run as {tag: {step: value}}, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        events = acc.Tensors(tag)
        if events and events[0].tensor_proto.dtype != 7:  # 7 = DT_STRING (text summaries)
            from tensorflow import make_ndarray

            out[tag] = {e.step: float(make_ndarray(e.tensor_proto)) for e in events}
    return out


def event_tags(run_dir: Path) -> list[str]:
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return acc.Tags()["tensors"]
