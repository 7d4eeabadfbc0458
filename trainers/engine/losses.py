"""What a model's outputs are scored with: a per-example loss from integer labels.

The default is softmax cross-entropy on logits. A model that ends in a softmax gives
probabilities, never treated as logits: it is scored with the cross-entropy of its
probabilities, as Keras's `categorical_crossentropy` does. A model compiled with
`compile(loss=...)` trains with that loss (the non-sparse cross-entropy of one-hot
targets is computed from the integer labels directly: the same value); a loss
passed to tapeloop wins over both.
"""

import dataclasses
from typing import Callable

import tensorflow as tf

from tapeloop.trainers.engine import model as model_lib

# Keras's clipping of probabilities before the log (keras.config.epsilon()).
_EPSILON = 1e-7


@dataclasses.dataclass(frozen=True)
class Objective:
    """A per-example loss: `example_loss(labels, outputs) -> (batch,) float32`."""

    example_loss: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    name: str  # for config.json and the log
    probabilities: bool  # the outputs are probabilities, not logits


def logits_cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-example softmax cross-entropy from logits (stable: no explicit softmax)."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def probabilities_cross_entropy(labels: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
    """Per-example cross-entropy of probabilities: -log p[label], as Keras computes it.

    Keras's `categorical_crossentropy(from_logits=False)`: rows are renormalised to sum
    to one and clipped to [eps, 1 - eps] before the log.
    """
    p = probabilities / tf.reduce_sum(probabilities, axis=-1, keepdims=True)
    p = tf.clip_by_value(p, _EPSILON, 1.0 - _EPSILON)
    return -tf.math.log(tf.gather(p, labels, axis=1, batch_dims=1))


LOGITS = Objective(logits_cross_entropy, "softmax cross-entropy", False)  # the default
PROBABILITIES = Objective(probabilities_cross_entropy, "cross-entropy of probabilities", True)


def make_objective(model: tf.keras.Model, loss=None) -> Objective:
    """The objective a run trains `model` with.

    Args:
      model: the model; its outputs are probabilities when it ends in a softmax.
      loss: None (the compiled loss, else cross-entropy), or `loss(labels, outputs)
        -> per-example losses` taking integer labels.

    Raises:
      ValueError: a compiled loss tapeloop cannot score per example with integer labels,
        or one that contradicts the model's outputs (from_logits on a softmax output).
    """
    probabilities = model_lib.outputs_probabilities(model)
    if loss is not None:
        if not callable(loss):
            raise ValueError(f"loss ({loss!r}) must be a function (labels, outputs) -> "
                             "per-example losses")
        return Objective(loss, getattr(loss, "__name__", type(loss).__name__), probabilities)
    compiled = getattr(model, "loss", None) if getattr(model, "compiled", False) else None
    if compiled is None:
        return PROBABILITIES if probabilities else LOGITS
    return _from_compiled(compiled, probabilities)


def _from_compiled(compiled, probabilities: bool) -> Objective:
    """The objective of `model.compile(loss=compiled)`."""
    keras_loss = tf.keras.losses.get(compiled) if isinstance(compiled, str) else compiled
    name = compiled if isinstance(compiled, str) else getattr(
        keras_loss, "name", getattr(keras_loss, "__name__", type(keras_loss).__name__))
    known = {"categorical_crossentropy": False, "sparse_categorical_crossentropy": True}
    kind = getattr(keras_loss, "__name__", None) or getattr(keras_loss, "name", None)
    sparse = known.get(kind)
    if sparse is None:
        raise ValueError(f"the model is compiled with loss {name!r}; tapeloop takes integer "
                         "class labels and knows categorical_crossentropy and "
                         "sparse_categorical_crossentropy: pass loss=... for any other")
    config = keras_loss.get_config() if hasattr(keras_loss, "get_config") else {}
    from_logits = bool(getattr(keras_loss, "from_logits", config.get("from_logits", False)))
    if from_logits and probabilities:
        raise ValueError(f"the model ends in a softmax but is compiled with {name!r} "
                         "from_logits=True: its probabilities would be treated as logits")
    if not from_logits and not probabilities:
        raise ValueError(f"the model is compiled with {name!r} on probabilities "
                         "(from_logits=False), but its last layer has no softmax: add one, or "
                         "compile with from_logits=True")
    example = logits_cross_entropy if from_logits else probabilities_cross_entropy
    return Objective(example, f"compiled {name}", not from_logits)
