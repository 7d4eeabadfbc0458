"""Validation hold-out: the last fraction of each class, as fit(validation_split) per class."""

import numpy as np
import pytest

from tapeloop.data import splits
from helpers import fake_mnist


def test_holdout_takes_the_last_fraction_of_each_class():
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 0])  # class 0: 6 examples, class 1: 4
    train, val = splits.holdout(labels, 0.25)
    # int(6 * 0.75) = 4 kept of class 0 -> indices 8, 9 held out; int(4 * .75) = 3 -> 7.
    np.testing.assert_array_equal(val, [7, 8, 9])
    np.testing.assert_array_equal(train, [0, 1, 2, 3, 4, 5, 6])


def test_holdout_zero_keeps_everything_and_bad_fraction_is_refused():
    train, val = splits.holdout(np.arange(10) % 3, 0.0)
    assert len(train) == 10 and len(val) == 0
    with pytest.raises(ValueError, match=r"validation_split \(1.0\) must lie in \[0, 1\)"):
        splits.holdout(np.arange(10), 1.0)


def test_mnist_splits_shapes_and_centering():
    s = splits.mnist_splits(fake_mnist(n_train=100, n_test=30), validation_split=0.1)
    assert s.x_train.shape == (90, 784) and s.x_val.shape == (10, 784)
    assert s.x_test.shape == (30, 784) and s.y_train.dtype == np.int32
    # The mean is the mean of the whole training split (train + validation), as the tutorial.
    both = np.concatenate([s.x_train, s.x_val])
    np.testing.assert_allclose(both.mean(axis=0), 0.0, atol=1e-5)
    assert s.input_dim == 784 and s.num_classes == 10


def test_real_mnist_split_sizes(real_mnist):
    s = splits.mnist_splits(real_mnist, validation_split=0.1)
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (53994, 6006, 10000)
    # Every class is held out at 10%: class 0 has 5923 -> 5330 train, 593 validation.
    assert np.sum(s.y_val == 0) == 593 and np.sum(s.y_train == 0) == 5330


def test_max_examples_take_the_first_images(real_mnist):
    s = splits.mnist_splits(real_mnist, validation_split=0.0, max_train_examples=300,
                            max_test_examples=200)
    assert len(s.y_train) == 300 and len(s.y_test) == 200
    np.testing.assert_array_equal(s.y_train[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])


def test_noise_splits_test_is_an_independent_draw():
    s = splits.noise_splits(num_examples=1000, input_dim=10, num_classes=3,
                            validation_split=0.1, seed=0)
    assert len(s.y_train) + len(s.y_val) == 1000 and len(s.y_test) == 1000
    assert 95 <= len(s.y_val) <= 103
    assert not np.array_equal(s.x_test[:5], s.x_train[:5])


def test_class_names_are_recorded_and_bad_ones_refused_in_one_line():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (40, 4, 4), dtype=np.uint8), np.arange(40) % 4
    names = list(splits.FASHION_MNIST_CLASSES[:4])
    data = splits.from_arrays(x[:32], y[:32], x[32:], y[32:], class_names=names)
    assert data.class_names == tuple(names)
    assert data.describe()["class_names"] == names
    assert splits.mnist_splits(fake_mnist(), validation_split=0.1).class_names == tuple(
        "0123456789")
    for bad, says in ((names[:2], "has 2 names for 4 classes"),
                      (names[:3] + [names[0]], "names 'T-shirt/top' twice"),
                      ("abcd", "must be a list of non-empty strings"),
                      (["a", " ", "c", "d"], "must be a list of non-empty strings")):
        with pytest.raises(splits.DataError, match=says) as err:
            splits.from_arrays(x[:32], y[:32], x[32:], y[32:], class_names=bad)
        assert "\n" not in str(err.value)
