"""Optimizers by name, as chosen by flags."""

import tensorflow as tf


def make_optimizer(name: str, *, learning_rate: float, momentum: float = 0.0,
                   nesterov: bool = False) -> tf.keras.optimizers.Optimizer:
    """Returns a Keras optimizer: "sgd" (with momentum, nesterov), "rmsprop" or "adam".

    Raises:
      ValueError: on an unknown name or a non-positive learning rate.
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate ({learning_rate}) must be positive")
    if name == "sgd":
        return tf.keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=nesterov)
    if name == "rmsprop":
        return tf.keras.optimizers.RMSprop(learning_rate)
    if name == "adam":
        return tf.keras.optimizers.Adam(learning_rate)
    raise ValueError(f"optimizer ({name!r}) must be one of sgd, rmsprop, adam")
