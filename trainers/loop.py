"""The compiled loop: K training steps in one `tf.function` call, logging every step.

Running many steps per call keeps the host out of the way (one Python round trip
per K steps) while every step still writes its own scalars, from inside the
graph, at its own global step, and periodic instruments (the held-out probe,
weight drift) still run at their exact cadence.
"""

import tensorflow as tf

from trainers import writers


def make_train_loop(train_step, global_step: tf.Variable, *, log_every_step: bool = True,
                    every_n_steps: int = 0, periodic=None):
    """Compiles `train_loop(iterator, num_steps) -> sums over those steps`.

    Args:
      train_step: `batch -> metrics` (see `steps.make_train_step`).
      global_step: int64 variable, the number of updates applied so far; the loop
        adds one per step and never resets it.
      log_every_step: write `train/loss`, `train/accuracy`, `train/phase` and
        `train/grad_norm` at every step (decided once, when the loop is traced).
      every_n_steps: run `periodic` after every update that brings the global step
        to a multiple of this; 0 never runs it.
      periodic: `metrics -> {tag: tensor}`, written at the new global step.

    Returns:
      A compiled function. Pass `num_steps` as an int64 tensor so that every call
      reuses one trace. It returns `loss_sum` and `correct` (example-weighted sums),
      `count` (examples seen), and `loss`, `accuracy` of the last step.
      `train_loop.experimental_get_tracing_count()` tells how often it was traced.
    """
    if every_n_steps < 0:
        raise ValueError(f"every_n_steps ({every_n_steps}) must be >= 0")
    run_periodic = periodic is not None and every_n_steps > 0

    @tf.function
    def train_loop(iterator, num_steps):
        zero = tf.constant(0.0)
        loss_sum, correct, count, loss, accuracy = zero, zero, zero, zero, zero
        for _ in tf.range(num_steps):
            metrics = train_step(next(iterator))
            if log_every_step:
                writers.scalars_in_graph(global_step, {
                    "train/loss": metrics["loss"], "train/accuracy": metrics["accuracy"],
                    "train/phase": metrics["phase"], "train/grad_norm": metrics["grad_norm"]})
            global_step.assign_add(1)
            if run_periodic:
                if global_step % every_n_steps == 0:
                    writers.scalars_in_graph(global_step, periodic(metrics))
            loss, accuracy = metrics["loss"], metrics["accuracy"]
            loss_sum += loss * metrics["count"]
            correct += accuracy * metrics["count"]
            count += metrics["count"]
        return {"loss_sum": loss_sum, "correct": correct, "count": count, "loss": loss,
                "accuracy": accuracy}

    return train_loop


def make_periodic_writer(periodic, global_step: tf.Variable, num_variables: int):
    """Compiles `write_now()`: `periodic` written at the current step, outside the loop.

    Used at step 0, before any update: gradient and update norms are then zero.
    """
    zeros = tf.zeros([num_variables])

    @tf.function
    def write_now():
        writers.scalars_in_graph(global_step, periodic({"grad_norms": zeros,
                                                        "update_norms": zeros}))

    return write_now
