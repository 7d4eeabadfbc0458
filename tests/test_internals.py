"""tapeloop's private TensorFlow/Keras internals (trainers/engine/internals.py): each one used on
the versions it was tried on, and each with its public fallback, taken when they are
switched off (TAPELOOP_NO_INTERNALS=1) or the versions differ. Both paths run here."""

import numpy as np
import pytest
import tensorflow as tf

import tapeloop
from tapeloop.trainers import bench
from tapeloop.trainers.engine import internals, loop, optimizers
from helpers import fake_mnist

PATHS = {"internals": {}, "public fallback": {internals.OFF_SWITCH: "1"}}


@pytest.fixture(params=list(PATHS))
def path(request, monkeypatch):
    for name, value in PATHS[request.param].items():
        monkeypatch.setenv(name, value)
    return request.param


def test_used_on_the_tried_versions_and_off_otherwise(monkeypatch):
    monkeypatch.delenv(internals.OFF_SWITCH, raising=False)
    assert internals.enabled() and internals.why_off() == ""
    monkeypatch.setenv(internals.OFF_SWITCH, "1")
    assert not internals.enabled() and internals.OFF_SWITCH in internals.why_off()
    monkeypatch.setenv(internals.OFF_SWITCH, "0")
    assert internals.enabled()
    monkeypatch.setattr(internals, "TESTED", {"tensorflow": {(2, 99)}, "keras": {(3, 15)}})
    assert not internals.enabled() and "not the versions" in internals.why_off()


def _cadence_ifs(lower):
    global_step = tf.Variable(0, dtype=tf.int64)
    train_loop = loop.make_train_loop(
        lambda batch: {"loss": tf.constant(0.0), "accuracy": tf.constant(0.0),
                       "count": tf.constant(1.0), "phase": batch,
                       "grad_norm": tf.constant(0.0), "grad_norms": tf.zeros([1]),
                       "correct": tf.constant(0.0), "regularization_loss": tf.constant(0.0)},
        global_step, log_every_step=False, every_n_steps=2,
        periodic=lambda metrics: {"x/loss": metrics["loss"]}, before_periodic=lambda: None,
        lower_conditionals=lower)
    fn = train_loop.run.get_concrete_function(
        iter(tf.data.Dataset.from_tensors(tf.constant(0)).repeat()), tf.constant(3, tf.int64))
    (while_op,) = [op for op in fn.graph.get_operations() if op.type in ("While", "StatelessWhile")]
    ifs = [op for op in while_op._body_graph.get_operations()  # pylint: disable=protected-access
           if op.type in ("If", "StatelessIf")]
    assert len(ifs) == 2
    return [op.get_attr(internals.LOWER_ATTR) for op in ifs]


@pytest.mark.parametrize("lower", [False, True])
def test_the_cadence_conditionals_stay_if_ops_unless_lowered(path, lower):
    """The snapshot and instrument branches stay If ops (loop._when) unless asked
    (tf.distribute, check_numerics) or internals are off: then tf.cond lowers them."""
    unlowered = path == "internals" and not lower
    assert _cadence_ifs(lower) == [not unlowered] * 2


def test_fused_updates_or_keras_apply_gradients(path):
    """Fused kernels on Keras's slots with internals; `apply_gradients` without. The
    same update either way."""
    rng = np.random.default_rng(0)
    start = [rng.normal(size=s).astype(np.float32) for s in ((4, 3), (3,))]
    grads = [[tf.constant(rng.normal(size=w.shape).astype(np.float32)) for w in start]
             for _ in range(3)]
    finals = []
    for name, kwargs in (("adam", {}), ("sgd", {"momentum": 0.9}), ("sgd", {})):
        keras_vars = [tf.keras.Variable(w) for w in start]
        opt = optimizers.make_optimizer(name, learning_rate=0.01, **kwargs)
        opt.build(keras_vars)
        apply = optimizers.apply_fn(opt, keras_vars)
        assert apply.fused == (path == "internals")
        step = tf.function(apply.__call__)
        for g in grads:
            step(g)
        finals.append([v.numpy() for v in keras_vars])
        reference = [tf.keras.Variable(w) for w in start]
        ref_opt = optimizers.make_optimizer(name, learning_rate=0.01, **kwargs)
        for g in grads:
            ref_opt.apply_gradients(zip(g, reference))
        for got, want in zip(finals[-1], reference):
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)


def test_the_op_table_needs_the_profiler_converter(path, tmp_path):
    converter = internals.profiler_converter()
    assert (converter is not None) == (path == "internals")
    if converter is None:
        line = bench.op_type_table(str(tmp_path), "an epoch")
        assert line.startswith("an epoch: no op-type table (") and internals.OFF_SWITCH in line


def test_a_run_trains_the_same_either_way(monkeypatch, tmp_path):
    """A short run with internals on, then off: the same weights up to float rounding."""
    m = fake_mnist(n_train=200, n_test=40)
    data = tapeloop.from_arrays(*m, validation_split=0.1, name="fake")
    config = tapeloop.Config(order="sorted", epochs=1, batch_size=20, hidden_sizes=(16,),
                             probe_per_class=4, eval_every_steps=3, seed=0,
                             deterministic=True)
    finals = []
    for name, env in PATHS.items():
        monkeypatch.delenv(internals.OFF_SWITCH, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        tapeloop.train_and_evaluate(config, tmp_path / name, data=data, verbose=False)
        finals.append(np.load(tmp_path / name / "weights" / "final.npz"))
    assert finals[0].files == finals[1].files
    for k in finals[0].files:
        np.testing.assert_allclose(finals[1][k], finals[0][k], rtol=1e-4, atol=1e-5)
