"""A remedy against forgetting: one object, passed in a list, entering the run at its seams.

A remedy is an `actions.Action` (it acts at task ends: `on_phase_end`, with the task
as the phase) with four more seams into tapeloop's one training step:

- `penalty()`: a scalar added to every step's loss (EWC, SI: a pull toward old weights);
- `example_loss(images, tasks, outputs)`: a per-example term added to each example's
  loss (LwF: distillation from the previous model);
- `mix(batch)`: the batch the step trains on (replay: remembered examples appended,
  with per-example `weight`s); `stream_batch_size` says how much of it the stream gives;
- `transform_gradients(grads, gradient_of)`: the update's direction (A-GEM's
  projection); `gradient_of(images, labels, tasks)` is the gradient of those
  examples' mean loss, scored as the scenario scores them;
- `after_update(grads)`: after every update (SI's path integral).

Its state is made in `build(model)`, under the strategy's scope, before the run's
checkpoint is assembled, and listed in `checkpoint_items()`: it is saved in every
checkpoint and restored bit-exactly. `self.context` (the run's `RunContext`: the
scenario, the forward pass with task masks, the strategy, the data) is set before
`build`. `hparams()` are its settings: recorded in config.json and HParams, and a
resume with other values is refused.
"""

import numpy as np
import tensorflow as tf

from tapeloop.trainers.extend.actions import Action


class Remedy(Action):
    """Base class: a remedy that does nothing (fine-tuning). Override the seams you need."""

    name = "none"
    joint = False  # True: train on every task at once (the upper bound), not in sequence

    def __init__(self):
        super().__init__()
        self.context = None  # the RunContext, set before build

    def hparams(self) -> dict:
        """The remedy's settings, {name: number or text}."""
        return {}

    penalty = None  # penalty() -> scalar, added to the loss (None: no term)
    example_loss = None  # example_loss(images, tasks, outputs) -> (B,) (None: no term)
    transform_gradients = None  # transform_gradients(grads, gradient_of) -> grads
    after_update = None  # after_update(grads), in the step, after the optimizer's update

    def mix(self, batch: dict) -> dict:
        """The batch the step trains on (default: the stream's)."""
        return batch

    def stream_batch_size(self, batch_size: int) -> int:
        """How many of a step's `batch_size` examples the stream gives (the others: the
        remedy's, added in `mix`)."""
        return batch_size


def state_variable(value, name: str, dtype=tf.float32) -> tf.Variable:
    """A remedy's variable: not trained, updated by the first replica under a strategy."""
    return tf.Variable(value, dtype=dtype, trainable=False, name=name,
                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class ClassBalancedMemory(tf.Module):
    """`per_class` examples of every class of every finished task, chosen at random.

    Filled on the host at each task end (`remember`); sampled in the step (`sample`),
    uniformly with replacement, by stateless draws numbered in a variable, so that a
    resumed run draws what the uninterrupted one would have.
    """

    def __init__(self, *, per_class: int, scenario, seed: int):
        super().__init__(name="class_balanced_memory")
        if per_class < 1:
            raise ValueError(f"per_class ({per_class}) must be a positive integer")
        self.per_class, self._seed = per_class, seed
        capacity = per_class * sum(len(t.classes) for t in scenario.tasks)
        self.images = state_variable(tf.zeros([capacity, scenario.input_dim]), "images")
        self.labels = state_variable(tf.zeros([capacity], tf.int32), "labels", tf.int32)
        self.tasks = state_variable(tf.zeros([capacity], tf.int32), "tasks", tf.int32)
        self.filled = state_variable(0, "filled", tf.int32)
        self.draws = state_variable(0, "draws", tf.int64)

    def remember(self, scenario, x: np.ndarray, y: np.ndarray, task: int) -> None:
        """Stores `per_class` random examples of each class of task `task` (host side)."""
        rng = np.random.default_rng([self._seed, 11, task])
        t = scenario.tasks[task]
        chosen = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:self.per_class]
                                 for c in t.classes])
        rows, targets = scenario.transform(x[chosen], task), scenario.targets(task, y[chosen])
        start, n = int(self.filled.numpy()), len(chosen)
        for variable, values in ((self.images, rows), (self.labels, targets),
                                 (self.tasks, np.full(n, task, np.int32))):
            current = variable.numpy()
            current[start:start + n] = values
            variable.assign(current)
        self.filled.assign(start + n)

    def sample(self, count: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """`count` remembered (images, labels, tasks), or none while the memory is empty."""
        filled = self.filled.read_value()
        seed = tf.stack([tf.constant(self._seed, tf.int64), self.draws.read_value()])
        idx = tf.random.stateless_uniform([count], seed=seed, minval=0,
                                          maxval=tf.maximum(filled, 1), dtype=tf.int32)
        idx = idx[:tf.minimum(count, filled * count)]
        self.draws.assign_add(1)
        return (tf.gather(self.images, idx), tf.gather(self.labels, idx),
                tf.gather(self.tasks, idx))
