"""The tutorial's first experiment: random vectors with random labels (nothing to learn)."""

import numpy as np


def make_noise(num_examples: int = 1000, input_dim: int = 10, num_classes: int = 3,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draws `num_examples` vectors uniform in [-1, 1] with uniform random class ids.

    Returns:
      float32 inputs (num_examples, input_dim) and int32 labels (num_examples,).

    Raises:
      ValueError: if a size is not positive.
    """
    for name, value in (("num_examples", num_examples), ("input_dim", input_dim),
                        ("num_classes", num_classes)):
        if value < 1:
            raise ValueError(f"{name} ({value}) must be a positive integer")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (num_examples, input_dim)).astype(np.float32)
    y = rng.integers(0, num_classes, num_examples).astype(np.int32)
    return x, y
