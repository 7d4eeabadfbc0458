"""One training step and one evaluation step: tensors in, a dict of tensors out.

No printing, numpy or file I/O here; the loop around a step decides what to log.
"""

import tensorflow as tf

from tapeloop.trainers import optimizers


def cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-example softmax cross-entropy from logits (stable: no explicit softmax)."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def correct_predictions(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """1.0 where the arg-max logit is the label, else 0.0 (float32, per example)."""
    return tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), labels), tf.float32)


def split_batch(images: tf.Tensor, labels: tf.Tensor, parts: int) -> list:
    """Cuts a batch into `parts` near-equal (images, labels) pieces (some may be empty)."""
    n = tf.size(labels)
    sizes = tf.stack([(n + parts - 1 - i) // parts for i in range(parts)])
    return list(zip(tf.split(images, sizes, num=parts), tf.split(labels, sizes, num=parts)))


def make_train_step(model: tf.keras.Model, optimizer: tf.keras.optimizers.Optimizer, *,
                    batch_splits: int = 1, distributed: bool = False):
    """Returns `train_step(batch) -> metrics` that updates `model` once.

    Metrics: `loss` and `accuracy` of this batch alone (not a running mean),
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

    def loss_and_grads(images, labels, total):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            example_loss = cross_entropy(labels, logits)
            loss = tf.reduce_sum(example_loss) / total
        return logits, example_loss, loss, tape.gradient(loss, variables)

    def train_step(batch):
        images, labels = batch["image"], batch["label"]
        count = tf.cast(tf.size(labels), tf.float32)
        total = (tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, count)
                 if distributed else count)
        if batch_splits == 1:
            logits, example_loss, loss, grads = loss_and_grads(images, labels, total)
        else:
            parts = [loss_and_grads(x, y, total)
                     for x, y in split_batch(images, labels, batch_splits)]
            logits = tf.concat([p[0] for p in parts], axis=0)
            example_loss = tf.concat([p[1] for p in parts], axis=0)
            loss = tf.add_n([p[2] for p in parts])
            grads = [tf.add_n(list(g)) for g in zip(*(p[3] for p in parts))]
        if distributed:
            optimizer.apply_gradients(zip(grads, variables))
            grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                                   grads)
        else:
            apply_gradients(grads)
        grad_norms = tf.stack([tf.norm(g) for g in grads])
        correct = correct_predictions(labels, logits)
        return {"loss": loss, "accuracy": tf.reduce_mean(correct), "correct": tf.reduce_sum(correct),
                "count": count, "phase": batch["phase"], "grad_norms": grad_norms,
                "grad_norm": tf.sqrt(tf.reduce_sum(tf.square(grad_norms))),
                "logits": logits, "example_loss": example_loss, "image": images,
                "label": labels}

    return train_step


def make_eval_step(model, num_classes: int, *, batch_splits: int = 1):
    """Returns `eval_step(images, labels) -> per-class sums` (dropout off).

    `model`: a Keras model, or any `forward(images, training=False) -> logits`.

    The result holds, per class, `loss_sum` (summed cross-entropy), `correct`
    (number classified right) and `count` (number of examples), so batches add up
    exactly and any grouping of classes can be derived afterwards. With
    `batch_splits` > 1 the parts are evaluated concurrently on different cores.
    """
    if batch_splits < 1:
        raise ValueError(f"batch_splits ({batch_splits}) must be a positive integer")

    def sums(images, labels):
        logits = model(images, training=False)
        correct = correct_predictions(labels, logits)

        def per_class(values):
            return tf.math.unsorted_segment_sum(values, labels, num_classes)

        return {"loss_sum": per_class(cross_entropy(labels, logits)),
                "correct": per_class(correct),
                "count": per_class(tf.ones_like(correct))}

    def eval_step(images, labels):
        if batch_splits == 1:
            return sums(images, labels)
        parts = [sums(x, y) for x, y in split_batch(images, labels, batch_splits)]
        return {k: tf.add_n([p[k] for p in parts]) for k in parts[0]}

    return eval_step
