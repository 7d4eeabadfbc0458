"""The tutorial's preprocessing: flatten, scale to [0, 1], subtract the mean image."""

import numpy as np


def flatten_and_scale(images: np.ndarray) -> np.ndarray:
    """Turns uint8 images (N, H, W) into a new float32 array (N, H*W) in [0, 1]."""
    out = images.reshape(len(images), -1).astype(np.float32)
    out /= np.float32(255.0)  # In place: MNIST's 188 MB are not copied again.
    return out


def mean_image(train: np.ndarray) -> np.ndarray:
    """The float32 mean of the training vectors (accumulated in float64)."""
    return train.mean(axis=0, dtype=np.float64).astype(np.float32)


def subtract_mean(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Subtracts the training split's mean vector from `train` and every other split.

    The arrays are changed in place (float arrays the caller owns, such as those
    `flatten_and_scale` returns) and returned in order: `train`, then `others`.
    """
    mean = mean_image(train)
    for a in (train, *others):
        a -= mean
    return (train, *others)
