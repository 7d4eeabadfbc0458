"""Averaged gradient episodic memory (A-GEM; Chaudhry et al. 2019).

A class-balanced memory keeps `per_class` examples of every finished task's classes.
At every step a batch drawn from it gives a reference gradient g_ref; when the
update g would raise the memory's loss (g . g_ref < 0), it is projected:
g <- g - (g . g_ref) / (g_ref . g_ref + epsilon) * g_ref.
"""

import tensorflow as tf

from tapeloop.trainers.extend.remedies.base import ClassBalancedMemory, Remedy


class AGEM(Remedy):
    """A-GEM with `per_class` remembered examples a class and `epsilon` in the projection."""

    name = "agem"

    def __init__(self, per_class: int = 100, *, epsilon: float = 1e-7, batch_size: int = 0):
        super().__init__()
        if per_class < 1 or not epsilon >= 0 or batch_size < 0:
            raise ValueError(f"A-GEM needs per_class >= 1 ({per_class}), epsilon >= 0 "
                             f"({epsilon}) and batch_size >= 0 ({batch_size})")
        self.per_class, self.epsilon, self.batch_size = per_class, epsilon, batch_size

    def hparams(self) -> dict:
        return {"per_class": self.per_class, "epsilon": self.epsilon}

    def build(self, model) -> None:
        self.memory = ClassBalancedMemory(per_class=self.per_class,
                                          scenario=self.context.scenario, seed=self.context.seed)
        self._count = self.batch_size or self.context.batch_size

    def checkpoint_items(self) -> dict:
        return {"memory": self.memory}

    def transform_gradients(self, grads, gradient_of):
        reference = gradient_of(*self.memory.sample(self._count))
        dot = tf.add_n([tf.reduce_sum(g * r) for g, r in zip(grads, reference)])
        length = tf.add_n([tf.reduce_sum(r * r) for r in reference])
        scale = tf.where(dot < 0, dot / (length + self.epsilon), 0.0)
        return [g - scale * r for g, r in zip(grads, reference)]

    def on_phase_end(self, step, task, context):
        self.memory.remember(context.scenario, context.train_x, context.data.y_train, task)
