"""A continual-learning scenario: what a run's tasks are, how they stream, how they are scored.

A `Scenario` cuts a data set (`data.splits.Splits`) into a sequence of tasks. Each
task has its own training examples (some of the data set's classes, and optionally an
input transform, such as a fixed pixel permutation), and the scenario says how its
labels map to the network's outputs (van de Ven, Tuytelaars & Tolias 2022):

- `class`: class-incremental. One head over every task's classes; at test time the
  network must also tell the tasks apart.
- `task`: task-incremental. One output per class of every task, but a task's
  examples are scored, in training and in evaluation, on that task's outputs only
  (the other logits are masked): a multi-headed network, told which task it is in.
- `domain`: domain-incremental. The same outputs for every task: a label is its
  position within its task (Split-MNIST: even or odd digit).

A run trains the tasks one after another, `steps_per_task` batches each (the
`phase` of every batch is its task), drawn by reshuffled passes over the task's
examples; the held-out probe and the test are scored per task. A scenario is one
small subclass: it lists its tasks in `make_tasks` (see `split.py`, `permuted.py`).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tapeloop.data import pipelines
from tapeloop.trainers.records.config import SCENARIO_KINDS as KINDS

@dataclasses.dataclass(frozen=True)
class Task:
    """One task: which examples it trains on, and what their outputs are."""

    classes: tuple[int, ...]  # the data set's labels of its examples
    outputs: tuple[int, ...]  # the output each of those labels has (class- and task-IL)
    permutation: np.ndarray | None = None  # input rows are x[permutation] (None: as they are)
    name: str = ""

    def describe(self) -> dict:
        return {"name": self.name, "classes": list(self.classes), "outputs": list(self.outputs),
                "permuted": self.permutation is not None}


class Scenario:
    """Base class of a task sequence; subclasses define `make_tasks` (and `name`).

    Args:
      kind: one of `KINDS`.
      steps_per_task: training batches per task.
    """

    name = "scenario"
    unit = "task"  # what the run scores and probes: tasks (the tutorial's orders: classes)

    def __init__(self, kind: str, *, steps_per_task: int):
        if kind not in KINDS:
            raise ValueError(f"scenario kind ({kind!r}) must be one of {', '.join(KINDS)}")
        if steps_per_task < 1:
            raise ValueError(f"steps_per_task ({steps_per_task}) must be a positive integer")
        self.kind, self.steps_per_task = kind, steps_per_task
        self.tasks: list[Task] = []
        self.input_dim = 0

    # What a subclass defines.
    def make_tasks(self, data) -> list[Task]:
        """The tasks of `data`, in training order."""
        raise NotImplementedError

    def transformed_dim(self, data) -> int:
        """The length of an input row after the task's transform (default: unchanged)."""
        return data.input_dim

    def example_shape(self, data) -> tuple[int, ...]:
        """One example's shape after the task's transform (default: the data's)."""
        return data.shape

    # Everything else follows from the tasks.
    def bind(self, data) -> "Scenario":
        """Cuts `data` into tasks and checks them (`check`).

        Raises:
          ValueError: a task without examples, or an output out of range.
        """
        self.tasks = list(self.make_tasks(data))
        if not self.tasks:
            raise ValueError(f"scenario {self.name}: the data gives no tasks")
        self.input_dim = self.transformed_dim(data)
        self.check(data)
        return self

    def check(self, data) -> None:
        """Every task has training and test examples."""
        for t, task in enumerate(self.tasks):
            for split, labels in (("training", data.y_train), ("test", data.y_test)):
                if not np.isin(labels, task.classes).any():
                    raise ValueError(f"scenario {self.name}: task {t} (classes "
                                     f"{', '.join(map(str, task.classes))}) has no {split} "
                                     "examples")

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def num_outputs(self) -> int:
        """How many outputs the network has (every task's; one task's in the domain kind)."""
        if self.kind == "domain":
            return max(len(t.classes) for t in self.tasks)
        return 1 + max(max(t.outputs) for t in self.tasks)

    def targets(self, task: int, labels: np.ndarray) -> np.ndarray:
        """The training targets (output ids) of `labels`, examples of task `task`."""
        t = self.tasks[task]
        table = np.full(max(max(t.classes), int(labels.max(initial=0))) + 1, -1, np.int64)
        table[list(t.classes)] = (np.arange(len(t.classes)) if self.kind == "domain"
                                  else t.outputs)
        return table[labels].astype(np.int32)

    def output_mask(self) -> np.ndarray | None:
        """(tasks, outputs) bool: the outputs a task's examples are scored on (task-IL);
        None: every output, always."""
        if self.kind != "task":
            return None
        mask = np.zeros((self.num_tasks, self.num_outputs), bool)
        for i, t in enumerate(self.tasks):
            mask[i, list(t.outputs)] = True
        return mask

    def scored_outputs(self, task: int) -> tuple[int, ...]:
        """The outputs task `task`'s examples are scored on."""
        if self.kind == "task":
            return tuple(self.tasks[task].outputs)
        return tuple(range(self.num_outputs))

    def task_examples(self, x: np.ndarray, y: np.ndarray, task: int,
                      limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Task `task`'s examples among (x, y), transformed: (rows, targets).

        `limit` > 0: the first `limit` examples of each of its classes, in order.
        """
        idx = self.task_indices(y, task, limit)
        return self.transform(x[idx], task), self.targets(task, y[idx])

    def task_indices(self, y: np.ndarray, task: int, limit: int = 0) -> np.ndarray:
        """Where task `task`'s examples are among labels `y` (see `task_examples`): take
        a sample of them before `transform`, which copies every row it is given."""
        t = self.tasks[task]
        if limit:
            return np.concatenate([np.flatnonzero(y == c)[:limit] for c in t.classes])
        return np.flatnonzero(np.isin(y, t.classes))

    def transform(self, rows: np.ndarray, task: int) -> np.ndarray:
        """Rows of the data set as task `task` presents them (numpy, float32)."""
        perm = self.tasks[task].permutation
        rows = np.asarray(rows, np.float32)
        if perm is None:
            return rows
        padded = np.concatenate([rows, np.zeros((len(rows), 1), np.float32)], axis=1)
        return padded[:, perm]

    def plan(self, epoch: int = 0, *, batch_size: int = 0,
             joint: bool = False) -> pipelines.EpochPlan:
        """The phases of epoch `epoch`: one per task, `steps_per_task` batches each
        (`joint`: one phase as long as the whole sequence)."""
        if joint:
            return pipelines.EpochPlan(phases=(0,), steps=(self.num_tasks * self.steps_per_task,))
        return pipelines.EpochPlan(phases=tuple(range(self.num_tasks)),
                                   steps=(self.steps_per_task,) * self.num_tasks)

    def trained_in(self, phase: int, joint: bool = False) -> tuple[int, ...]:
        """The tasks phase `phase` trains (`joint`: all of them)."""
        return tuple(range(self.num_tasks)) if joint else (phase,)

    def inputs(self, data, x: np.ndarray) -> np.ndarray:
        """The rows the scenario's tasks are cut from: MNIST's pixels / 255 as in the
        reference code (ToTensor), not the tutorial's mean-subtracted ones; other data as
        they are."""
        if data.pixel_mean is None:
            return x
        return (x + data.pixel_mean).astype(np.float32)

    def describe(self) -> str:
        """One line: name, kind, tasks and their classes."""
        tasks = "; ".join(f"{i}: {','.join(map(str, t.classes))}"
                          + (" permuted" if t.permutation is not None else "")
                          for i, t in enumerate(self.tasks))
        return (f"scenario {self.name} ({self.kind}-incremental): {self.num_tasks} tasks of "
                f"{self.steps_per_task} batches, {self.num_outputs} outputs; tasks {tasks}")

    def table(self) -> dict:
        """What config.json and the events record of the task sequence."""
        return {"name": self.name, "kind": self.kind, "steps_per_task": self.steps_per_task,
                "outputs": self.num_outputs, "tasks": [t.describe() for t in self.tasks]}

    # The stream.
    def batch_indices(self, labels: np.ndarray, *, batch_size: int, seed: int,
                      joint: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Every batch of the run: (steps, batch_size) example indices and (steps, batch_size)
        task ids. A task's batches walk reshuffled passes over its examples (a pass is
        reshuffled as it runs out); `joint`: all tasks at once, one phase of
        `num_tasks * steps_per_task` batches drawn from every task's examples."""
        rng = np.random.default_rng([seed, 7])
        members = [np.flatnonzero(np.isin(labels, t.classes)) for t in self.tasks]
        if joint:
            pool = np.concatenate(members)
            owner = np.concatenate([np.full(len(m), i) for i, m in enumerate(members)])
            order = _passes(rng, len(pool), self.num_tasks * self.steps_per_task * batch_size)
            return (pool[order].reshape(-1, batch_size),
                    owner[order].reshape(-1, batch_size).astype(np.int32))
        index, task = [], []
        for i, m in enumerate(members):
            order = _passes(rng, len(m), self.steps_per_task * batch_size)
            index.append(m[order].reshape(-1, batch_size))
            task.append(np.full((self.steps_per_task, batch_size), i, np.int32))
        return np.concatenate(index), np.concatenate(task)

    def pipeline(self, data, x: np.ndarray, *, batch_size: int, seed: int, epochs: int = 1,
                 start_step: int = 0, joint: bool = False,
                 shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
        """The run's batches from `start_step` on, cut from the rows `x` (`inputs`) of
        `data`'s training split: dicts of image (B, D'), label (B,) targets, task (B,) and
        phase (the batch's task; 0 for `joint`). The tasks are trained once (`epochs` 1)."""
        y = data.y_train
        index, task = self.batch_indices(y, batch_size=batch_size, seed=seed, joint=joint)
        targets = np.zeros(index.shape, np.int32)
        for t in range(self.num_tasks):
            chosen = task == t
            targets[chosen] = self.targets(t, y[index[chosen]])
        i, n = shard
        index, task, targets = index[:, i::n], task[:, i::n], targets[:, i::n]
        perms = self._permutation_table(x.shape[1])
        options = tf.data.Options()
        options.threading.private_threadpool_size = 1
        options.deterministic = True
        arrays = tf.data.Dataset.from_tensors(tf.constant(x, tf.float32)).repeat()
        tables = tf.data.Dataset.from_tensor_slices((index, task, targets))

        def batch(tables, rows):
            idx, tasks, labels = tables
            image = tf.gather(rows, idx)
            if perms is not None:
                padded = tf.pad(image, [[0, 0], [0, 1]])
                image = tf.gather(padded, tf.gather(perms, tasks), batch_dims=1)
            return {"image": image, "label": labels, "task": tasks,
                    "phase": tf.constant(0, tf.int32) if joint else tasks[0]}

        return (tf.data.Dataset.zip(tables.skip(start_step), arrays).map(batch)
                .prefetch(2).with_options(options))

    def _permutation_table(self, width: int):
        if all(t.permutation is None for t in self.tasks):
            return None
        identity = np.arange(width)
        return tf.constant(np.stack([identity if t.permutation is None else t.permutation
                                     for t in self.tasks]), tf.int32)


def _passes(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """`count` indices into n examples: reshuffled passes, one after another."""
    passes = -(-count // n)
    return np.concatenate([rng.permutation(n) for _ in range(passes)])[:count]
