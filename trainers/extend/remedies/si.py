"""Synaptic intelligence (Zenke, Poole & Ganguli 2017).

During task k every update adds its share of the loss decrease to each weight's path
integral, w_i += -g_i * delta_theta_i. At the task's end the importance grows by
omega_i += w_i / ((theta_i - theta*_i)^2 + xi) (theta*: the weights at the task's
start; xi damps it), w is reset, and every later step adds c * sum_i omega_i
(theta_i - theta*_i)^2, theta* now the weights at this task's end.
"""

import tensorflow as tf

from tapeloop.trainers.extend.remedies.base import Remedy, state_variable


class SI(Remedy):
    """SI with strength `strength` (c) and damping `epsilon` (xi)."""

    name = "si"

    def __init__(self, strength: float, *, epsilon: float = 0.1):
        super().__init__()
        if not strength >= 0 or not epsilon > 0:
            raise ValueError(f"SI needs strength >= 0 ({strength}) and epsilon > 0 ({epsilon})")
        self.strength, self.epsilon = strength, epsilon

    def hparams(self) -> dict:
        return {"c": self.strength, "epsilon": self.epsilon}

    def build(self, model) -> None:
        self._variables = model.trainable_variables

        def copies(what, zero=False):
            return [state_variable(tf.zeros(v.shape) if zero else v.numpy(), f"{what}_{i}")
                    for i, v in enumerate(self._variables)]

        self.anchor, self.before = copies("anchor"), copies("before")
        self.path, self.omega = copies("path", zero=True), copies("omega", zero=True)

    def checkpoint_items(self) -> dict:
        return {"anchor": self.anchor, "before": self.before, "path": self.path,
                "omega": self.omega}

    def penalty(self):
        return self.strength * tf.add_n([tf.reduce_sum(o * tf.square(v - a)) for v, a, o in
                                         zip(self._variables, self.anchor, self.omega)])

    def after_update(self, grads) -> None:
        for v, b, w, g in zip(self._variables, self.before, self.path, grads):
            w.assign_add(-g * (v - b))
            b.assign(v)

    def on_phase_end(self, step, task, context):
        for v, a, w, o in zip(self._variables, self.anchor, self.path, self.omega):
            o.assign_add(w / (tf.square(v - a) + self.epsilon))
            a.assign(v)
            w.assign(tf.zeros_like(w))
