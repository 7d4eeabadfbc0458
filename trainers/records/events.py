"""Reading a run's event files back with TensorBoard's own reader."""

from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util


def _load(run_dir: Path) -> event_accumulator.EventAccumulator:
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not any(run_dir.glob("events.out.tfevents.*")):
        raise FileNotFoundError(f"{run_dir}: no TensorBoard event files")
    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def read_scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    """Every scalar of a run as `{tag: {step: value}}`.

    TF2 `tf.summary.scalar` values arrive as tensors, told apart from images,
    histograms and text by their plugin name. A step written twice (a resumed run
    repeating steps) keeps the value written last.
    """
    acc = _load(run_dir)
    out = {}
    for tag in acc.Tags()["tensors"]:
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            continue
        values = out.setdefault(tag, {})
        for event in acc.Tensors(tag):  # In file order: later writes win.
            values[event.step] = float(np.asarray(tensor_util.make_ndarray(event.tensor_proto)))
    return out


def wall_time(run_dir: Path, tag: str, step: int) -> float | None:
    """When `tag` was first written at `step` (seconds since the epoch); None if never."""
    acc = _load(run_dir)
    if tag not in acc.Tags()["tensors"]:
        return None
    return min((e.wall_time for e in acc.Tensors(tag) if e.step == step), default=None)
