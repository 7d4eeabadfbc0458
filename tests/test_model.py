"""The MLP: the tutorial's parameter counts, logits out, bad sizes refused."""

import numpy as np
import pytest
import tensorflow as tf

from tapeloop.trainers.engine import model as model_lib, optimizers


@pytest.mark.parametrize("input_dim,hidden,classes,dropout,expected", [
    (10, (100, 100), 3, 0.0, 11_503),
    (784, (150, 100), 10, 0.5, 133_860),
])
def test_parameter_counts_match_the_tutorial(input_dim, hidden, classes, dropout, expected):
    m = model_lib.build_mlp(input_dim=input_dim, hidden_sizes=hidden, num_classes=classes,
                            dropout=dropout, seed=0)
    assert model_lib.trainable_parameter_count(m) == expected
    assert f"{expected:,}" in model_lib.summary_lines(m)[-1]


def test_dropout_layers_follow_each_hidden_layer_and_output_is_linear():
    m = model_lib.build_mlp(input_dim=4, hidden_sizes=(8, 6), num_classes=3, dropout=0.5, seed=0)
    kinds = [type(layer).__name__ for layer in m.layers]
    assert kinds == ["Dense", "Dropout", "Dense", "Dropout", "Dense"]
    x = np.ones((5, 4), np.float32) * 50.0
    logits = m(x, training=False).numpy()
    assert logits.shape == (5, 3)
    assert not np.allclose(logits.sum(axis=1), 1.0)  # logits, not probabilities
    # Dropout is active only in training.
    np.testing.assert_array_equal(m(x, training=False), m(x, training=False))
    assert not np.array_equal(m(x, training=True).numpy(), m(x, training=True).numpy())


@pytest.mark.parametrize("rate", [0.5, 0.2])
def test_dropout_keeps_the_rate_and_scale_of_keras_dropout(rate):
    import tensorflow as tf

    layer = model_lib.Dropout(rate, seed=7)
    assert isinstance(layer, tf.keras.layers.Dropout)  # checkpointed like Keras's
    x = tf.random.stateless_normal([400, 250], seed=[1, 2])
    seed = layer.seed_generator.state.numpy()
    y = layer(x, training=True).numpy()
    kept = y != 0
    assert abs(kept.mean() - (1 - rate)) < 0.01  # 100,000 draws: 5 standard deviations
    np.testing.assert_array_equal(y[kept], (x.numpy() * np.float32(1 / (1 - rate)))[kept])
    # Keras's own layer from the same seed state gives the very same output.
    keras_layer = tf.keras.layers.Dropout(rate, seed=7)
    keras_layer.seed_generator.state.assign(seed)
    np.testing.assert_array_equal(y, keras_layer(x, training=True).numpy())
    assert layer.seed_generator.state.numpy()[1] != seed[1]  # advances per call
    np.testing.assert_array_equal(layer(x, training=False), x)


def test_dropout_with_threefry_draws_other_masks_of_the_same_rate_under_xla():
    import tensorflow as tf

    x = tf.ones([400, 250])
    fast = model_lib.Dropout(0.5, seed=7, alg="threefry")
    plain = model_lib.Dropout(0.5, seed=7)
    y = tf.function(lambda: fast(x, training=True), jit_compile=True)().numpy()
    assert abs((y != 0).mean() - 0.5) < 0.01 and set(np.unique(y)) == {0.0, 2.0}
    assert not np.array_equal(y, plain(x, training=True).numpy())  # another stream
    assert model_lib.Dropout.from_config(fast.get_config()).alg == "threefry"


def test_same_seed_same_initial_weights():
    a = model_lib.build_mlp(input_dim=4, hidden_sizes=(8,), num_classes=3, seed=3)
    b = model_lib.build_mlp(input_dim=4, hidden_sizes=(8,), num_classes=3, seed=3)
    c = model_lib.build_mlp(input_dim=4, hidden_sizes=(8,), num_classes=3, seed=4)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


@pytest.mark.parametrize("kwargs,match", [
    (dict(hidden_sizes=()), "sizes must be positive"),
    (dict(hidden_sizes=(0,)), "sizes must be positive"),
    (dict(dropout=1.0), r"dropout \(1.0\)"),
])
def test_bad_model_arguments(kwargs, match):
    args = dict(input_dim=4, hidden_sizes=(8,), num_classes=3, dropout=0.0) | kwargs
    with pytest.raises(ValueError, match=match):
        model_lib.build_mlp(**args)


@pytest.mark.parametrize("name,cls", [("sgd", "SGD"), ("rmsprop", "RMSprop"), ("adam", "Adam")])
def test_optimizers_by_name(name, cls):
    opt = optimizers.make_optimizer(name, learning_rate=0.01, momentum=0.9, nesterov=True)
    assert type(opt).__name__ == cls
    assert float(opt.learning_rate) == pytest.approx(0.01)
    if name == "sgd":
        assert opt.momentum == 0.9 and opt.nesterov


def test_bad_optimizer_arguments():
    with pytest.raises(ValueError, match="optimizer \\('lbfgs'\\)"):
        optimizers.make_optimizer("lbfgs", learning_rate=0.1)
    with pytest.raises(ValueError, match=r"learning_rate \(0.0\)"):
        optimizers.make_optimizer("adam", learning_rate=0.0)
    assert tf.keras.optimizers.Adam  # Keras 3 is tf.keras here.


@pytest.mark.parametrize("name,kwargs", [
    ("adam", {}), ("sgd", {}), ("sgd", dict(momentum=0.9)),
    ("sgd", dict(momentum=0.9, nesterov=True)), ("rmsprop", {})])
def test_fused_updates_equal_keras_apply_gradients(name, kwargs):
    """The fused kernels apply Keras's own update rule, on Keras's own slot variables."""
    rng = np.random.default_rng(0)
    start = [rng.normal(size=s).astype(np.float32) for s in ((4, 3), (3,))]
    grads = [[rng.normal(size=w.shape).astype(np.float32) for w in start] for _ in range(5)]
    finals = []
    for fused in (False, True):
        keras_vars = [tf.keras.Variable(w) for w in start]
        opt = optimizers.make_optimizer(name, learning_rate=0.01, **kwargs)
        opt.build(keras_vars)
        apply = (optimizers.apply_fn(opt, keras_vars) if fused
                 else (lambda g, o=opt, v=keras_vars: o.apply_gradients(zip(g, v))))
        step = tf.function(lambda g, a=apply: a(g))
        for g in grads:
            step([tf.constant(x) for x in g])
        assert int(opt.iterations) == 5
        finals.append([v.numpy() for v in keras_vars])
        assert (optimizers._fused_update(opt) is None) == (name == "rmsprop")
    for keras_w, fused_w in zip(*finals):
        np.testing.assert_allclose(fused_w, keras_w, rtol=1e-5, atol=1e-6)


def test_the_layer_table_stays_aligned_for_long_layer_names():
    import tensorflow as tf

    m = tf.keras.Sequential([tf.keras.layers.Input((4,)),
                             tf.keras.layers.Dense(3, name="a_rather_long_dense_layer_name"),
                             tf.keras.layers.Dense(2, name="out")])
    lines = model_lib.summary_lines(m)
    assert len({len(line) for line in lines}) == 1, lines
    assert lines[1].startswith("a_rather_long_dense_layer_name ") and lines[-1].endswith("23")
