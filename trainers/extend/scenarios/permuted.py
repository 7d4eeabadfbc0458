"""Permuted-MNIST (Goodfellow et al. 2013; Kirkpatrick et al. 2017): one pixel permutation a task.

As in van de Ven's code, the images are zero-padded to 32x32 and every task, the
first too, applies its own fixed random permutation of the 1,024 pixels. Task t's
digit d is output d (domain), or output 10t + d (task and class).
"""

import numpy as np

from tapeloop.trainers.extend.scenarios.base import Scenario, Task


class Permuted(Scenario):
    """`num_tasks` tasks over every class, each with its own permutation of the padded image."""

    def __init__(self, kind: str, *, steps_per_task: int, num_tasks: int = 10,
                 permutation_seed: int = 0, pad_to: tuple[int, int] = (32, 32)):
        super().__init__(kind, steps_per_task=steps_per_task)
        if num_tasks < 2:
            raise ValueError(f"num_tasks ({num_tasks}) must be at least 2")
        self.num_permutations, self.permutation_seed, self.pad_to = (num_tasks, permutation_seed,
                                                                     pad_to)
        self.name = f"permuted_{kind}"

    def transformed_dim(self, data) -> int:
        return self.pad_to[0] * self.pad_to[1]

    def example_shape(self, data) -> tuple[int, ...]:
        return self.pad_to if len(data.shape) == 2 else (*self.pad_to, data.shape[2])

    def make_tasks(self, data) -> list[Task]:
        if len(data.shape) not in (2, 3) or data.shape[:2] > self.pad_to:
            raise ValueError(f"examples of shape {data.shape} cannot be padded to "
                             f"{self.pad_to[0]}x{self.pad_to[1]} images")
        source = _padded_index(data.shape[:2], self.pad_to, data.input_dim)
        rng = np.random.default_rng(self.permutation_seed)
        n = data.num_classes
        return [Task(classes=tuple(range(n)), outputs=tuple(range(t * n, (t + 1) * n)),
                     permutation=source[rng.permutation(len(source))],
                     name=f"task {t}: permutation {t}")
                for t in range(self.num_permutations)]


def _padded_index(shape: tuple[int, int], pad_to: tuple[int, int], width: int) -> np.ndarray:
    """For every pixel of the padded image, the column of the flat row it comes from
    (`width`, one past the last column, for the zero border)."""
    (h, w), (H, W) = shape, pad_to
    top, left = (H - h) // 2, (W - w) // 2
    index = np.full((H, W), width, np.int64)
    index[top:top + h, left:left + w] = np.arange(h * w).reshape(h, w)
    return index.ravel()
