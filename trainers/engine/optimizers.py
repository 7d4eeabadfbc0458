"""Optimizers by name, and a fused way to apply their updates.

Keras' `apply_gradients` builds a dozen small ops per variable; on two CPU cores,
inside a compiled loop, that bookkeeping costs more than the arithmetic. For the
common cases `apply_fn` applies the very same update rule with TensorFlow's fused
training kernels (one op per variable: `ResourceApplyAdam`,
`ResourceApplyKerasMomentum`, `ResourceApplyGradientDescent`) on the optimizer's own
slot variables, so checkpoints and `optimizer.iterations` stay Keras's.
"""

import dataclasses
from typing import Callable

import tensorflow as tf

from tapeloop.trainers.engine import internals


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


def is_fused(optimizer: tf.keras.optimizers.Optimizer, variables: list) -> bool:
    """True when `apply_fn` applies the update with fused kernels (else Keras's own)."""
    return apply_fn(optimizer, variables).fused


@dataclasses.dataclass(frozen=True)
class Apply:
    """`apply(grads)`: one optimizer update of `variables`; `fused`: with fused kernels."""
    update: Callable[[list], None]
    fused: bool

    def __call__(self, grads: list) -> None:
        self.update(grads)


def apply_fn(optimizer: tf.keras.optimizers.Optimizer, variables: list) -> Apply:
    """Returns `apply(grads)`, updating `variables` as `optimizer.apply_gradients` would.

    Adam (without amsgrad) and SGD (with or without momentum), with no weight decay,
    clipping or moving average, on variables without constraints, use one fused kernel
    per variable on Keras's own slots (`internals.optimizer_slots`); anything else, or
    internals switched off, falls back to `optimizer.apply_gradients`. Build the
    optimizer on `variables` first.
    """
    fused = None if any(getattr(v, "constraint", None) for v in variables) else (
        _fused_update(optimizer))
    slots = None if fused is None else internals.optimizer_slots(optimizer, variables)
    if slots is None:
        def apply(grads):
            optimizer.apply_gradients(zip(grads, variables))

        return Apply(apply, fused=False)

    def apply_fused(grads):
        fused(grads, variables, slots)
        optimizer.iterations.assign_add(1)

    return Apply(apply_fused, fused=True)


def _fused_update(optimizer):
    plain = (not getattr(optimizer, "weight_decay", None) and optimizer.clipnorm is None
             and optimizer.clipvalue is None and optimizer.global_clipnorm is None
             and not optimizer.use_ema and optimizer.loss_scale_factor is None
             and optimizer.gradient_accumulation_steps is None)
    if not plain:
        return None
    if isinstance(optimizer, tf.keras.optimizers.Adam) and not optimizer.amsgrad:
        return _adam(optimizer)
    if type(optimizer) is tf.keras.optimizers.SGD:
        return _sgd(optimizer)
    return None


def _adam(opt):
    def update(grads, variables, slots):
        lr = tf.cast(opt.learning_rate, tf.float32)
        t = tf.cast(opt.iterations + 1, tf.float32)
        beta_1, beta_2 = tf.constant(opt.beta_1, tf.float32), tf.constant(opt.beta_2, tf.float32)
        beta_1_power, beta_2_power = tf.pow(beta_1, t), tf.pow(beta_2, t)
        epsilon = tf.constant(opt.epsilon, tf.float32)
        for var, grad, (m, v) in zip(variables, grads, slots):
            tf.raw_ops.ResourceApplyAdam(
                var=_handle(var), m=_handle(m), v=_handle(v),
                beta1_power=beta_1_power, beta2_power=beta_2_power, lr=lr, beta1=beta_1,
                beta2=beta_2, epsilon=epsilon, grad=grad)

    return update


def _sgd(opt):
    def update(grads, variables, slots):
        lr = tf.cast(opt.learning_rate, tf.float32)
        for var, grad, slot in zip(variables, grads, slots):
            if opt.momentum:
                tf.raw_ops.ResourceApplyKerasMomentum(
                    var=_handle(var), accum=_handle(slot[0]), lr=lr, grad=grad,
                    momentum=tf.constant(opt.momentum, tf.float32), use_nesterov=opt.nesterov)
            else:
                tf.raw_ops.ResourceApplyGradientDescent(var=_handle(var), alpha=lr, delta=grad)

    return update


def _handle(variable):
    return variable.value.handle  # A Keras variable wraps a tf.Variable.
