"""Data: MNIST from any source (`mnist`), preprocessing, the noise set, splits, pipelines.

`pipelines` imports TensorFlow; the rest needs only numpy, so `python -m tapeloop.data.prepare`
starts fast.
"""

from tapeloop.data.mnist import DataError, Mnist, load_mnist
from tapeloop.data.splits import Splits, holdout, mnist_splits, noise_splits

__all__ = ["DataError", "Mnist", "Splits", "holdout", "load_mnist", "mnist_splits",
           "noise_splits"]
