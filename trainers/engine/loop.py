"""The compiled loop: K training steps in one `tf.function` call, logging every step.

Running many steps per call keeps the host out of the way (one Python round trip
per K steps) while every step still writes its own scalars, from inside the
graph, at its own global step, and periodic instruments (the held-out probe,
weight drift) still run at their exact cadence.
"""

import dataclasses
from typing import Callable

import tensorflow as tf

from tapeloop.trainers.engine import internals, steps
from tapeloop.trainers.records import writers

# A step's row of per-step values, kept in the graph until the call's steps are done.
RECORD = ("loss", "accuracy", "phase", "grad_norm", "count", "regularization_loss")
LOGGED = {"loss": "train/loss", "accuracy": "train/accuracy", "phase": "train/phase",
          "grad_norm": "train/grad_norm"}
# Logged too when the model or the step regularizes (`log_regularization`).
REGULARIZATION_TAG = "train/regularization_loss"


def make_train_loop(train_step, global_step: tf.Variable, *, log_every_step: bool = True,
                    every_n_steps: int = 0, periodic=None, before_periodic=None,
                    variables=None, inspect_step=None, lower_conditionals: bool = False,
                    log_regularization: bool = False, jit_compile: bool = False,
                    jit_batch_rows: int = 0):
    """Compiles `train_loop(iterator, num_steps) -> sums over those steps`.

    Args:
      train_step: `batch -> steps.StepMetrics` (see `steps.make_train_step`).
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
      lower_conditionals: let `tf.cond` lower the cadence conditionals to
        Switch/Merge nodes (see `_when`). Needed when the variables live on several
        devices (a tf.distribute strategy: one `If` op cannot take resource inputs
        from two), and wanted under check_numerics (a NaN entering a branch is then
        reported at the op that made it, not at the branch function's input).
      log_regularization: with `log_every_step`, also write `train/regularization_loss`.
      jit_compile: train on full batches (`jit_batch_rows` rows) in XLA
        (`tf.function(jit_compile=True)`), up to `JIT_BLOCK` steps per XLA program,
        compiled once per batch shape; a smaller batch (a class's last) trains in the
        plain graph. The call first takes its `num_steps` batches from the iterator.
        The instruments' values at cadence steps leave the XLA program as outputs and
        are written after it (summary ops cannot run inside XLA). XLA draws other
        random numbers than the plain graph's kernels and rounds differently: which
        path a step takes depends on its batch alone (see `_xla_call`).
      jit_batch_rows: the rows of a full batch (with `jit_compile`).

    Returns:
      A `TrainLoop`, called as a compiled function. Pass `num_steps` as an int64 tensor
      so that every call reuses one trace. It returns `loss_sum` and `correct`
      (example-weighted sums), `count` (examples seen), `loss`, `accuracy` of the last
      step, and `first_bad_step` (-1 while every loss and gradient was finite) with `bad_kind`
      (0: the loss, 1: a gradient).
      `train_loop.tracing_counts()` tells how often it was traced.
      `train_loop.inspect(iterator)` (compiled separately, traced on first use) runs
      exactly one step the way the loop would (same logging, cadence and guard) and
      also returns that step's batch (`image`, `label`, `phase`), `logits`,
      `example_loss`, `grad_norms` and the applied `update` (a list: each variable
      after the step minus before).
    """
    if every_n_steps < 0:
        raise ValueError(f"every_n_steps ({every_n_steps}) must be >= 0")
    k = every_n_steps if periodic is not None else 0
    logged_tags = dict(LOGGED, **({"regularization_loss": REGULARIZATION_TAG}
                                  if log_regularization else {}))
    # Non-finite guard: the first step whose loss (0) or gradient (1) is not finite is
    # remembered here and returned; the host stops after the call.
    first_bad = tf.Variable(-1, dtype=tf.int64, trainable=False, name="first_bad_step")
    bad_kind = tf.Variable(-1, dtype=tf.int64, trainable=False, name="bad_kind")

    def step_at(batch, g, records, i, step_fn=train_step, just_before=None):
        """Step `i` of a call that began at global step `g`; its row goes to `records[i]`.

        A step that brings the global step to a multiple of k is measured: the
        snapshot right before it, the instruments after it. The conditionals hold
        only those, not the step (see `_when`).
        """
        after, measured = before_step(g, i)
        if just_before is not None:
            just_before()
        metrics = step_fn(batch)
        records = records.write(i, row_of(metrics))
        if k:
            _when(measured, lambda: writers.scalars_in_graph(after, periodic(metrics)),
                  lower=lower_conditionals)
        return metrics, records

    def before_step(g, i):
        """Step `i` of a call from global step `g`: the global step after it, whether that
        is a cadence step (None without instruments), and the snapshot before one."""
        after = g + tf.cast(i, tf.int64) + 1
        measured = tf.equal(after % k, 0) if k else None
        if k and before_periodic is not None:
            _when(measured, before_periodic, lower=lower_conditionals)
        return after, measured

    def row_of(metrics):
        """A step's row of `RECORD` values (its metrics checked at trace time)."""
        steps.check_metrics(metrics)
        return tf.stack([tf.cast(metrics[key], tf.float32) for key in RECORD])

    def finish(g, rows):
        """After the steps: the global step, per-step scalars, the guard, the sums."""
        n = tf.shape(rows, out_type=tf.int64)[0]
        global_step.assign_add(n)
        if log_every_step:  # Written at the global step before each update, as counted.
            logged = [i for i, key in enumerate(RECORD) if key in logged_tags]
            writers.scalar_rows_in_graph(g, [logged_tags[RECORD[i]] for i in logged],
                                         tf.gather(rows, logged, axis=1))
        column = dict(zip(RECORD, tf.unstack(rows, num=len(RECORD), axis=1)))
        loss, accuracy, grad_norm, count = (column[key] for key in
                                            ("loss", "accuracy", "grad_norm", "count"))
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

    def new_records(n):
        return tf.TensorArray(tf.float32, size=n, element_shape=[len(RECORD)])

    @tf.function(autograph=False)  # see steps.user_code
    def train_loop(iterator, num_steps):
        g = global_step.read_value()
        n = tf.cast(num_steps, tf.int32)
        if jit_compile:
            return finish(g, _xla_call(iterator, g, n))

        def body(i, records):
            return i + 1, step_at(next(iterator), g, records, i)[1]

        _, records = tf.while_loop(lambda i, _: i < n, body, (tf.constant(0), new_records(n)))
        return finish(g, records.stack())

    periodic_tags = []  # the instruments' tags, as their values leave the XLA program

    @tf.function(jit_compile=True, autograph=False)
    def xla_steps(g, m, batches):
        """The first `m` of `JIT_BLOCK` stacked batches' steps, as one XLA program (compiled
        once per batch shape): their rows, and the instruments' values at cadence steps."""
        def measure(metrics):
            values = periodic(metrics)
            periodic_tags[:] = list(values)
            return tf.stack([tf.cast(v, tf.float32) for v in values.values()])

        def body(i, records, measured_rows):
            _, measured = before_step(g, i)
            metrics = train_step(tf.nest.map_structure(lambda t: t[i], batches))
            records = records.write(i, row_of(metrics))
            if k:
                width = []

                def take():
                    row = measure(metrics)
                    width.append(row.shape[0])
                    return row

                measured_rows = measured_rows.write(
                    i, tf.cond(measured, take, lambda: tf.zeros([width[0]])))
            return i + 1, records, measured_rows

        _, records, measured_rows = tf.while_loop(
            lambda i, *_: i < m, body,
            (tf.constant(0), new_records(JIT_BLOCK),
             tf.TensorArray(tf.float32, size=JIT_BLOCK if k else 0, infer_shape=False)))
        return records.stack(), (measured_rows.stack() if k else tf.zeros([0, 0]))

    def _xla_call(iterator, g, n):
        """The call's steps: each full batch's in XLA, the others' in the plain graph.

        A step's arithmetic depends only on its own batch (full or not), never on
        where calls begin or end, so steps_per_loop and the actions' cadences leave
        the results alone, and a resumed run continues bit-exactly. Full batches are
        taken `JIT_BLOCK` at a time into one XLA program that runs as many as are
        there (the rest of its input repeats the last of them, unused).
        """
        spec = iterator.element_spec
        flat_spec = tf.nest.flatten(spec)
        lead = next(i for i, s in enumerate(flat_spec) if s.shape.rank)  # a batched tensor
        lists = [tf.TensorArray(s.dtype, size=n, infer_shape=False, element_shape=s.shape)
                 for s in flat_spec]

        def take(i, full, *lists):
            flat = tf.nest.flatten(next(iterator))
            full = full.write(i, tf.equal(tf.shape(flat[lead])[0], jit_batch_rows))
            return (i + 1, full, *(a.write(i, t) for a, t in zip(lists, flat)))

        _, full, *lists = tf.while_loop(lambda i, *_: i < n, take,
                                        (tf.constant(0), tf.TensorArray(tf.bool, size=n),
                                         *lists))
        full = full.stack()

        def in_xla(i, records):
            ahead = tf.concat([full[i:i + JIT_BLOCK], [False]], 0)
            m = tf.argmin(tf.cast(ahead, tf.int32), output_type=tf.int32)  # the full ones
            taken = tf.minimum(i + tf.range(JIT_BLOCK), i + m - 1)
            first = g + tf.cast(i, tf.int64)
            rows, measured_rows = xla_steps(
                first, m, tf.nest.pack_sequence_as(spec, [a.gather(taken) for a in lists]))
            if k:
                after = first + tf.range(1, tf.cast(m, tf.int64) + 1)
                at = tf.where(tf.equal(after % k, 0))[:, 0]
                writers.scalar_rows_at_steps(tf.gather(after, at), periodic_tags,
                                             tf.gather(measured_rows, at))
            return i + m, records.scatter(i + tf.range(m), rows[:m])

        def plain(i, records):
            batch = tf.nest.pack_sequence_as(spec, [a.read(i) for a in lists])
            return i + 1, step_at(batch, g, records, i)[1]

        _, records = tf.while_loop(
            lambda i, _: i < n,
            lambda i, records: tf.cond(full[i], lambda: in_xla(i, records),
                                       lambda: plain(i, records)),
            (tf.constant(0), new_records(n)))
        return records.stack()

    @tf.function(autograph=False)
    def inspect(iterator):
        g = global_step.read_value()
        before = []  # the weights right before the step (after any snapshot)

        def snapshot():
            before.extend(tf.identity(v) for v in variables)

        metrics, records = step_at(next(iterator), g, new_records(1), 0,
                                   step_fn=inspect_step or train_step, just_before=snapshot)
        return {**finish(g, records.stack()), "image": metrics["image"],
                "label": metrics["label"], "phase": metrics["phase"],
                "logits": metrics["logits"], "example_loss": metrics["example_loss"],
                "grad_norms": metrics["grad_norms"],
                "update": [v - b for v, b in zip(variables, before)]}

    return TrainLoop(train_loop, inspect if variables is not None else None)


@dataclasses.dataclass(frozen=True)
class TrainLoop:
    """The compiled loop: `train_loop(iterator, num_steps) -> sums` (`run`), and
    `inspect(iterator)`, one step run as the loop runs it that returns what it saw
    (None when `make_train_loop` was given no `variables`)."""
    run: Callable
    inspect: Callable | None = None

    def __call__(self, iterator, num_steps):
        return self.run(iterator, num_steps)

    def tracing_counts(self) -> dict[str, int]:
        """How often each compiled function has been traced (1: never retraced);
        `inspect` only once it has run."""
        counts = {"train_loop": self.run.experimental_get_tracing_count()}
        if self.inspect is not None and self.inspect.experimental_get_tracing_count():
            counts["inspect"] = self.inspect.experimental_get_tracing_count()
        return counts


def _when(predicate, fn, *, lower: bool = False) -> None:
    """`if predicate: fn()` in-graph, as one `If` op that calls `fn` as a function.

    `tf.cond` marks its `If` ops for lowering to Switch/Merge nodes, and then every
    step that does not take the branch still passes each of the branch's nodes (the
    probe's and the drift's: hundreds) a dead value (BUILD.md, Speed, has its cost).
    Not lowered, an untaken branch is one
    call of an empty function (`internals.keep_unlowered`; with internals off, lowered).
    The branch must not be differentiated. `lower`: leave it to `tf.cond` (lowered).
    """
    if tf.executing_eagerly():  # --run_eagerly
        if predicate:
            fn()
        return
    graph = tf.compat.v1.get_default_graph()
    first = len(graph.get_operations())

    def then():
        fn()
        return tf.constant(True)

    tf.cond(predicate, then, lambda: tf.constant(False))
    if lower:
        return
    ifs = [op for op in graph.get_operations()[first:] if op.type in ("If", "StatelessIf")]
    if len(ifs) != 1:
        raise AssertionError(f"expected one If op from tf.cond, found {len(ifs)}")
    internals.keep_unlowered(ifs[0])  # off: left to tf.cond (lowered)

JIT_BLOCK = 10  # full batches per XLA program (--jit_compile)


def _last(values):
    return tf.concat([[0.0], values], axis=0)[-1]  # 0 after no steps


def make_periodic_writer(periodic, global_step: tf.Variable, num_variables: int):
    """Compiles `write_now()`: `periodic` written at the current step, outside the loop.

    Used at step 0, before any update: the gradient norms are then given as zero.
    """
    zeros = tf.zeros([num_variables])

    @tf.function(autograph=False)
    def write_now():
        writers.scalars_in_graph(global_step, periodic({"grad_norms": zeros}))

    return write_now
