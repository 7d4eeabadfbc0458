"""The held-out probe: a fixed, balanced set of test examples evaluated per class."""

import numpy as np
import tensorflow as tf

from tapeloop.trainers.engine import distribute, model as model_lib, steps


def select_probe(images: np.ndarray, labels: np.ndarray, *, per_class: int,
                 num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Takes the first `per_class` examples of every class the test split has, in file order.

    The probe does not depend on the seed, so runs with different seeds are probed
    on the same examples. A class without test examples is not probed.

    Raises:
      ValueError: if a class has fewer than `per_class` examples, but some.
    """
    if per_class < 1:
        raise ValueError(f"probe_per_class ({per_class}) must be a positive integer")
    counts = np.bincount(labels, minlength=num_classes)
    short = np.flatnonzero((counts > 0) & (counts < per_class))
    if len(short):
        c = int(short[np.argmin(counts[short])])
        raise ValueError(f"probe_per_class ({per_class}) exceeds what the test split "
                         f"allows: class {c} has only {counts[c]} test examples")
    chosen = np.concatenate([np.flatnonzero(labels == c)[:per_class]
                             for c in np.flatnonzero(counts)])
    return images[chosen], labels[chosen]


def make_probe(model: tf.keras.Model, images: np.ndarray, labels: np.ndarray, *,
               num_classes: int, batch_splits: int = 1, strategy=None, forward=None,
               objective=None):
    """Returns `probe() -> {tag: tensor}`: overall and per-class accuracy and loss.

    Tags: `probe/accuracy`, `probe/loss`, `probe/accuracy/class_C`, `probe/loss/class_C`.
    The probe set is held in the graph, so one call evaluates it with no input pipeline;
    its constant columns are folded into the first layer (`model.fold_constant_columns`:
    a fifth less work on MNIST); `batch_splits` > 1 evaluates its parts concurrently
    on different cores; under a tf.distribute `strategy` the replicas share it (call
    it in cross-replica context). `forward` (default `model`) takes the flat rows;
    `objective` is the per-example loss (`losses.Objective`).
    """
    images = np.asarray(images, np.float32).reshape(len(images), -1)
    # Folding needs a model that takes the flat rows themselves.
    folded = model_lib.fold_constant_columns(model, images) if forward in (None, model) else None
    forward = forward or model
    if folded is not None:
        forward, kept = folded
        images = images[:, kept]
    probed = sorted(set(int(c) for c in labels))  # a class without test examples is not
    images = tf.constant(images)
    labels = tf.constant(labels, tf.int32)
    eval_step = distribute.sum_over_replicas(
        strategy, steps.make_eval_step(forward, num_classes, batch_splits=batch_splits,
                                       objective=objective))

    def probe():
        sums = eval_step(images, labels)
        count = sums["count"]
        out = {"probe/accuracy": tf.reduce_sum(sums["correct"]) / tf.reduce_sum(count),
               "probe/loss": tf.reduce_sum(sums["loss_sum"]) / tf.reduce_sum(count)}
        accuracy = sums["correct"] / count
        loss = sums["loss_sum"] / count
        for c in probed:
            out[f"probe/accuracy/class_{c}"] = accuracy[c]
            out[f"probe/loss/class_{c}"] = loss[c]
        return out

    return probe
