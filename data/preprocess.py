"""The tutorial's preprocessing: flatten, scale to [0, 1], subtract the mean image."""

import numpy as np


def flatten_and_scale(images: np.ndarray) -> np.ndarray:
    """Turns uint8 images (N, H, W) into float32 vectors (N, H*W) in [0, 1]."""
    return images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)


def subtract_mean(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Subtracts the training split's mean vector from `train` and every other split.

    Returns:
      The centred `train` followed by the centred `others`, in order.
    """
    mean = train.mean(axis=0, dtype=np.float64).astype(np.float32)
    return tuple(a - mean for a in (train, *others))
