"""One training step and one evaluation step: tensors in, a dict of tensors out.

No printing, numpy or file I/O here; the loop around a step decides what to log.
The contract between a training step and the loop is `StepMetrics`: a custom step
(`train_and_evaluate(train_step=...)`, replacing `make_train_step`) returns one, and
every instrument keeps working.
"""

import dataclasses
from pathlib import Path
from typing import Callable, TypedDict

import tensorflow as tf

from tapeloop.trainers.engine import losses, optimizers
from tapeloop.trainers.records.run_dirs import SetupError, error_line

MASKED = -1e9  # the logit a masked output gets: no probability, no gradient


def user_code(fn):
    """`fn` as tapeloop calls it inside its compiled functions.

    tapeloop compiles its own functions with AutoGraph off (`tf.function(autograph=False)`):
    its graph code has no Python control flow on tensors, and converting it was most of
    the tracing before the first step. Code of yours that enters a compiled function (a
    step, a remedy's seams, an objective, a penalty) is converted as a `tf.function`
    would convert it, so an `if` or `for` on tensors in it keeps working.
    Python errors raised in it (a missing batch key, a shape mismatch found while
    tracing) become one-line `SetupError`s naming the error, the function and where it is
    defined; TensorFlow's runtime errors pass unchanged.
    """
    if fn is None or getattr(fn, "__module__", "").startswith("tapeloop."):
        return fn

    def call(*args, **kwargs):
        return fn(*args, **kwargs)

    converted = tf.autograph.to_graph(call)

    def guarded(*args, **kwargs):
        try:
            return converted(*args, **kwargs)
        except (SetupError, tf.errors.OpError):
            raise
        except Exception as e:  # pylint: disable=broad-except  # any error of the user's code
            batch = (f"; its batch holds {', '.join(sorted(args[0]))}"
                     if args and isinstance(args[0], dict) else "")
            raise SetupError(f"{_where(fn)} raised {type(e).__name__}: {error_line(e)} while "
                             f"tapeloop compiled it{batch}") from e

    return guarded


def _where(fn) -> str:
    """`file.py:qualname (line N)` of a user's function, method or callable object."""
    target = getattr(fn, "__func__", fn)
    code = getattr(target, "__code__", None)
    if code is None:  # a callable object: its __call__
        target = type(fn).__call__
        code = getattr(target, "__code__", None)
    name = getattr(target, "__qualname__", type(fn).__name__)
    return (f"{Path(code.co_filename).name}:{name} (line {code.co_firstlineno})"
            if code is not None else name)


def masked(outputs: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """`outputs` with every output where `mask` (bool, broadcast to them) is False at
    `MASKED`: a task-IL scenario scores an example on its task's outputs only."""
    return tf.where(mask, outputs, MASKED)


class _InspectedMetrics(TypedDict, total=False):
    """For --inspect_steps only (a compiled loop that ignores them computes nothing extra)."""

    logits: tf.Tensor  # (B, classes): the model's outputs
    example_loss: tf.Tensor  # (B,): each example's loss
    image: tf.Tensor  # (B, D): the batch trained on, as flat rows
    label: tf.Tensor  # (B,) int32


class StepMetrics(_InspectedMetrics):
    """What one training step returns (tensors), read by the loop and the instruments.

    `loss`, `accuracy`, `regularization_loss` are of this batch alone, computed with
    the weights before the update; `loss` is what was minimised (the examples' mean
    loss plus `regularization_loss`).

    Attributes:
      loss: float32 scalar.
      accuracy: float32 scalar: the fraction of the batch classified right.
      correct: float32 scalar: the number classified right.
      count: float32 scalar: the examples in the batch.
      phase: int32 scalar: the batch's phase (the `phase` of the batch dict).
      grad_norms: float32 (num_trainable_variables,): each gradient's L2 norm.
      grad_norm: float32 scalar: the gradient's global norm.
      regularization_loss: float32 scalar: `model.losses` and the penalty (0 without).
    """

    loss: tf.Tensor  # float32 scalar
    accuracy: tf.Tensor  # float32 scalar: fraction of the batch classified right
    correct: tf.Tensor  # float32 scalar: number classified right
    count: tf.Tensor  # float32 scalar: examples in the batch
    phase: tf.Tensor  # int32 scalar: the batch's phase (the `phase` of the batch dict)
    grad_norms: tf.Tensor  # float32 (num_trainable_variables,): each gradient's L2 norm
    grad_norm: tf.Tensor  # float32 scalar: the gradient's global norm
    regularization_loss: tf.Tensor  # float32 scalar: model.losses + the step's penalty


REQUIRED_METRICS = tuple(sorted(StepMetrics.__required_keys__))


def check_metrics(metrics) -> None:
    """Raises SetupError naming what a custom step's output lacks (at trace time)."""
    if not isinstance(metrics, dict):
        raise SetupError(f"a train step must return a dict of StepMetrics, not "
                        f"{type(metrics).__name__}")
    missing = [k for k in REQUIRED_METRICS if k not in metrics]
    if missing:
        raise SetupError(f"the train step's output lacks {', '.join(missing)} "
                        f"(StepMetrics needs {', '.join(REQUIRED_METRICS)})")


def correct_predictions(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """1.0 where the arg-max logit is the label, else 0.0 (float32, per example)."""
    return tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), labels), tf.float32)


def split_batch(images: tf.Tensor, labels: tf.Tensor, parts: int, extra=()) -> list:
    """Cuts a batch into `parts` near-equal pieces: `(images, labels, size, weight)` each.

    A piece is never empty, since some kernels (a convolution's gradient among them)
    fail or abort on a batch of zero examples: a batch smaller than `parts` (the end
    of a short class block) gives its pieces past the last example one copy of that
    example, with `weight` 0 (1 for every real piece) and `size` 0, the number of
    real examples it holds. Callers scale the piece's sums by `weight` and keep its
    first `size` rows; a full batch is cut exactly as by `tf.split`. `extra`: more
    per-example tensors (tasks, weights), cut alike and appended to each piece.
    """
    n = tf.size(labels)
    sizes = [(n + parts - 1 - i) // parts for i in range(parts)]
    out, start = [], tf.constant(0)
    for size in sizes:
        rows = tf.minimum(start + tf.range(tf.maximum(size, 1)), n - 1)
        out.append((tf.gather(images, rows), tf.gather(labels, rows), size,
                    tf.cast(size > 0, tf.float32), *(tf.gather(e, rows) for e in extra)))
        start += size
    return out


def make_train_step(model: tf.keras.Model, optimizer: tf.keras.optimizers.Optimizer, *,
                    batch_splits: int = 1, distributed: bool = False, forward=None,
                    objective: losses.Objective | None = None, penalty=None,
                    output_mask=None, remedies=()):
    """Returns `train_step(batch) -> StepMetrics` (a `TrainStep`) that updates `model` once.

    Args:
      model: the model whose trainable variables are updated; `model.losses` (weight and
        activity regularizers) are added to the loss.
      optimizer: a Keras optimizer (Adam and SGD run as fused kernels when plain).
      batch_splits, distributed: see below.
      forward: `forward(rows, training) -> outputs` (default `model`; see
        `model.flat_forward`).
      objective: the per-example loss (default: softmax cross-entropy on logits).
      penalty: `penalty() -> scalar` added to the loss (computed in the step, under the
        tape: e.g. an L2 pull toward reference weights); logged with `model.losses` as
        `regularization_loss`.
      output_mask: (tasks, outputs) bool, a continual-learning scenario's (task-IL):
        each example (its task in the batch's `task`) is scored on its task's outputs
        only, the other logits set to `MASKED`. None: every output.
      remedies: `trainers.extend.remedies` objects, entering at their seams: `mix` makes the
        batch trained on (which may carry per-example `weight`s summing to one: the
        loss is then the weighted sum), `penalty` and `example_loss` add to the loss,
        `transform_gradients` changes the update, `after_update` runs after it.

    Metrics (`StepMetrics`): `loss` and `accuracy` of this batch alone (not a running mean),
    computed with the weights before the update; `count` (batch size); `phase`;
    `grad_norms`, the L2 norm of each trainable variable's gradient; `grad_norm`,
    the gradient's global norm; `image`, `label` (the batch trained on), `logits` and
    `example_loss` per example (for inspection; a compiled loop that ignores them
    computes nothing extra); `correct`, the number classified right.

    `distributed`: the step runs in a replica of a tf.distribute strategy on its
    share of the global batch (`distribute.run_train_step` calls it): the loss is
    divided by the global batch's size (all-reduced), Keras's `apply_gradients`
    all-reduces the gradients (the fused kernels are for one device), and the
    gradient norms are those of the summed, global gradient.

    With `batch_splits` > 1 the batch is cut into that many near-equal parts whose
    forward and backward passes are independent, so TensorFlow runs them on
    different cores at once; their summed losses and gradients are exactly the
    full batch's mean loss and gradient (each part sums its losses over the whole
    batch size). Only the dropout masks are drawn per part. The optimizer is built
    on the model's variables here if it is not yet: its slot variables must exist
    before tracing, or the first call would trace twice.

    Raises:
      ValueError: if `batch_splits` < 1.
    """
    if batch_splits < 1:
        raise ValueError(f"batch_splits ({batch_splits}) must be a positive integer")
    variables = model.trainable_variables
    optimizer.build(variables)
    apply_gradients = None if distributed else optimizers.apply_fn(optimizer, variables)
    forward = forward or model
    example_loss_fn = user_code((objective or losses.LOGITS).example_loss)
    mask = None if output_mask is None else tf.constant(output_mask, tf.bool)
    penalties = [user_code(p) for p in ([penalty] if penalty is not None else []) + [
        r.penalty for r in remedies if r.penalty is not None]]
    extra_losses = [user_code(r.example_loss) for r in remedies if r.example_loss is not None]
    transforms = [user_code(r.transform_gradients) for r in remedies
                  if r.transform_gradients is not None]
    after_update = [user_code(r.after_update) for r in remedies if r.after_update is not None]
    mixes = [user_code(r.mix) for r in remedies]
    regularized = bool(model.losses) or bool(penalties)

    def scored(outputs, tasks):
        """The outputs an example is scored on: the others masked (task-IL)."""
        return outputs if mask is None else masked(outputs, tf.gather(mask, tasks))

    def regularization():
        terms = list(model.losses) + [p() for p in penalties]
        return tf.add_n([tf.cast(t, tf.float32) for t in terms])

    def loss_and_grads(images, labels, total, first=True, weight=None, tasks=None,
                       example_weight=None):
        """The part's loss and gradient; the first part also carries the regularization.

        `weight`: 0 for a padding piece (`split_batch`), whose loss and gradient are 0.
        """
        with tf.GradientTape() as tape:
            outputs = forward(images, training=True)
            logits = scored(outputs, tasks)
            example_loss = example_loss_fn(labels, logits)
            for term in extra_losses:
                example_loss += term(images, tasks, outputs)
            loss = (tf.reduce_sum(example_loss) / total if example_weight is None
                    else tf.reduce_sum(example_loss * example_weight))
            if weight is not None:
                loss *= weight
            reg = tf.constant(0.0)
            if regularized and first:
                reg = regularization()
                if distributed:  # Each replica adds its share: the summed update holds it once.
                    reg /= tf.distribute.get_replica_context().num_replicas_in_sync
                loss += reg
        return logits, example_loss, loss, tape.gradient(loss, variables), reg

    def gradient_of(images, labels, tasks):
        """The gradient of these examples' mean loss (scored as in training; no penalty)."""
        with tf.GradientTape() as tape:
            example_loss = example_loss_fn(labels, scored(forward(images, training=True), tasks))
            count = tf.maximum(tf.cast(tf.size(labels), tf.float32), 1.0)
            loss = tf.reduce_sum(example_loss) / count
        return [tf.zeros_like(v) if g is None else g
                for g, v in zip(tape.gradient(loss, variables), variables)]

    def train_step(batch):
        for mix in mixes:
            batch = mix(batch)
        images, labels = batch["image"], batch["label"]
        extra = {k: batch[k] for k in ("task", "weight") if k in batch}
        count = tf.cast(tf.size(labels), tf.float32)
        total = (tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, count)
                 if distributed else count)
        if batch_splits == 1:
            logits, example_loss, loss, grads, reg = loss_and_grads(
                images, labels, total, tasks=extra.get("task"),
                example_weight=extra.get("weight"))
        else:
            keys = tuple(extra)
            parts = []
            for i, (x, y, size, weight, *more) in enumerate(split_batch(
                    images, labels, batch_splits, tuple(extra[k] for k in keys))):
                more = dict(zip(keys, more))
                parts.append((size, loss_and_grads(x, y, total, first=i == 0, weight=weight,
                                                   tasks=more.get("task"),
                                                   example_weight=more.get("weight"))))
            logits = tf.concat([p[0][:size] for size, p in parts], axis=0)
            example_loss = tf.concat([p[1][:size] for size, p in parts], axis=0)
            loss = tf.add_n([p[2] for _, p in parts])
            grads = [tf.add_n(list(g)) for g in zip(*(p[3] for _, p in parts))]
            reg = parts[0][1][4]
        if distributed and transforms:  # a transform sees the global gradient
            context = tf.distribute.get_replica_context()
            grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
            for transform in transforms:
                grads = transform(grads, gradient_of)
            # Every replica holds the same global gradient; the update sums the replicas'.
            share = 1.0 / context.num_replicas_in_sync
            optimizer.apply_gradients(zip([g * share for g in grads], variables))
        elif distributed:
            optimizer.apply_gradients(zip(grads, variables))
            grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                                   grads)
        else:
            for transform in transforms:
                grads = transform(grads, gradient_of)
            apply_gradients(grads)
        for after in after_update:
            after(grads)
        grad_norms = tf.stack([tf.norm(g) for g in grads])
        correct = correct_predictions(labels, logits)
        return {"loss": loss, "accuracy": tf.reduce_mean(correct),
                "correct": tf.reduce_sum(correct),
                "count": count, "phase": batch["phase"], "grad_norms": grad_norms,
                "grad_norm": tf.sqrt(tf.reduce_sum(tf.square(grad_norms))),
                "regularization_loss": reg, "logits": logits, "example_loss": example_loss,
                "image": images, "label": labels}

    return TrainStep(train_step, regularized)


@dataclasses.dataclass(frozen=True)
class TrainStep:
    """`train_step(batch) -> StepMetrics`, tapeloop's own step (`make_train_step`).

    `regularized`: its loss has a regularization term (the model's losses, a penalty or
    a remedy's), so the loop logs `train/regularization_loss`. A step of your own is a
    plain function; the loop logs that tag for it.
    """
    step: Callable[[dict], StepMetrics]
    regularized: bool

    def __call__(self, batch: dict) -> StepMetrics:
        return self.step(batch)


def make_eval_step(model, num_classes: int, *, batch_splits: int = 1,
                   objective: losses.Objective | None = None):
    """Returns `eval_step(images, labels) -> per-class sums` (dropout off).

    `model`: a Keras model, or any `forward(images, training=False) -> outputs`.
    `objective`: the per-example loss (default: softmax cross-entropy on logits).

    The result holds, per class, `loss_sum` (summed cross-entropy), `correct`
    (number classified right) and `count` (number of examples), so batches add up
    exactly and any grouping of classes can be derived afterwards. With
    `batch_splits` > 1 the parts are evaluated concurrently on different cores.
    """
    if batch_splits < 1:
        raise ValueError(f"batch_splits ({batch_splits}) must be a positive integer")
    example_loss_fn = user_code((objective or losses.LOGITS).example_loss)

    def sums(images, labels):
        logits = model(images, training=False)
        correct = correct_predictions(labels, logits)

        def per_class(values):
            return tf.math.unsorted_segment_sum(values, labels, num_classes)

        return {"loss_sum": per_class(example_loss_fn(labels, logits)),
                "correct": per_class(correct),
                "count": per_class(tf.ones_like(correct))}

    def eval_step(images, labels):
        if batch_splits == 1:
            return sums(images, labels)
        parts = [(weight, sums(x, y))
                 for x, y, _, weight in split_batch(images, labels, batch_splits)]
        return {k: tf.add_n([weight * p[k] for weight, p in parts]) for k in parts[0][1]}

    return eval_step
