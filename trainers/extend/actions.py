"""Actions: the user's own periodic work, passed to `train_and_evaluate(actions=[...])`.

An action says when it wants to run (every N steps, on given steps) and what it does
then, and may also act at phase starts, phase ends, epoch ends and the end of the run.
The controller cuts its compiled calls at every step an action asks for, so an
action runs exactly at its step, between two compiled calls, on the host: it can
evaluate, write scalars, print, or assign variables (CLU's periodic actions, orbit's
`Controller` callbacks).

Everything an action needs is in the `RunContext` it is handed: the model, the
writer, an evaluator, the data, the run directory. An action whose state must survive
a resume creates its variables in `build(model)`, called under the strategy's scope
before the checkpoint is assembled, and lists them in `checkpoint_items()`: they are
saved in every checkpoint and restored with it. State that appears later could not be
saved: the run stops at its start, naming the action (`check_state_saved`).
"""

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What an action may use: the run's model and instruments, by reference.

    Attributes:
      model: the Keras model being trained.
      write_scalars: `write_scalars(step, {tag: value})`: to the run's event file.
      evaluate: `evaluate(rows, labels) -> EvalResult` (loss, accuracy, class_accuracy,
        class_count) of flat rows, compiled and batched as the run's own evaluation.
      data: the run's `Splits` (flat rows; `data.shape` is one example's shape).
      run_dir: where the run writes (None: nothing is written).
      say: print, when the run prints (silent on other workers and with verbose off).
      forward: `forward(rows, tasks=None, training=False) -> outputs`: the model on flat
        rows; with `tasks` ((B,) int32), a task-incremental scenario's masks applied.
      strategy: the tf.distribute strategy the run trains under.
      scenario: the continual-learning scenario (a `Scenario`), or None.
      seed: the run's seed.
      batch_size: the stream's batch size (global, over replicas).
      train_x: the training rows as the scenario reads them (before its transform).
      forward_of: `forward_of(other_model) -> forward` for another model of the same
        input shape (LwF's frozen copy).
    """

    model: Any  # the Keras model being trained
    write_scalars: Callable[[int, dict], None]  # write_scalars(step, {tag: value})
    evaluate: Callable  # evaluate(rows, labels) -> evaluation.EvalResult (flat rows)
    data: Any  # the run's `data.splits.Splits` (flat rows; `data.shape` per example)
    run_dir: Path | None  # where the run writes (None: nothing is written)
    say: Callable[..., None]  # print, when the run prints
    # forward(rows, tasks=None, training=False) -> outputs: the model on flat rows (viewed
    # in the model's input shape); with `tasks` (B,) int32, a task-IL scenario's masks
    # applied (the outputs of other tasks at steps.MASKED).
    forward: Callable | None = None
    strategy: Any = None  # the tf.distribute strategy the run trains under
    scenario: Any = None  # the continual-learning scenario (`trainers.extend.scenarios`), or None
    seed: int = 0  # the run's seed
    batch_size: int = 0  # the stream's batch size (global, over replicas)
    train_x: Any = None  # the training rows as the scenario reads them (before its transform)
    forward_of: Callable | None = None  # forward_of(other_model) -> forward for another model

    def shaped(self, rows):
        """Flat rows viewed as examples of the data's own shape (numpy or tensor)."""
        return np.reshape(rows, (-1, *self.data.shape)) if isinstance(rows, np.ndarray) else \
            tf.reshape(rows, (-1, *self.data.shape))


class Action:
    """Base class: override what you need; every hook does nothing by default.

    Args:
      every_steps: run `on_step` whenever the global step reaches a multiple of this
        (0: never).
      on_steps: also run `on_step` at these global steps.
    """

    def __init__(self, *, every_steps: int = 0, on_steps=()):
        if isinstance(every_steps, bool) or not isinstance(every_steps, int) or every_steps < 0:
            raise ValueError(f"every_steps ({every_steps}) must be an integer >= 0")
        if any(not isinstance(s, int) or s < 1 for s in on_steps):
            raise ValueError(f"on_steps ({tuple(on_steps)}) must be steps >= 1")
        self.every_steps = every_steps
        self.on_steps = frozenset(on_steps)

    def next_step(self, step: int) -> int | None:
        """The first global step after `step` at which `on_step` runs (None: none)."""
        candidates = [s for s in self.on_steps if s > step]
        if self.every_steps:
            candidates.append((step // self.every_steps + 1) * self.every_steps)
        return min(candidates) if candidates else None

    def due(self, step: int) -> bool:
        return step in self.on_steps or bool(self.every_steps and step % self.every_steps == 0)

    def build(self, model) -> None:
        """Once, after the model is built, under the strategy's scope, before the run's
        checkpoint is assembled: create here the variables `checkpoint_items` returns."""

    def checkpoint_items(self) -> dict:
        """Variables (or other trackables) saved in every checkpoint and restored with it."""
        return {}

    def on_begin(self, step: int, context: RunContext) -> None:
        """Once, before the first step this process trains (`step` > 0 when resuming)."""

    def on_step(self, step: int, context: RunContext) -> None:
        """At a step this action asked for (after that many updates)."""

    def on_epoch_start(self, step: int, epoch: int, context: RunContext) -> None:
        """Before an epoch's first step, or at the resumed step inside it (from 0)."""

    def on_phase_start(self, step: int, phase: int, context: RunContext) -> None:
        """Before the first step of a phase (a class block in the sorted orders)."""

    def on_phase_end(self, step: int, phase: int, context: RunContext) -> None:
        """After the last step of a phase, after the probe has measured it."""

    def on_epoch_end(self, step: int, epoch: int, context: RunContext) -> None:
        """After an epoch's last step and its test evaluation (epoch counts from 0)."""

    def on_end(self, step: int, context: RunContext) -> None:
        """Once, when training is over, after the final test evaluation."""


class PeriodicEvaluation(Action):
    """Evaluates a set of the user's every N steps; writes `TAG/loss`, `TAG/accuracy`.

    Per-class accuracies go to `TAG/accuracy/class_C` with `per_class=True`.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, every_steps: int,
                 tag: str = "extra_eval", per_class: bool = False):
        super().__init__(every_steps=every_steps)
        self.images = np.asarray(images, np.float32).reshape(len(images), -1)
        self.labels = np.asarray(labels, np.int32)
        self.tag, self.per_class = tag, per_class
        self.history: list[tuple[int, float]] = []  # (step, accuracy), for the caller

    def on_step(self, step: int, context: RunContext) -> None:
        result = context.evaluate(self.images, self.labels)
        scalars = result.scalars(self.tag)
        if self.per_class:
            scalars.update({f"{self.tag}/accuracy/class_{c}": float(a)
                            for c, a in enumerate(result.class_accuracy) if not np.isnan(a)})
        context.write_scalars(step, scalars)
        self.history.append((step, result.accuracy))


HOOKS = ("on_begin", "on_step", "on_epoch_start", "on_phase_start", "on_phase_end",
         "on_epoch_end", "on_end")


def never_runs(action: Action) -> str | None:
    """Why `action` would never do anything (None: it would): it overrides no hook, or
    only `on_step` and asks for no step."""
    own = [h for h in HOOKS if getattr(type(action), h) is not getattr(Action, h)]
    name = type(action).__name__
    if not own:
        hint = (" (__call__ is not one: name it on_step(self, step, context))"
                if callable(action) else "")
        return f"{name} overrides none of Action's hooks, {', '.join(HOOKS)}{hint}"
    if own == ["on_step"] and not action.every_steps and not action.on_steps:
        return (f"{name}.on_step runs at the steps it asks for, and it asks for none: "
                f"pass every_steps= or on_steps= to Action.__init__")
    return None


def next_cut(actions, step: int) -> int | None:
    """The first step after `step` at which any of `actions` wants to run."""
    steps = [s for s in (a.next_step(step) for a in actions) if s is not None]
    return min(steps) if steps else None


def dispatch(actions, hook: str, step: int, *args) -> None:
    """Calls `action.<hook>(step, *args)` on each action, in order."""
    for action in actions:
        getattr(action, hook)(step, *args)


def check_state_saved(actions, saved: dict[int, frozenset]) -> None:
    """Raises ValueError if an action lists checkpoint items the checkpoint does not hold.

    `saved`: for each action's index, the names of the items assembled into the run's
    checkpoint (after `build`). Items that appear later (made in `on_begin`, say) would
    silently be left out of every checkpoint, so a resumed run would lose them.
    """
    for i, action in enumerate(actions):
        late = sorted(set(action.checkpoint_items()) - saved.get(i, frozenset()))
        if late:
            raise ValueError(f"{type(action).__name__}.checkpoint_items() lists {', '.join(late)}, "
                             "made after the checkpoint was assembled: create them in "
                             "build(model), or they are never saved")


def checkpointed(action: Action) -> tf.Module:
    """A trackable holding `action.checkpoint_items()`, for the run's checkpoint."""
    holder = tf.Module(name=type(action).__name__)
    for name, item in action.checkpoint_items().items():
        setattr(holder, name, item)
    return holder
