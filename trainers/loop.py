"""The compiled loop: K training steps in one `tf.function` call, logging every step.

Running many steps per call keeps the host out of the way (one Python round trip
per K steps) while every step still writes its own scalars, from inside the
graph, at its own global step, and periodic instruments (the held-out probe,
weight drift) still run at their exact cadence.
"""

import tensorflow as tf

from trainers import writers


def make_train_loop(train_step, global_step: tf.Variable, *, log_every_step: bool = True,
                    every_n_steps: int = 0, periodic=None, before_periodic=None,
                    variables=None, inspect_step=None):
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
      before_periodic: called (in-graph) right before each step that `periodic`
        follows, e.g. to snapshot the weights that step will change.
      variables: the variables `train_step` updates; given, `train_loop.inspect`
        exists (see below).
      inspect_step: the step `inspect` runs (default `train_step`); its metrics must
        hold the batch trained on (`image`, `label`), `logits` and `example_loss`.

    Returns:
      A compiled function. Pass `num_steps` as an int64 tensor so that every call
      reuses one trace. It returns `loss_sum` and `correct` (example-weighted sums),
      `count` (examples seen), `loss`, `accuracy` of the last step, and
      `first_bad_step` (-1 while every loss and gradient was finite) with `bad_kind`
      (0: the loss, 1: a gradient).
      `train_loop.experimental_get_tracing_count()` tells how often it was traced.
      `train_loop.inspect(iterator)` (compiled separately, traced on first use) runs
      exactly one step the way the loop would (same logging, cadence and guard) and
      also returns that step's batch (`image`, `label`, `phase`), `logits`,
      `example_loss`, `grad_norms` and the applied `update` (a list: each variable
      after the step minus before).
    """
    if every_n_steps < 0:
        raise ValueError(f"every_n_steps ({every_n_steps}) must be >= 0")
    k = every_n_steps if periodic is not None else 0
    # Non-finite guard, in the graph: the first step whose loss (0) or gradient (1) is
    # not finite is remembered here and returned; the host stops after the call.
    first_bad = tf.Variable(-1, dtype=tf.int64, trainable=False, name="first_bad_step")
    bad_kind = tf.Variable(-1, dtype=tf.int64, trainable=False, name="bad_kind")

    def one_step(iterator, sums):
        """One step; `sums` = (loss_sum, correct, count, loss, accuracy) carried along."""
        return step_on(next(iterator), sums)

    def step_on(batch, sums, step_fn=train_step):
        loss_sum, correct, count, _, _ = sums
        metrics = step_fn(batch)
        loss_ok = tf.math.is_finite(metrics["loss"])
        new_bad = tf.logical_and(first_bad < 0, tf.logical_not(
            tf.logical_and(loss_ok, tf.math.is_finite(metrics["grad_norm"]))))
        first_bad.assign(tf.where(new_bad, global_step, first_bad))
        bad_kind.assign(tf.where(new_bad, tf.where(loss_ok, tf.constant(1, tf.int64), 0),
                                 bad_kind))
        if log_every_step:
            writers.scalars_in_graph(global_step, {
                "train/loss": metrics["loss"], "train/accuracy": metrics["accuracy"],
                "train/phase": metrics["phase"], "train/grad_norm": metrics["grad_norm"]})
        global_step.assign_add(1)
        n = metrics["count"]
        return metrics, (loss_sum + metrics["loss"] * n, correct + metrics["accuracy"] * n,
                         count + n, metrics["loss"], metrics["accuracy"])

    def run_steps(iterator, n, sums):
        for _ in tf.range(n):
            _, sums = one_step(iterator, sums)
        return sums

    def outputs(sums):
        loss_sum, correct, count, loss, accuracy = sums
        return {"loss_sum": loss_sum, "correct": correct, "count": count, "loss": loss,
                "accuracy": accuracy, "first_bad_step": first_bad.read_value(),
                "bad_kind": bad_kind.read_value()}

    @tf.function
    def train_loop(iterator, num_steps):
        zero = tf.constant(0.0)
        sums = (zero, zero, zero, zero, zero)
        if k == 0:
            sums = run_steps(iterator, num_steps, sums)
        else:
            # The cadence points in (g, g + n] are found by arithmetic, not by a
            # conditional at every step: segment 0 is `head` plain steps, segments
            # 1..m-1 are k - 1 plain steps, the last is the `tail`; a measured step
            # (snapshot, step, instruments) follows every segment but the last.
            g = global_step.read_value()
            k64 = tf.constant(k, tf.int64)
            first = g + k64 - g % k64  # the next multiple of k after g
            m = tf.maximum(tf.constant(0, tf.int64), (g + num_steps - first) // k64 + 1)
            head = tf.minimum(num_steps, first - 1 - g)
            tail = num_steps - head - tf.where(m > 0, 1 + (m - 1) * k64, 0)
            for j in tf.range(m + 1):
                plain = tf.where(j == 0, head, tf.where(j < m, k64 - 1, tail))
                sums = run_steps(iterator, plain, sums)
                if j < m:
                    if before_periodic is not None:
                        before_periodic()
                    metrics, sums = one_step(iterator, sums)
                    writers.scalars_in_graph(global_step, periodic(metrics))
        return outputs(sums)

    @tf.function
    def inspect(iterator):
        zero = tf.constant(0.0)
        batch = next(iterator)
        # A cadence step: the same snapshot and instruments as in the loop.
        measured = (global_step + 1) % max(k, 1) == 0
        if k and before_periodic is not None:
            if measured:
                before_periodic()
        before = [tf.identity(v) for v in variables]
        metrics, sums = step_on(batch, (zero, zero, zero, zero, zero),
                                step_fn=inspect_step or train_step)
        if k:
            if measured:
                writers.scalars_in_graph(global_step, periodic(metrics))
        return {**outputs(sums), "image": metrics["image"], "label": metrics["label"],
                "phase": metrics["phase"], "logits": metrics["logits"],
                "example_loss": metrics["example_loss"], "grad_norms": metrics["grad_norms"],
                "update": [v - b for v, b in zip(variables, before)]}

    if variables is not None:
        train_loop.inspect = inspect
    return train_loop


def make_periodic_writer(periodic, global_step: tf.Variable, num_variables: int):
    """Compiles `write_now()`: `periodic` written at the current step, outside the loop.

    Used at step 0, before any update: the gradient norms are then given as zero.
    """
    zeros = tf.zeros([num_variables])

    @tf.function
    def write_now():
        writers.scalars_in_graph(global_step, periodic({"grad_norms": zeros}))

    return write_now
