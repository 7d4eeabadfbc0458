"""A remedy of your own: Memory Aware Synapses (Aljundi et al. 2018), passed as an object.

    python examples/mas_remedy.py --scenario=split_mnist_task --mas_lambda=1 --run_name=mas

After each task, every weight's importance grows by the mean absolute gradient of the
squared output norm ||f(x)||^2 over the task's inputs (no labels needed), and every
later step adds `lambda * sum importance * (w - w_task_end)^2`. The remedy is one class
here and no edit to tapeloop: its state is built in `build`, checkpointed (a killed run
resumes bit-exactly), its settings are `hparams` (config.json, HParams; a resume with
another lambda is refused).
"""

from absl import app, flags

import tapeloop  # before TensorFlow: its start-up lines stay off the terminal
import numpy as np
import tensorflow as tf

tapeloop.define_flags()
_LAMBDA = flags.DEFINE_float("mas_lambda", 1.0, "MAS: strength of the importance-weighted "
                             "pull toward the weights each task ended with.", lower_bound=0.0)
_SAMPLES = flags.DEFINE_integer("mas_samples", 500, "MAS: examples of a task its importance "
                                "is measured on.", lower_bound=1)


class MAS(tapeloop.Remedy):
    """Importance = mean |d ||f(x)||^2 / d w| over a task's inputs, summed over tasks."""

    name = "mas"

    def __init__(self, strength: float, samples: int):
        super().__init__()
        self.strength, self.samples = strength, samples

    def hparams(self):
        return {"lambda": self.strength, "samples": self.samples}

    def build(self, model):
        self.params = model.trainable_variables
        self.importance = [tf.Variable(tf.zeros(v.shape), trainable=False) for v in self.params]
        self.anchor = [tf.Variable(v.numpy(), trainable=False) for v in self.params]

    def checkpoint_items(self):
        return {"importance": self.importance, "anchor": self.anchor}

    def penalty(self):
        return self.strength * tf.add_n([tf.reduce_sum(o * tf.square(w - a)) for w, a, o in
                                         zip(self.params, self.anchor, self.importance)])

    def on_phase_end(self, step, task, context):
        rows, _ = context.scenario.task_examples(context.train_x, context.data.y_train, task)
        rows = rows[np.random.default_rng([context.seed, task]).permutation(len(rows))
                    [:self.samples]]
        with tf.GradientTape() as tape:  # the task's own outputs (task-IL: the others masked)
            outputs = context.forward(tf.constant(rows), tasks=tf.fill([len(rows)], task))
            norm = tf.reduce_sum(tf.square(tf.where(outputs < -1e8, 0.0, outputs))) / len(rows)
        for o, a, g, w in zip(self.importance, self.anchor, tape.gradient(norm, self.params),
                              self.params):
            o.assign_add(tf.abs(g))
            a.assign(w)


def main(argv):
    tapeloop.run_from_flags(argv, remedies=[MAS(_LAMBDA.value, _SAMPLES.value)])


if __name__ == "__main__":
    app.run(main)
