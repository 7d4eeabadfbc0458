"""Experience replay with a class-balanced memory (the "ER" of van de Ven et al. 2022).

A memory keeps `per_class` random examples of every finished task's classes. Each
batch of the current task gets as many remembered examples appended, and the loss
weighs them as van de Ven's code does: (1/t) * mean loss of the new examples +
(1 - 1/t) * mean loss of the replayed ones, t the number of the current task.
"""

import tensorflow as tf

from tapeloop.trainers.engine.distribute import replica_share
from tapeloop.trainers.extend.remedies.base import ClassBalancedMemory, Remedy


class Replay(Remedy):
    """Replay of `per_class` remembered examples a class, `batch_size` of them per step
    (0: as many as the stream's batch)."""

    name = "replay"

    def __init__(self, per_class: int = 100, *, batch_size: int = 0):
        super().__init__()
        if per_class < 1 or batch_size < 0:
            raise ValueError(f"replay needs per_class >= 1 ({per_class}) and batch_size >= 0 "
                             f"({batch_size})")
        self.per_class, self.batch_size = per_class, batch_size

    def hparams(self) -> dict:
        return {"per_class": self.per_class}

    def build(self, model) -> None:
        self.memory = ClassBalancedMemory(per_class=self.per_class,
                                          scenario=self.context.scenario, seed=self.context.seed)
        self._new = self.context.batch_size  # the stream's global batch
        self._count = self.batch_size or self._new

    def checkpoint_items(self) -> dict:
        return {"memory": self.memory}

    def mix(self, batch: dict) -> dict:
        tasks_done = tf.cast(self.memory.filled > 0, tf.float32) * tf.cast(
            tf.reduce_max(self.memory.tasks) + 1, tf.float32)
        new_share = 1.0 / (tasks_done + 1.0)
        images, labels, tasks = replica_share(*self.memory.sample(self._count))
        weight = tf.concat([
            tf.fill(tf.shape(batch["label"]), new_share / self._new),
            tf.fill(tf.shape(labels), (1.0 - new_share) / self._count)], axis=0)
        base = batch.get("weight")
        if base is not None:  # another remedy weighed the new examples already
            weight = tf.concat([base * new_share * self._new, weight[tf.size(base):]], axis=0)
        return dict(batch, image=tf.concat([batch["image"], images], axis=0),
                    label=tf.concat([batch["label"], labels], axis=0),
                    task=tf.concat([batch["task"], tasks], axis=0), weight=weight)

    def on_phase_end(self, step, task, context):
        self.memory.remember(context.scenario, context.train_x, context.data.y_train, task)
