"""Everything a continuation depends on, in one `tf.train.Checkpoint`.

Saved: the model's and optimizer's variables, the global step, every Keras
Dropout layer's `seed_generator.state` (which `tf.train.Checkpoint(model=...)`
does not save: without it a resumed run draws other dropout masks), the drift
reference weights, the actions' and remedies' state (a replay memory: contents,
examples seen), the current epoch's running sums, and the host-side state
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
import shutil
from pathlib import Path

import tensorflow as tf

from tapeloop.trainers.engine.model import all_layers
from tapeloop.trainers.records.run_dirs import (  # noqa: F401 (latest_step: re-exported)
    CHECKPOINT_DIR, error_line, latest_step, saved_steps)



class RunState:
    """The checkpointable state of one run, and its manager in `run_dir/checkpoints`."""

    def __init__(self, *, model: tf.keras.Model, optimizer, global_step: tf.Variable,
                 drift=None, run_dir: Path, restore_dir: Path | None = None,
                 max_to_keep: int = 3, extra: dict | None = None):
        self.epoch_sums = tf.Variable(tf.zeros([3], tf.float64), trainable=False,
                                      name="epoch_sums")  # loss_sum, correct, count
        self._host = tf.Variable("", dtype=tf.string, trainable=False, name="host_state")
        trackables = {"model": model, "optimizer": optimizer, "global_step": global_step,
                      "dropout_rng": dropout_states(model), "epoch_sums": self.epoch_sums,
                      "host_state": self._host}
        if drift is not None:
            trackables["drift"] = drift
        trackables.update(extra or {})  # the actions' and remedies' state
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self._dir, self._max_to_keep = Path(run_dir) / CHECKPOINT_DIR, max_to_keep
        self._manager = None  # made after a restore has mended the index file
        self.skipped: list[str] = []  # one line per checkpoint that did not restore
        self.global_step = global_step
        # A non-chief worker saves to its own directory but resumes from the chief's.
        self._restore_dir = Path(restore_dir or run_dir) / CHECKPOINT_DIR

    def save(self, host_state: dict) -> str:
        """Saves everything, with `host_state` (JSON-serialisable); returns the path."""
        self._host.assign(json.dumps(host_state))
        return self.manager().save(checkpoint_number=int(self.global_step))

    def manager(self) -> tf.train.CheckpointManager:
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(self.checkpoint, str(self._dir),
                                                       max_to_keep=self._max_to_keep)
        return self._manager

    @property
    def kept(self) -> int:
        """How many checkpoints the run directory keeps."""
        return self._max_to_keep

    def size_bytes(self) -> int:
        """About how many bytes one checkpoint takes: every variable it saves."""
        found = {id(t): t for t in tf.train.TrackableView(self.checkpoint).descendants()
                 if hasattr(t, "dtype") and hasattr(t, "shape")}
        return sum(int(tf.TensorShape(v.shape).num_elements() or 0) * tf.as_dtype(v.dtype).size
                   for v in found.values() if tf.as_dtype(v.dtype) != tf.string)

    def latest(self) -> str | None:
        """The path of the latest checkpoint saved or restored, or None."""
        return self.manager().latest_checkpoint

    def restore_latest(self) -> dict:
        """Restores the newest checkpoint that restores; returns its host state.

        Every kept checkpoint is tried, newest first, whatever the `checkpoint` index
        file says (it may be missing or damaged). Those that do not restore are moved
        to `checkpoints/damaged/` (kept, not deleted) and named in `self.skipped`; the
        index is rewritten to list the ones that remain.

        Raises:
          NoCheckpoint: none restores (nothing is moved then); the message says why.
        """
        failures = []
        if self._restore_dir == self._dir:  # A save cut short (a kill, a full disk):
            for partial in self._dir.glob("ckpt-*_temp"):  # its files are set aside.
                step = partial.name[len("ckpt-"):-len("_temp")]
                if step.isdigit():
                    self._set_aside([int(step)])
                shutil.rmtree(partial, ignore_errors=True)
        for step in saved_steps(self._restore_dir.parent):
            prefix = self._restore_dir / f"ckpt-{step}"
            try:
                self.checkpoint.restore(str(prefix)).assert_existing_objects_matched()
                host = json.loads(self._host.numpy().decode())
            except Exception as e:  # pylint: disable=broad-except  # any damage: try older
                failures.append((step, f"{type(e).__name__}: {error_line(e, 160)}"))
                continue
            if failures and self._restore_dir == self._dir:
                self._set_aside([s for s, _ in failures])
            self.skipped = [f"checkpoint ckpt-{s} does not restore ({why}); moved to "
                            f"{self._dir / 'damaged'}, resuming from ckpt-{step}"
                            for s, why in failures]
            if self._restore_dir == self._dir:
                _write_index(self._dir, step, saved_steps(self._dir.parent))
            return host
        raise NoCheckpoint(
            "no checkpoint restores (" + "; ".join(f"ckpt-{s}: {why}" for s, why in failures)
            + ")" if failures else "no checkpoint to restore")

    def _set_aside(self, steps: list[int]) -> None:
        damaged = self._dir / "damaged"
        for step in steps:
            for path in self._dir.glob(f"ckpt-{step}.*"):
                damaged.mkdir(exist_ok=True)
                os.replace(path, damaged / path.name)


def dropout_states(model: tf.keras.Model) -> list[tf.Variable]:
    """The random-number state variable of every layer that has a seed generator."""
    return [layer.seed_generator.state.value for layer in all_layers(model)
            if getattr(layer, "seed_generator", None) is not None]


class NoCheckpoint(ValueError):
    """A run directory has no checkpoint that restores."""


def _write_index(ckpt_dir: Path, latest: int, kept: list[int]) -> None:
    """Rewrites the `checkpoint` index file: `latest` first, then every kept step, oldest first.

    The manager reads it to know which checkpoints it keeps, and deletes the oldest
    of them as it saves new ones (only those listed with a timestamp); it is a
    `CheckpointState` text proto.
    """
    kept = sorted(kept)
    lines = ([f'model_checkpoint_path: "ckpt-{latest}"']
             + [f'all_model_checkpoint_paths: "ckpt-{s}"' for s in kept]
             + [f"all_model_checkpoint_timestamps: "
                f"{(ckpt_dir / f'ckpt-{s}.index').stat().st_mtime}" for s in kept])
    tmp = ckpt_dir / ".checkpoint.tmp"
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, ckpt_dir / "checkpoint")
