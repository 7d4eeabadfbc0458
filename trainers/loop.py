"""The compiled loop: K training steps in one `tf.function` call, logging every step.

Running many steps per call keeps the host out of the way (one Python round trip
per K steps) while every step still writes its own scalars, from inside the
graph, at its own global step, and periodic instruments (the held-out probe,
weight drift) still run at their exact cadence.
"""

import tensorflow as tf

from trainers import writers

# A step's row of per-step values, kept in the graph until the call's steps are done.
RECORD = ("loss", "accuracy", "phase", "grad_norm", "count")
LOGGED = {"loss": "train/loss", "accuracy": "train/accuracy", "phase": "train/phase",
          "grad_norm": "train/grad_norm"}


def make_train_loop(train_step, global_step: tf.Variable, *, log_every_step: bool = True,
                    every_n_steps: int = 0, periodic=None, before_periodic=None,
                    variables=None, inspect_step=None):
    """Compiles `train_loop(iterator, num_steps) -> sums over those steps`.

    Args:
      train_step: `batch -> metrics` (see `steps.make_train_step`).
      global_step: int64 variable, the number of updates applied so far; a call adds
        the steps it ran when they are done, and never resets it.
      log_every_step: write `train/loss`, `train/accuracy`, `train/phase` and
        `train/grad_norm` at every step (decided once, when the loop is traced). The
        rows are kept in the graph and written, each at its own step, when the
        call's steps are done: one event per step, none on the steps' critical path.
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
    # Non-finite guard: the first step whose loss (0) or gradient (1) is not finite is
    # remembered here and returned; the host stops after the call.
    first_bad = tf.Variable(-1, dtype=tf.int64, trainable=False, name="first_bad_step")
    bad_kind = tf.Variable(-1, dtype=tf.int64, trainable=False, name="bad_kind")

    def step_on(batch, records, i, step_fn=train_step):
        """One step; its `RECORD` row goes to `records[i]` (a TensorArray)."""
        metrics = step_fn(batch)
        row = tf.stack([tf.cast(metrics[key], tf.float32) for key in RECORD])
        return metrics, records.write(i, row), i + 1

    def plain(iterator, n, records, i):
        """`n` steps without instruments."""
        for _ in tf.range(n):
            _, records, i = step_on(next(iterator), records, i)
        return records, i

    def measured(iterator, g, records, i):
        """A cadence step: snapshot, step, instruments written at the new global step."""
        if before_periodic is not None:
            before_periodic()
        metrics, records, i = step_on(next(iterator), records, i)
        writers.scalars_in_graph(g + tf.cast(i, tf.int64), periodic(metrics))
        return records, i

    def finish(g, rows):
        """After the steps: the global step, per-step scalars, the guard, the sums."""
        n = tf.shape(rows, out_type=tf.int64)[0]
        global_step.assign_add(n)
        if log_every_step:  # Written at the global step before each update, as counted.
            writers.scalar_rows_in_graph(g, [LOGGED[key] for key in RECORD[:4]], rows[:, :4])
        loss, accuracy, _, grad_norm, count = tf.unstack(rows, num=len(RECORD), axis=1)
        loss_ok = tf.math.is_finite(loss)
        bad = tf.logical_not(tf.logical_and(loss_ok, tf.math.is_finite(grad_norm)))
        first = tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int64)
        new_bad = tf.logical_and(first_bad < 0, tf.reduce_any(bad))
        first_bad.assign(tf.where(new_bad, g + first, first_bad))
        bad_kind.assign(tf.where(new_bad, tf.where(tf.gather(loss_ok, first),
                                                   tf.constant(1, tf.int64), 0), bad_kind))
        return {"loss_sum": tf.reduce_sum(loss * count),
                "correct": tf.reduce_sum(accuracy * count), "count": tf.reduce_sum(count),
                "loss": _last(loss), "accuracy": _last(accuracy),
                "first_bad_step": first_bad.read_value(), "bad_kind": bad_kind.read_value()}

    @tf.function
    def train_loop(iterator, num_steps):
        g = global_step.read_value()
        records = tf.TensorArray(tf.float32, size=tf.cast(num_steps, tf.int32),
                                 element_shape=[len(RECORD)])
        i = tf.constant(0)
        if k == 0:
            records, i = plain(iterator, num_steps, records, i)
        else:
            # The cadence points in (g, g + n] are found by arithmetic: `head` plain
            # steps, then `m` measured steps each followed by k - 1 plain ones (the
            # last by the `tail`). No conditional inside the loop: a branch holding
            # the step would run as a separate function call each time.
            k64 = tf.constant(k, tf.int64)
            first = g + k64 - g % k64  # the next multiple of k after g
            m = tf.maximum(tf.constant(0, tf.int64), (g + num_steps - first) // k64 + 1)
            head = tf.minimum(num_steps, first - 1 - g)
            tail = num_steps - head - tf.where(m > 0, 1 + (m - 1) * k64, 0)
            records, i = plain(iterator, head, records, i)
            for _ in tf.range(m - 1):
                records, i = measured(iterator, g, records, i)
                records, i = plain(iterator, k64 - 1, records, i)
            for _ in tf.range(tf.minimum(m, 1)):  # The last cadence point, if any.
                records, i = measured(iterator, g, records, i)
            records, i = plain(iterator, tail, records, i)
        return finish(g, records.stack())

    @tf.function
    def inspect(iterator):
        g = global_step.read_value()
        records = tf.TensorArray(tf.float32, size=1, element_shape=[len(RECORD)])
        batch = next(iterator)
        # A cadence step: the same snapshot and instruments as in the loop.
        is_measured = (g + 1) % max(k, 1) == 0
        if k and before_periodic is not None:
            if is_measured:
                before_periodic()
        before = [tf.identity(v) for v in variables]
        metrics, records, _ = step_on(batch, records, 0, step_fn=inspect_step or train_step)
        if k:
            if is_measured:
                writers.scalars_in_graph(g + 1, periodic(metrics))
        return {**finish(g, records.stack()), "image": metrics["image"],
                "label": metrics["label"], "phase": metrics["phase"],
                "logits": metrics["logits"], "example_loss": metrics["example_loss"],
                "grad_norms": metrics["grad_norms"],
                "update": [v - b for v, b in zip(variables, before)]}

    if variables is not None:
        train_loop.inspect = inspect
    return train_loop


def _last(values):
    return tf.concat([[0.0], values], axis=0)[-1]  # 0 after no steps


def make_periodic_writer(periodic, global_step: tf.Variable, num_variables: int):
    """Compiles `write_now()`: `periodic` written at the current step, outside the loop.

    Used at step 0, before any update: the gradient norms are then given as zero.
    """
    zeros = tf.zeros([num_variables])

    @tf.function
    def write_now():
        writers.scalars_in_graph(global_step, periodic({"grad_norms": zeros}))

    return write_now
