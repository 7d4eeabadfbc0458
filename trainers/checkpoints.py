"""Everything a continuation depends on, in one `tf.train.Checkpoint`.

Saved: the model's and optimizer's variables, the global step, every Keras
Dropout layer's `seed_generator.state` (which `tf.train.Checkpoint(model=...)`
does not save: without it a resumed run draws other dropout masks), the drift
reference weights, the replay memory (contents, examples seen), the current
epoch's running sums, and the host-side state
(accuracy matrix so far, last results) as a JSON string. The input position needs
no state of its own: the order of every epoch is a function of (seed, epoch), so
the pipeline restarts at the saved global step (`pipelines.make_pipeline(...,
start_step=...)`).

`tf.train.CheckpointManager` writes a checkpoint's files first and only then
updates the `checkpoint` index file, so a process killed while saving leaves the
previous checkpoint the latest one.
"""

import json
import os
import time
from pathlib import Path

import tensorflow as tf

from tapeloop.trainers.model import all_layers

CHECKPOINT_DIR = "checkpoints"


class RunState:
    """The checkpointable state of one run, and its manager in `run_dir/checkpoints`."""

    def __init__(self, *, model: tf.keras.Model, optimizer, global_step: tf.Variable,
                 drift=None, replay=None, run_dir: Path, restore_dir: Path | None = None,
                 max_to_keep: int = 3, extra: dict | None = None):
        self.epoch_sums = tf.Variable(tf.zeros([3], tf.float64), trainable=False,
                                      name="epoch_sums")  # loss_sum, correct, count
        self._host = tf.Variable("", dtype=tf.string, trainable=False, name="host_state")
        trackables = {"model": model, "optimizer": optimizer, "global_step": global_step,
                      "dropout_rng": dropout_states(model), "epoch_sums": self.epoch_sums,
                      "host_state": self._host}
        if drift is not None:
            trackables["drift"] = drift
        if replay is not None:
            trackables["replay"] = replay
        trackables.update(extra or {})  # the user's actions' state
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(Path(run_dir) / CHECKPOINT_DIR), max_to_keep=max_to_keep)
        self.global_step = global_step
        # A non-chief worker saves to its own directory but resumes from the chief's.
        self._restore_dir = Path(restore_dir or run_dir) / CHECKPOINT_DIR
        # Test-only hook: pause after a checkpoint's files are written and before the
        # manager's own callback updates the index, so a test can kill the process in
        # the middle of a save.
        self._options = None
        delay = float(os.environ.get("TAPELOOP_TEST_SAVE_PAUSE", "0"))
        if delay > 0:
            def pause(save_path):
                print(f"checkpoint files written: {save_path}", flush=True)
                time.sleep(delay)

            self._options = tf.train.CheckpointOptions(experimental_write_callbacks=[pause])

    def save(self, host_state: dict) -> str:
        """Saves everything, with `host_state` (JSON-serialisable); returns the path."""
        self._host.assign(json.dumps(host_state))
        return self.manager.save(checkpoint_number=int(self.global_step),
                                 options=self._options)

    def restore_latest(self) -> dict | None:
        """Restores the latest checkpoint; returns its host state, or None if there is none."""
        latest = tf.train.latest_checkpoint(str(self._restore_dir))
        if latest is None:
            return None
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        return json.loads(self._host.numpy().decode())


def dropout_states(model: tf.keras.Model) -> list[tf.Variable]:
    """The random-number state variable of every layer that has a seed generator."""
    return [layer.seed_generator.state.value for layer in all_layers(model)
            if getattr(layer, "seed_generator", None) is not None]


def latest_step(run_dir: Path) -> int | None:
    """The global step of the latest checkpoint in `run_dir`, or None."""
    latest = tf.train.latest_checkpoint(str(Path(run_dir) / CHECKPOINT_DIR))
    return None if latest is None else int(latest.rsplit("-", 1)[1])
