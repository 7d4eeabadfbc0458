"""Every private TensorFlow and Keras internal tapeloop uses, in one place.

Each one is a speed-up, never a need: it is used only on the versions it was tried
on (`TESTED`), and each function here returns None or False otherwise, or when the
environment variable `TAPELOOP_NO_INTERNALS=1` is set, and its caller then takes the
public way:

- `Operation._set_attr("_lower_using_switch_merge")`: the loop's cadence conditionals
  stay one `If` op (`loop._when`). Public way: `tf.cond` lowers them to Switch/Merge.
- `Optimizer._get_variable_index`, `Adam._momentums`, `Adam._velocities`,
  `SGD.momentums`: fused update kernels on Keras's own slots (`optimizers.apply_fn`).
  Public way: `optimizer.apply_gradients`.
- `tensorflow.python.profiler.internal._pywrap_profiler_plugin`: the op-type table of
  `bench --profile`. Public way: the table is left out, with a line saying why.
"""

import os

import tensorflow as tf

OFF_SWITCH = "TAPELOOP_NO_INTERNALS"
# (major, minor) of TensorFlow and of Keras the internals were tried on.
TESTED = {"tensorflow": {(2, 21)}, "keras": {(3, 15)}}


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def enabled() -> bool:
    """True when the internals may be used: tried versions, and not switched off."""
    if os.environ.get(OFF_SWITCH, "") not in ("", "0"):
        return False
    import keras
    return (_major_minor(tf.__version__) in TESTED["tensorflow"]
            and _major_minor(keras.__version__) in TESTED["keras"])


def why_off() -> str:
    """One line saying why the internals are not used ("" when they are)."""
    if enabled():
        return ""
    if os.environ.get(OFF_SWITCH, "") not in ("", "0"):
        return f"{OFF_SWITCH} is set"
    import keras
    return (f"TensorFlow {tf.__version__} / Keras {keras.__version__} are not the versions "
            f"tapeloop's internals were tried on")


LOWER_ATTR = "_lower_using_switch_merge"  # set by tf.cond, read by TensorFlow's lowering pass


def keep_unlowered(if_op) -> bool:
    """Marks a `tf.cond`'s `If` op not to be lowered to Switch/Merge nodes.

    Returns False (the op left as `tf.cond` made it: lowered) when internals are off.
    """
    if not enabled():
        return False
    from tensorflow.core.framework import attr_value_pb2
    # pylint: disable-next=protected-access
    if_op._set_attr(LOWER_ATTR, attr_value_pb2.AttrValue(b=False))
    return True


def optimizer_slots(optimizer, variables: list):
    """Keras's slot variables of `variables`, in their order, for fused kernels.

    Returns a list with, for each variable, a tuple of its slots: `(momentum, velocity)`
    for Adam, `(momentum,)` for SGD with momentum, `()` for plain SGD; or None (use
    `apply_gradients`) when internals are off or the optimizer keeps its slots
    otherwise.
    """
    if not enabled() or not hasattr(optimizer, "_get_variable_index"):
        return None
    try:
        # pylint: disable-next=protected-access
        index = [optimizer._get_variable_index(v) for v in variables]
    except (KeyError, ValueError, AttributeError):
        return None
    if isinstance(optimizer, tf.keras.optimizers.Adam):
        momentums = getattr(optimizer, "_momentums", None)
        velocities = getattr(optimizer, "_velocities", None)
        if momentums is None or velocities is None:
            return None
        return [(momentums[i], velocities[i]) for i in index]
    if isinstance(optimizer, tf.keras.optimizers.SGD):
        if not optimizer.momentum:
            return [() for _ in index]
        momentums = getattr(optimizer, "momentums", None)
        return None if momentums is None else [(momentums[i],) for i in index]
    return None


def profiler_converter():
    """TensorFlow's converter of profiler traces to tool tables, or None when off."""
    if not enabled():
        return None
    try:
        from tensorflow.python.profiler.internal import _pywrap_profiler_plugin
    except ImportError:
        return None
    return _pywrap_profiler_plugin
