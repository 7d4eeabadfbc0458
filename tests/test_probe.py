"""The probe: balanced, fixed, and its per-class numbers equal the evaluator's."""

import numpy as np
import pytest
import tensorflow as tf

from tapeloop.trainers.engine import evaluation, model as model_lib
from tapeloop.trainers.instruments import probe


def test_select_probe_takes_the_first_examples_of_each_class():
    labels = np.array([2, 0, 1, 0, 2, 1, 0, 2, 1], np.int32)
    images = np.arange(9, dtype=np.float32)[:, None]
    x, y = probe.select_probe(images, labels, per_class=2, num_classes=3)
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(x[:, 0], [1, 3, 2, 5, 0, 4])
    with pytest.raises(ValueError, match=r"probe_per_class \(4\) exceeds .* class 0 has only 3"):
        probe.select_probe(images, labels, per_class=4, num_classes=3)


def test_probe_matches_the_evaluator():
    m = model_lib.build_mlp(input_dim=5, hidden_sizes=(7,), num_classes=3, seed=1)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(30, 5)).astype(np.float32)
    labels = np.repeat(np.arange(3), 10).astype(np.int32)
    out = tf.function(probe.make_probe(m, images, labels, num_classes=3))()
    ref = evaluation.make_evaluator(m, num_classes=3, input_dim=5)(images, labels)
    assert float(out["probe/accuracy"]) == pytest.approx(ref.accuracy)
    assert float(out["probe/loss"]) == pytest.approx(ref.loss, rel=1e-5)
    for c in range(3):
        assert float(out[f"probe/accuracy/class_{c}"]) == pytest.approx(ref.class_accuracy[c])
        assert float(out[f"probe/loss/class_{c}"]) == pytest.approx(ref.class_loss[c], rel=1e-5)


@pytest.mark.parametrize("splits", [1, 2])
def test_constant_columns_folded_into_the_first_layer_give_the_same_numbers(splits):
    m = model_lib.build_mlp(input_dim=12, hidden_sizes=(9, 6), num_classes=3, dropout=0.5,
                            seed=2)
    rng = np.random.default_rng(1)
    images = rng.normal(size=(31, 12)).astype(np.float32)
    images[:, [0, 5, 11]] = [-0.25, 0.0, 1.5]  # constant columns, like MNIST's borders
    labels = rng.integers(0, 3, size=31).astype(np.int32)
    forward, kept = model_lib.fold_constant_columns(m, images)
    np.testing.assert_array_equal(kept, [1, 2, 3, 4, 6, 7, 8, 9, 10])
    np.testing.assert_allclose(forward(images[:, kept]), m(images, training=False), rtol=1e-5,
                               atol=1e-6)
    out = tf.function(probe.make_probe(m, images, labels, num_classes=3,
                                       batch_splits=splits))()
    ref = evaluation.make_evaluator(m, num_classes=3, input_dim=12)(images, labels)
    assert float(out["probe/accuracy"]) == pytest.approx(ref.accuracy)
    for c in range(3):
        assert float(out[f"probe/loss/class_{c}"]) == pytest.approx(ref.class_loss[c], rel=1e-5)
    assert model_lib.fold_constant_columns(m, images[:, kept]) is None  # nothing to fold


def test_real_probe_is_balanced(real_mnist):
    x, y = probe.select_probe(real_mnist.x_test, real_mnist.y_test.astype(np.int32),
                              per_class=100, num_classes=10)
    assert x.shape == (1000, 28, 28)
    assert list(np.bincount(y)) == [100] * 10
