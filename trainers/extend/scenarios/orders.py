"""The tutorial's orders as scenarios: every class a task, whole epochs, scored per class.

`Shuffled()` streams i.i.d. minibatches (a phase is an epoch), `Sorted(class_order)`
one class after another (a phase is a class), `Blocked(block_steps, class_order)`
classes taking turns `block_steps` batches at a time. They stream the training set
as `data.pipelines` does (the tutorial's numbers, bit for bit), for `epochs` epochs,
with the tutorial's inputs (pixels / 255 minus the mean pixel), and the run scores
them per class (`unit = "class"`): the per-class probe, validation and accuracy
matrix. `--order` chooses one (`from_config`); `--order=replay` is `Sorted` with the
reservoir remedy (`remedies.reservoir`). A data order of your own is a subclass
passed as `train_and_evaluate(scenario=...)`.
"""

import numpy as np
import tensorflow as tf

from tapeloop.data import pipelines
from tapeloop.trainers.extend.scenarios.base import Scenario, Task


class Order(Scenario):
    """Base class: tasks are the classes of the training set (in `class_order`)."""

    unit = "class"
    order = "sorted"
    validate_once_per_epoch = False  # True: a class's phases recur within an epoch

    def __init__(self, *, class_order: tuple[int, ...] | None = None, block_steps: int = 0):
        super().__init__("class", steps_per_task=1)
        self.class_order, self.block_steps = class_order, block_steps
        self.name = self.order
        self._labels = np.zeros(0, np.int32)

    def make_tasks(self, data) -> list[Task]:
        self._labels, self._num_classes = data.y_train, data.num_classes
        present = sorted(int(c) for c in np.unique(data.y_train))
        order = self.class_order if self.class_order is not None else present
        return [Task(classes=(int(c),), outputs=(int(c),), name=f"class {c}") for c in order]

    def check(self, data) -> None:
        """The epoch plan can be made (a class order that fits, a block length)."""
        self.plan(0, batch_size=1)

    @property
    def num_outputs(self) -> int:
        return self._num_classes

    def plan(self, epoch: int = 0, *, batch_size: int, joint: bool = False):
        return pipelines.plan_epoch(self._labels, order=self.order, batch_size=batch_size,
                                    epoch=epoch, class_order=self.class_order,
                                    block_steps=self.block_steps)

    def trained_in(self, phase: int, joint: bool = False) -> tuple[int, ...]:
        return (phase,)

    def inputs(self, data, x: np.ndarray) -> np.ndarray:
        return x

    def pipeline(self, data, x: np.ndarray, *, batch_size: int, seed: int, epochs: int = 1,
                 start_step: int = 0, joint: bool = False,
                 shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
        pixels = data.train_pixels is not None  # uint8 MNIST: a quarter of the memory
        return pipelines.make_pipeline(
            self.order, data.train_pixels if pixels else x, data.y_train,
            batch_size=batch_size, seed=seed, epochs=epochs, class_order=self.class_order,
            start_step=start_step, pixel_mean=data.pixel_mean if pixels else None,
            block_steps=self.block_steps, shard=shard)


class Sorted(Order):
    """All examples of one class, then the next (in `class_order`), every epoch."""

    order = "sorted"


class Blocked(Order):
    """Classes taking turns, `block_steps` batches at a time."""

    order = "blocked"
    validate_once_per_epoch = True

    def __init__(self, block_steps: int, *, class_order: tuple[int, ...] | None = None):
        super().__init__(class_order=class_order, block_steps=block_steps)


class Shuffled(Order):
    """i.i.d. minibatches reshuffled every epoch: one phase per epoch, every class in it."""

    order = "shuffled"

    def __init__(self):
        super().__init__()

    def trained_in(self, phase: int, joint: bool = False) -> tuple[int, ...]:
        return tuple(t.classes[0] for t in self.tasks)


def from_config(config) -> Order:
    """The order `config.order` names (`replay`: sorted; its memory is a remedy,
    `remedies.make` adds it)."""
    if config.order == "shuffled":
        order = Shuffled()
    elif config.order == "blocked":
        order = Blocked(config.block_steps, class_order=config.class_order)
    else:
        order = Sorted(class_order=config.class_order)
    order.name = config.order
    return order
