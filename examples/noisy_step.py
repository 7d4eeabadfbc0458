"""Your own training step and your own action, with a flag of your own.

    python examples/noisy_step.py --noise=0.3 --order=sorted --run_name=noisy_sorted

The step adds Gaussian noise to every batch's inputs, then runs tapeloop's default step
(the step's contract: the batch is a dict of flat rows; wrap `make_train_step`). The
action logs the weights' global norm as `mine/weight_norm` every `--norm_every` steps.
Every tapeloop flag works here; config.json and HParams record `--noise` and
`--norm_every` as the script's own flags.
"""

from absl import app, flags

import tapeloop  # before TensorFlow: its start-up lines stay off the terminal
import tensorflow as tf

tapeloop.define_flags()
flags.DEFINE_float("noise", 0.2, "Standard deviation of the Gaussian noise added to the "
                   "training inputs (pixels scaled to [0, 1]).", lower_bound=0.0)
flags.DEFINE_integer("norm_every", 100, "Log the weights' global norm every this many steps.",
                     lower_bound=1)
FLAGS = flags.FLAGS


def noisy_step(model, optimizer, **kwargs):
    """tapeloop's step on inputs with Gaussian noise added (training batches only)."""
    step = tapeloop.make_train_step(model, optimizer, **kwargs)
    stddev = FLAGS.noise

    def train(batch):
        noise = tf.random.normal(tf.shape(batch["image"]), stddev=stddev)
        return step(dict(batch, image=batch["image"] + noise))
    return train


class WeightNorm(tapeloop.Action):
    """Logs the global norm of the trainable weights at its steps."""

    def on_step(self, step, context):
        norm = tf.linalg.global_norm(context.model.trainable_variables)
        context.write_scalars(step, {"mine/weight_norm": float(norm)})


def main(argv):
    tapeloop.run_from_flags(argv, train_step=noisy_step,
                            actions=[WeightNorm(every_steps=FLAGS.norm_every)])


if __name__ == "__main__":
    app.run(main)
