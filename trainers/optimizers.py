"""Optimizers by name, and a fused way to apply their updates.

Keras' `apply_gradients` builds a dozen small ops per variable; on two CPU cores,
inside a compiled loop, that bookkeeping costs more than the arithmetic. For the
common cases `apply_fn` applies the very same update rule with TensorFlow's fused
training kernels (one op per variable: `ResourceApplyAdam`,
`ResourceApplyKerasMomentum`, `ResourceApplyGradientDescent`) on the optimizer's own
slot variables, so checkpoints and `optimizer.iterations` stay Keras's.
"""

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


def is_fused(optimizer: tf.keras.optimizers.Optimizer, variables: list) -> bool:
    """True when `apply_fn` applies the update with fused kernels (else Keras's own)."""
    return apply_fn(optimizer, variables).fused


def apply_fn(optimizer: tf.keras.optimizers.Optimizer, variables: list):
    """Returns `apply(grads)`, updating `variables` as `optimizer.apply_gradients` would.

    Adam (without amsgrad) and SGD (with or without momentum), with no weight decay,
    clipping or moving average, on variables without constraints, use one fused kernel
    per variable; anything else falls back to `optimizer.apply_gradients`. Build the
    optimizer on `variables` first.
    """
    fused = None if any(getattr(v, "constraint", None) for v in variables) else (
        _fused_update(optimizer))
    if fused is None:
        def apply(grads):
            optimizer.apply_gradients(zip(grads, variables))
    else:
        slots = [optimizer._get_variable_index(v) for v in variables]  # Keras's slot order.

        def apply(grads):
            fused(grads, variables, slots)
            optimizer.iterations.assign_add(1)

    apply.fused = fused is not None
    return apply


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
        for var, grad, i in zip(variables, grads, slots):
            tf.raw_ops.ResourceApplyAdam(
                var=_handle(var), m=_handle(opt._momentums[i]), v=_handle(opt._velocities[i]),
                beta1_power=beta_1_power, beta2_power=beta_2_power, lr=lr, beta1=beta_1,
                beta2=beta_2, epsilon=epsilon, grad=grad)

    return update


def _sgd(opt):
    def update(grads, variables, slots):
        lr = tf.cast(opt.learning_rate, tf.float32)
        for var, grad, i in zip(variables, grads, slots):
            if opt.momentum:
                tf.raw_ops.ResourceApplyKerasMomentum(
                    var=_handle(var), accum=_handle(opt.momentums[i]), lr=lr, grad=grad,
                    momentum=tf.constant(opt.momentum, tf.float32), use_nesterov=opt.nesterov)
            else:
                tf.raw_ops.ResourceApplyGradientDescent(var=_handle(var), alpha=lr, delta=grad)

    return update


def _handle(variable):
    return variable.value.handle  # A Keras variable wraps a tf.Variable.
