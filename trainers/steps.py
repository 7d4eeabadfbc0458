"""One training step and one evaluation step: tensors in, a dict of tensors out.

No printing, numpy or file I/O here; the loop around a step decides what to log.
"""

import tensorflow as tf


def cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-example softmax cross-entropy from logits (stable: no explicit softmax)."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def make_train_step(model: tf.keras.Model, optimizer: tf.keras.optimizers.Optimizer):
    """Returns `train_step(batch) -> metrics` that updates `model` once.

    Metrics: `loss` and `accuracy` of this batch alone (not a running mean),
    computed with the weights before the update; `count` (batch size); `phase`;
    `grad_norms` and `update_norms`, the L2 norm of each trainable variable's
    gradient and applied update; `grad_norm`, the gradient's global norm.
    """
    variables = model.trainable_variables

    def train_step(batch):
        images, labels = batch["image"], batch["label"]
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(cross_entropy(labels, logits))
        grads = tape.gradient(loss, variables)
        before = [tf.identity(v) for v in variables]  # read before the update (auto deps)
        optimizer.apply_gradients(zip(grads, variables))
        grad_norms = tf.stack([tf.norm(g) for g in grads])
        correct = tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), labels),
                          tf.float32)
        return {"loss": loss, "accuracy": tf.reduce_mean(correct),
                "count": tf.cast(tf.size(labels), tf.float32), "phase": batch["phase"],
                "grad_norms": grad_norms,
                "grad_norm": tf.sqrt(tf.reduce_sum(tf.square(grad_norms))),
                "update_norms": tf.stack([tf.norm(v - b) for v, b in zip(variables, before)])}

    return train_step


def make_eval_step(model: tf.keras.Model, num_classes: int):
    """Returns `eval_step(images, labels) -> per-class sums` (dropout off).

    The result holds, per class, `loss_sum` (summed cross-entropy), `correct`
    (number classified right) and `count` (number of examples), so batches add up
    exactly and any grouping of classes can be derived afterwards.
    """

    def eval_step(images, labels):
        logits = model(images, training=False)
        correct = tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), labels),
                          tf.float32)

        def per_class(values):
            return tf.math.unsorted_segment_sum(values, labels, num_classes)

        return {"loss_sum": per_class(cross_entropy(labels, logits)),
                "correct": per_class(correct),
                "count": per_class(tf.ones_like(correct))}

    return eval_step
