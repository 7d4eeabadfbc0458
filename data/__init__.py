"""Data: MNIST from any source (`mnist`), preprocessing, the noise set, splits, pipelines.

`pipelines` imports TensorFlow; the rest needs only numpy, so `python -m tapeloop.data.prepare`
starts fast.
"""

# The tutorial's orders of presentation (`pipelines.make_pipeline`; the `--order` flag).
ORDERS = ("shuffled", "sorted", "blocked", "replay")

from tapeloop.data.mnist import DataError, Mnist, load_mnist  # noqa: E402
from tapeloop.data.splits import Splits, holdout, mnist_splits, noise_splits  # noqa: E402

__all__ = ["ORDERS", "DataError", "Mnist", "Splits", "holdout", "load_mnist", "mnist_splits",
           "noise_splits"]
