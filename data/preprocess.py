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

