"""The controller's own work, as actions: checkpoints, validation, instruments, reports.

Each is an `actions.Action` like the user's own: it says at which steps it wants to
run (the loop cuts its compiled calls there) and what it does at steps, phase ends
and epoch ends. What they share is the `Progress` the loop keeps (where it is, the
epoch's running sums) and the run's `results`.

Order matters where two act on one event: the controller lists them as
validation, instruments, epoch report, the user's actions, profiling, inspection,
signals, stop-after, checkpointing, so that a checkpoint holds everything the
others did at its step.
"""

import dataclasses
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from tapeloop.trainers.instruments import step_dumps
from tapeloop.trainers.records import tables
from tapeloop.trainers.extend import actions as actions_lib
from tapeloop.trainers.extend.actions import Action
from tapeloop.trainers.records.run_dirs import SetupError


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP stopped the run after a checkpoint.

    `signum` and `step` say which signal, and where.
    """

    def __init__(self, signum: int, step: int, message: str):
        super().__init__(message)
        self.signum, self.step = signum, step


class StoppedAfter(Exception):
    """`stop_after_steps` was reached: a checkpoint was saved; `step` says where."""

    def __init__(self, step: int, message: str):
        super().__init__(message)
        self.step = step


class Phase(NamedTuple):
    """One phase of an epoch, in global steps: updates `start`..`end` train on `label`."""

    label: int  # the class trained (sorted orders), or the epoch (shuffled)
    start: int
    end: int
    last_of_epoch: bool

    @property
    def steps(self) -> int:
        return self.end - self.start


def phases(plan, first_step: int):
    """The `Phase`s of an epoch plan (`pipelines.EpochPlan`) that starts at `first_step`."""
    start = first_step
    for i, (label, n) in enumerate(zip(plan.phases, plan.steps)):
        yield Phase(int(label), start, start + n, i == len(plan.phases) - 1)
        start += n


@dataclasses.dataclass
class Progress:
    """Where the loop is, and this epoch's running sums; the loop keeps it up to date."""

    epoch: int = 0
    epoch_first_step: int = 0
    phase: Phase | None = None
    # This epoch's loss_sum, correct, count.
    sums: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))
    last: dict = dataclasses.field(default_factory=dict)  # the last compiled call's output

    def add(self, out: dict) -> None:
        self.sums = self.sums + (out["loss_sum"], out["correct"], out["count"])
        self.last = out


class Checkpointing(Action):
    """Saves every N steps and after phase and epoch ends; owns the resume bookkeeping.

    `restore()` puts the latest checkpoint back; `finished(end_step)` then tells the
    loop whether the work at a phase or epoch end is already done and saved. A run
    stopped exactly at a boundary, before that work, does it when resumed. Phases
    shorter than one compiled call are not saved at their ends (short class blocks
    make hundreds): they rely on the step cadence, and resuming redoes their end.
    """

    def __init__(self, state, progress: Progress, *, every_steps: int, steps_per_loop: int,
                 host_state: Callable[[], dict], flush: Callable[[], None]):
        super().__init__(every_steps=every_steps if state is not None else 0)
        self._state, self._progress = state, progress
        self._steps_per_loop = steps_per_loop
        self._host_state, self._flush = host_state, flush
        self.start_step = 0
        self.ends_done_at = 0  # the last step whose end-of-phase/epoch work is saved

    def restore(self) -> dict:
        """Restores the newest checkpoint that restores; returns the host state saved with it.

        Raises:
          checkpoints.NoCheckpoint: none restores.
        """
        host = self._state.restore_latest()
        self.start_step = int(self._state.global_step)
        self.ends_done_at = host.get("ends_done_at", self.start_step)
        return host

    @property
    def skipped(self) -> list[str]:
        """One line per damaged checkpoint the restore skipped."""
        return self._state.skipped

    def finished(self, end_step: int) -> bool:
        """Whether the phase or epoch ending at `end_step` was done before this process."""
        return end_step < self.start_step or end_step == self.start_step == self.ends_done_at

    def latest(self) -> str | None:
        return self._state.latest() if self._state is not None else None

    def save(self, sums=None) -> None:
        """Saves now: events up to here are flushed first, so they are on disk with it."""
        if self._state is None:
            return
        self._flush()
        self._state.epoch_sums.assign(self._progress.sums if sums is None else sums)
        self._state.save({**self._host_state(), "ends_done_at": self.ends_done_at})

    def on_epoch_start(self, step, epoch, context):
        if self._state is not None and step > self._progress.epoch_first_step:
            self._progress.sums = self._state.epoch_sums.numpy()  # resumed inside it

    def on_step(self, step, context):
        phase = self._progress.phase  # A long phase's last step is saved at its end.
        if step < phase.end or phase.steps < self._steps_per_loop:
            self.save()

    def on_phase_end(self, step, phase, context):
        current = self._progress.phase  # The last phase is saved at the epoch end.
        if not current.last_of_epoch and current.steps >= self._steps_per_loop:
            self.ends_done_at = step
            self.save()

    def on_epoch_end(self, step, epoch, context):
        self.ends_done_at = step
        self.save(sums=np.zeros(3))


class StopOnSignal(Action):
    """After the first SIGINT/SIGTERM/SIGHUP (`stopping.StopRequests`): checkpoint, stop."""

    def __init__(self, requests, checkpointing: Checkpointing):
        super().__init__()
        self._requests, self._checkpointing = requests, checkpointing

    def due(self, step):
        return self._requests.signum is not None

    def on_step(self, step, context):
        self._checkpointing.save()
        raise Interrupted(self._requests.signum, step, (
            f"stopped by signal {self._requests.signum} at step {step}; checkpoint saved: "
            "run the same command again to resume"))


class StopAfter(Action):
    """At `stop_after_steps`: checkpoint, stop (`StoppedAfter`); rerunning continues."""

    def __init__(self, stop_step: int, checkpointing: Checkpointing):
        super().__init__(on_steps=(stop_step,))
        self._stop, self._checkpointing = stop_step, checkpointing

    def on_begin(self, step, context):
        if step >= self._stop:
            raise StoppedAfter(step, (
                f"the run is already at step {step}, at or past stop_after_steps "
                f"({self._stop}): nothing trained; run the same command without "
                "--stop_after_steps (or with a later step) to continue"))

    def on_step(self, step, context):
        self._checkpointing.save()
        raise StoppedAfter(step, (
            f"stopped after step {step} as asked (checkpoint saved); run the same command "
            "without --stop_after_steps to continue"))


class _AtSteps(Action):
    """An action at given steps, step 0 included (`Action(on_steps=)` starts at 1)."""

    def __init__(self, steps):
        super().__init__()
        self._at = frozenset(steps)

    def next_step(self, step):
        return min((s for s in self._at if s > step), default=None)

    def due(self, step):
        return step in self._at


class Profiling(_AtSteps):
    """A TensorFlow profiler trace of steps A..B, for TensorBoard's Profile tab.

    A run resumed between A and B traces from where it resumed; a run that ends
    before B stops the trace at its last step. Either way it says which steps.
    """

    def __init__(self, first: int, last: int, logdir: Path | None, say):
        super().__init__((first, last))
        self._first, self._last = first, last
        self._logdir, self._say = str(logdir or "."), say
        self._began = None

    def _start(self, step):
        tf.profiler.experimental.start(self._logdir)
        self._began = step

    def _stop(self, step, why=""):
        tf.profiler.experimental.stop()
        self._say(f"profiler trace of steps {self._began}-{step} written to "
                  f"{self._logdir}/plugins/profile{why}")
        self._began = None

    def on_begin(self, step, context):
        if self._first <= step < self._last:
            self._start(step)

    def on_step(self, step, context):
        if step == self._first and self._began is None:
            self._start(step)
        elif step == self._last and self._began is not None:
            self._stop(step)

    def on_end(self, step, context):
        if self._began is not None:
            self._stop(step, f" (the run ended before step {self._last})")


class Inspection(_AtSteps):
    """Runs each asked-for step through the loop's `inspect` call and saves its dump.

    It cuts the compiled calls before and after the step, and hands the trainer the
    one call that runs it (`trainer.run_next_step_with`).
    """

    def __init__(self, inspect_steps, trainer, run_dir: Path, names: list[str], say):
        super().__init__({*inspect_steps, *(s + 1 for s in inspect_steps)})
        self._steps, self._trainer = frozenset(inspect_steps), trainer
        self._run_dir, self._names, self._say = run_dir, names, say

    def due(self, step):
        return step in self._steps

    def on_begin(self, step, context):
        done_already = sorted(s for s in self._steps if s < step)
        if done_already:
            self._say(f"note: inspect_steps {', '.join(map(str, done_already))} were trained "
                      f"before step {step} and cannot be dumped in this run (start a fresh run "
                      "with --stop_after_steps just before them)")
        if step in self._steps:
            self.on_step(step, context)

    def on_step(self, step, context):
        self._trainer.run_next_step_with(lambda loop, stream: self._dump(loop, stream, step))

    def _dump(self, train_loop, stream, step: int) -> dict:
        out = train_loop.inspect(stream)
        out = {key: ([u.numpy() for u in v] if key == "update" else v.numpy())
               for key, v in out.items()}
        path = step_dumps.dump_path(self._run_dir, step)
        self._say(step_dumps.summary_line(step_dumps.save(path, step, out, self._names), path))
        return {key: float(out[key]) for key in ("loss_sum", "correct", "count", "loss",
                                                 "accuracy", "first_bad_step", "bad_kind")}


class Validation(Action):
    """Evaluates the validation split after each phase (once an epoch for short blocks)."""

    def __init__(self, val_sets: dict, *, evaluate, writer, results: dict,
                 progress: Progress, once_per_epoch: bool):
        super().__init__()
        self._sets, self._evaluate, self._writer = val_sets, evaluate, writer
        self._results, self._progress = results, progress
        self._once_per_epoch = once_per_epoch

    def on_phase_end(self, step, phase, context):
        if phase in self._sets and (not self._once_per_epoch
                                    or self._progress.phase.last_of_epoch):
            val = self._evaluate(*self._sets[phase])
            self._writer.write_scalars(step, val.scalars("val"))
            self._results.update(val_loss=val.loss, val_accuracy=val.accuracy)


class Instrumentation(Action):
    """Tells the probe, drift and accuracy matrix (`instruments.Instruments`) when."""

    def __init__(self, tools, progress: Progress, *, task_of: Callable[[int], tuple],
                 title: str = "accuracy matrix"):
        super().__init__()
        self._tools, self._progress, self._task_of = tools, progress, task_of
        self._title = title

    def on_phase_start(self, step, phase, context):
        self._tools.phase_start()

    def on_phase_end(self, step, phase, context):
        self._tools.phase_end(step=step, epoch=self._progress.epoch, phase=phase,
                              task=self._task_of(phase))

    def on_epoch_end(self, step, epoch, context):
        self._tools.epoch_end(step)

    def on_end(self, step, context):
        self._tools.end(step, title=self._title)


class EpochReport(Action):
    """The progress bar, each epoch's scalars and line, the test evaluation, retracing."""

    def __init__(self, *, epochs: int, steps_per_epoch: int, progress: Progress,
                 results: dict, writer, evaluate, test_set, test_every_epoch: bool,
                 tracing_counts: Callable[[], dict], bar: bool, say, unit: str = "class"):
        super().__init__()
        self._unit = unit  # what test/accuracy/UNIT_N measures: a class, or a task
        self._epochs, self._steps_per_epoch = epochs, steps_per_epoch
        self._progress, self._results, self._writer = progress, results, writer
        self._evaluate, self._test_set = evaluate, test_set
        self._test_every_epoch, self._tracing_counts = test_every_epoch, tracing_counts
        self._show_bar, self._say = bar, say
        self._first_epoch = None
        self.test = None  # the last test evaluation (`evaluation.EvalResult`)

    def due(self, step):
        return True  # The bar moves after every compiled call.

    def on_epoch_start(self, step, epoch, context):
        self._first_epoch = epoch if self._first_epoch is None else self._first_epoch
        self._bar = tf.keras.utils.Progbar(self._steps_per_epoch, verbose=int(self._show_bar),
                                           stateful_metrics=["loss", "acc"])
        self._start = time.perf_counter()

    def on_step(self, step, context):
        last = self._progress.last
        self._bar.update(step - self._progress.epoch_first_step,
                         [("loss", last["loss"]), ("acc", last["accuracy"])])

    def on_epoch_end(self, step, epoch, context):
        results, sums = self._results, self._progress.sums
        self.test = self._evaluate(*self._test_set) if self._test_every_epoch else None
        train_loss, train_accuracy = sums[0] / sums[2], sums[1] / sums[2]
        seconds = time.perf_counter() - self._start
        scalars = {"train/epoch_loss": train_loss, "train/epoch_accuracy": train_accuracy,
                   "workings/epoch_seconds": seconds}
        if self.test:
            scalars.update(self.test.scalars("test"))
            scalars.update({f"test/accuracy/{self._unit}_{c}": a for c, a in
                            enumerate(self.test.class_accuracy) if not np.isnan(a)})
        self._writer.write_scalars(step, scalars)
        traces = self._tracing_counts()
        self._writer.write_scalars(step, {f"workings/tracing/{k}": v for k, v in traces.items()})
        for name, count in traces.items():
            if epoch > self._first_epoch and count > results["tracing"].get(name, 1):
                self._say(f"warning: {name} was traced again in epoch {epoch + 1} ({count} "
                          "traces): an input changed shape or dtype, or a Python value changed")
        results["tracing"] = traces
        results["epoch_seconds"].append(seconds)
        results.update(train_loss=train_loss, train_accuracy=train_accuracy)
        num = tables.number
        val_text = (f" | val loss {num(results['val_loss'])} acc {num(results['val_accuracy'])}"
                    if "val_loss" in results else "")
        test_text = (f" | test loss {num(self.test.loss)} acc {num(self.test.accuracy)}"
                     if self.test else "")
        self._say(f"epoch {epoch + 1}/{self._epochs} step {step}: train loss {num(train_loss)} "
                  f"acc {num(train_accuracy)}{val_text}{test_text} | {seconds:.1f} s",
                  flush=True)

    def on_end(self, step, context):
        if self.test is None:  # Not tested every epoch, or resumed at the very end.
            self.test = self._evaluate(*self._test_set)


class ActionStateCheck(Action):
    """After the user's actions began: their checkpoint items are all in the checkpoint.

    Raises `SetupError` at the start of the run, naming the action whose state was
    made after the checkpoint was assembled (it would never be saved).
    """

    def __init__(self, user_actions, saved: dict):
        super().__init__()
        self._actions, self._saved = tuple(user_actions), saved

    def on_begin(self, step, context):
        try:
            actions_lib.check_state_saved(self._actions, self._saved)
        except ValueError as e:
            raise SetupError(str(e)) from None
