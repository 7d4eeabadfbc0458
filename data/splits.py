"""Train / validation / test arrays, ready for the pipelines (float32 inputs, int32 labels)."""

import dataclasses

import numpy as np

from tapeloop.data import mnist, noise, preprocess


@dataclasses.dataclass(frozen=True)
class Splits:
    """The three splits of one data set, preprocessed."""

    x_train: np.ndarray  # float32 (N, D): what the pipelines train on
    y_train: np.ndarray  # int32 (N,)
    x_val: np.ndarray  # float32 (V, D): held out from the training split
    y_val: np.ndarray  # int32 (V,)
    x_test: np.ndarray  # float32 (T, D): never trained on
    y_test: np.ndarray  # int32 (T,)
    num_classes: int  # labels lie in 0..num_classes-1
    source: str  # where the data came from, for the log
    # MNIST only: the training images as uint8 pixels (N, D) and the mean subtracted,
    # x_train == pixels / 255 - mean exactly; pipelines hold these 4x smaller arrays.
    train_pixels: np.ndarray | None = None
    pixel_mean: np.ndarray | None = None

    @property
    def input_dim(self) -> int:
        return self.x_train.shape[1]


def holdout(labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Splits indices into (train, validation), holding out the last `fraction` of each class.

    This is what `fit(x_c, y_c, validation_split=fraction)` holds out when called on
    one class at a time, as the tutorial's class loop does; over all classes it is a
    class-balanced version of Keras's "last `fraction` of the data".

    Raises:
      ValueError: if `fraction` is outside [0, 1).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_split ({fraction}) must lie in [0, 1)")
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        cut = int(len(idx) * (1.0 - fraction))  # Keras's own rounding.
        train.append(idx[:cut])
        val.append(idx[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def mnist_splits(m: mnist.Mnist, *, validation_split: float, max_train_examples: int = 0,
                 max_test_examples: int = 0, source: str = "") -> Splits:
    """Preprocesses MNIST as the tutorial and holds out the validation split.

    Args:
      m: the uint8 arrays.
      validation_split: fraction of each class held out from training.
      max_train_examples: if > 0, use only the first this many training images.
      max_test_examples: if > 0, use only the first this many test images.
      source: where `m` came from.
    """
    x_train, y_train, x_test, y_test = m
    if max_train_examples > 0:
        x_train, y_train = x_train[:max_train_examples], y_train[:max_train_examples]
    if max_test_examples > 0:
        x_test, y_test = x_test[:max_test_examples], y_test[:max_test_examples]
    pixels = x_train.reshape(len(x_train), -1)
    x_train = preprocess.flatten_and_scale(x_train)
    x_test = preprocess.flatten_and_scale(x_test)
    mean = preprocess.mean_image(x_train)  # of the whole training split, as the tutorial
    x_train -= mean
    x_test -= mean
    s = _split(x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32),
               validation_split=validation_split, num_classes=10, source=source)
    train, _ = holdout(y_train, validation_split)
    return dataclasses.replace(s, train_pixels=pixels[train], pixel_mean=mean)


def noise_splits(*, num_examples: int, input_dim: int, num_classes: int,
                 validation_split: float, seed: int) -> Splits:
    """The noise data set; its test split is an independent draw of the same size."""
    x, y = noise.make_noise(num_examples, input_dim, num_classes, seed)
    x_test, y_test = noise.make_noise(num_examples, input_dim, num_classes, seed + 1)
    return _split(x, y, x_test, y_test, validation_split=validation_split,
                  num_classes=num_classes, source=f"noise (seed {seed})")


def _split(x, y, x_test, y_test, *, validation_split, num_classes, source) -> Splits:
    train, val = holdout(y, validation_split)
    return Splits(x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val],
                  x_test=x_test, y_test=y_test, num_classes=num_classes, source=source)
