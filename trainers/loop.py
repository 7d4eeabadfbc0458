"""The compiled loop: K training steps in one `tf.function` call, logging every step.

Running many steps per call keeps the host out of the way (one Python round trip
per K steps) while every step still writes its own scalars, from inside the
graph, at its own global step.
"""

import tensorflow as tf

from trainers import writers


def make_train_loop(train_step, global_step: tf.Variable, *, log_every_step: bool = True):
    """Compiles `train_loop(iterator, num_steps) -> sums over those steps`.

    Args:
      train_step: `batch -> {loss, accuracy, count, phase}` (see `steps.make_train_step`).
      global_step: int64 variable, the number of updates applied so far; the loop
        adds one per step and never resets it.
      log_every_step: write `train/loss`, `train/accuracy` and `train/phase` at every
        step to the default summary writer (decided once, when the loop is traced).

    Returns:
      A compiled function. Pass `num_steps` as an int64 tensor so that every call
      reuses one trace. It returns `loss_sum` and `correct` (example-weighted sums),
      `count` (examples seen), and `loss`, `accuracy` of the last step.
      `train_loop.experimental_get_tracing_count()` tells how often it was traced.
    """
    @tf.function
    def train_loop(iterator, num_steps):
        zero = tf.constant(0.0)
        loss_sum, correct, count, loss, accuracy = zero, zero, zero, zero, zero
        for _ in tf.range(num_steps):
            metrics = train_step(next(iterator))
            if log_every_step:
                writers.scalars_in_graph(global_step, {
                    "train/loss": metrics["loss"], "train/accuracy": metrics["accuracy"],
                    "train/phase": metrics["phase"]})
            global_step.assign_add(1)
            loss, accuracy = metrics["loss"], metrics["accuracy"]
            loss_sum += loss * metrics["count"]
            correct += accuracy * metrics["count"]
            count += metrics["count"]
        return {"loss_sum": loss_sum, "correct": correct, "count": count, "loss": loss,
                "accuracy": accuracy}

    return train_loop
