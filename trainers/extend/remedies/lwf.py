"""Learning without forgetting (Li & Hoiem 2017): distil the previous model on the new data.

At each task's end the model is copied as a frozen teacher. Every later example adds
the distillation loss H(softmax(teacher / T), softmax(outputs / T)) on its own input,
as in van de Ven's code (`loss_fn_kd`, called without the T^2 factor of Hinton et
al.): over all outputs (class-IL), times the number of tasks finished (domain-IL), or
summed over the finished tasks' outputs (task-IL).
"""

import tensorflow as tf

from tapeloop.trainers.extend.remedies.base import Remedy, state_variable
from tapeloop.trainers.engine.steps import masked


class LwF(Remedy):
    """LwF with distillation temperature `temperature`."""

    name = "lwf"

    def __init__(self, temperature: float = 2.0):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"LwF's temperature ({temperature}) must be positive")
        self.temperature = temperature

    def hparams(self) -> dict:
        return {"temperature": self.temperature}

    def build(self, model) -> None:
        try:
            self.teacher = tf.keras.models.clone_model(model)
        except Exception as e:  # Keras raises several types for a model it cannot clone
            raise ValueError(f"LwF copies the model as its teacher, and this model cannot be "
                             f"cloned ({type(e).__name__}: {e})") from None
        self.teacher.set_weights(model.get_weights())
        self.finished = state_variable(0, "tasks_finished")
        self._teacher_forward = self.context.forward_of(self.teacher)

    def checkpoint_items(self) -> dict:
        return {"teacher": self.teacher, "finished": self.finished}

    def example_loss(self, images, tasks, outputs):
        scenario, temp = self.context.scenario, self.temperature
        teacher = tf.stop_gradient(self._teacher_forward(images, training=False))

        def distil(mask=None):
            o, t = outputs, teacher
            if mask is not None:
                o, t = masked(o, mask), masked(t, mask)
            return -tf.reduce_sum(tf.nn.softmax(t / temp) * tf.nn.log_softmax(o / temp),
                                  axis=1)

        done = self.finished.read_value()
        if scenario.kind != "task":
            weight = tf.minimum(done, 1.0) if scenario.kind == "class" else done
            return weight * distil()
        mask = scenario.output_mask()
        return tf.add_n([tf.cast(k < done, tf.float32) * distil(tf.constant(mask[k]))
                         for k in range(scenario.num_tasks - 1)])

    def on_phase_end(self, step, task, context):
        for t, v in zip(self.teacher.weights, context.model.weights):
            t.assign(v)
        self.finished.assign_add(1.0)
