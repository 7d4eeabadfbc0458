"""Held-out evaluation: overall and per-class loss and accuracy of a fixed set."""

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

from tapeloop.trainers.engine import distribute, steps


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Loss and accuracy of one evaluation, overall and per class."""

    loss: float  # mean cross-entropy over all examples
    accuracy: float  # fraction classified right over all examples
    class_loss: np.ndarray  # (num_classes,) mean loss per class; nan where a class is absent
    class_accuracy: np.ndarray  # (num_classes,) accuracy per class; nan where absent
    class_count: np.ndarray  # (num_classes,) examples per class

    def scalars(self, prefix: str) -> dict[str, float]:
        """`{prefix/loss, prefix/accuracy}` for a summary writer."""
        return {f"{prefix}/loss": self.loss, f"{prefix}/accuracy": self.accuracy}


def make_evaluator(model, *, num_classes: int, input_dim: int, batch_size: int = 1000,
                   batch_splits: int = 1, strategy=None, objective=None) -> "Evaluator":
    """Returns `evaluate(images, labels) -> EvalResult`, compiled once for any set size.

    `model`: a Keras model or `forward(rows, training=False) -> outputs` taking flat
    rows of `input_dim` values; `objective`: its per-example loss (`losses.Objective`).

    `batch_splits` > 1 evaluates parts of each batch concurrently on different cores.
    Under a tf.distribute `strategy`, every replica evaluates its share of each batch
    and the sums are reduced across replicas.

    Raises:
      ValueError: if `batch_size` is not positive.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size ({batch_size}) must be a positive integer")
    eval_step = tf.function(
        distribute.sum_over_replicas(
            strategy, steps.make_eval_step(model, num_classes, batch_splits=batch_splits,
                                         objective=objective)),
        input_signature=[tf.TensorSpec([None, input_dim], tf.float32),
                         tf.TensorSpec([None], tf.int32)], autograph=False)

    def evaluate(images: np.ndarray, labels: np.ndarray) -> EvalResult:
        if len(labels) == 0:
            raise ValueError("cannot evaluate an empty set")
        sums = None
        for start in range(0, len(labels), batch_size):
            out = eval_step(images[start:start + batch_size], labels[start:start + batch_size])
            out = {k: v.numpy().astype(np.float64) for k, v in out.items()}
            sums = out if sums is None else {k: sums[k] + out[k] for k in sums}
        return result_from_sums(sums["loss_sum"], sums["correct"], sums["count"])

    return Evaluator(evaluate, eval_step)


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """`evaluate(images, labels) -> EvalResult`; `eval_step`: its compiled per-batch sums."""
    evaluate: Callable[[np.ndarray, np.ndarray], EvalResult]
    eval_step: Callable

    def __call__(self, images: np.ndarray, labels: np.ndarray) -> EvalResult:
        return self.evaluate(images, labels)

    def tracing_count(self) -> int:
        """How often `eval_step` has been traced (1: never retraced)."""
        return self.eval_step.experimental_get_tracing_count()


def result_from_sums(loss_sum: np.ndarray, correct: np.ndarray,
                     count: np.ndarray) -> EvalResult:
    """Turns per-class sums into means; a class with no examples gets nan."""
    loss_sum, correct, count = (np.asarray(a, np.float64) for a in (loss_sum, correct, count))
    total = count.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return EvalResult(loss=float(loss_sum.sum() / total), accuracy=float(correct.sum() / total),
                          class_loss=loss_sum / count, class_accuracy=correct / count,
                          class_count=count.astype(np.int64))
