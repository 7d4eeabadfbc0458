"""Preprocessing as the tutorial: flatten, scale to [0, 1], subtract the training mean."""

import numpy as np

from tapeloop.data import noise, preprocess


def test_flatten_and_scale():
    images = np.array([[[0, 255], [51, 102]]], np.uint8)
    out = preprocess.flatten_and_scale(images)
    assert out.shape == (1, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 1.0, 0.2, 0.4]], rtol=1e-6)


def test_the_mean_image_is_the_training_splits_accumulated_in_float64():
    train = np.array([[0.0, 1.0], [2.0, 3.0]], np.float32)
    mean = preprocess.mean_image(train)
    assert mean.dtype == np.float32
    np.testing.assert_array_equal(mean, [1.0, 2.0])


def test_noise_is_seeded_uniform_with_every_class():
    x, y = noise.make_noise(1000, 10, 3, seed=7)
    assert x.shape == (1000, 10) and x.dtype == np.float32 and y.dtype == np.int32
    assert -1.0 <= x.min() and x.max() <= 1.0 and x.min() < -0.99 and x.max() > 0.99
    assert set(np.unique(y)) == {0, 1, 2}
    assert abs(x.mean()) < 0.05  # uniform on [-1, 1]: mean 0, sd of the mean ~0.006
    x2, y2 = noise.make_noise(1000, 10, 3, seed=7)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(x, noise.make_noise(1000, 10, 3, seed=8)[0])


def test_noise_refuses_empty_sizes():
    import pytest

    with pytest.raises(ValueError, match=r"num_examples \(0\)"):
        noise.make_noise(0)
