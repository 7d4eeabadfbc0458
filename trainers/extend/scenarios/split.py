"""Split-MNIST (Zenke, Poole & Ganguli 2017): the classes cut into tasks of a few each.

`Split(kind, classes_per_task=2)` on MNIST gives the five tasks 0/1, 2/3, 4/5, 6/7, 8/9.
Any data set with enough classes splits the same way (Fashion-MNIST through
`--data_dir`); `class_order` reorders the classes before they are cut.
"""

from tapeloop.trainers.extend.scenarios.base import Scenario, Task


class Split(Scenario):
    """Tasks of `classes_per_task` consecutive classes (in `class_order`)."""

    def __init__(self, kind: str, *, steps_per_task: int, classes_per_task: int = 2,
                 class_order: tuple[int, ...] | None = None):
        super().__init__(kind, steps_per_task=steps_per_task)
        if classes_per_task < 1:
            raise ValueError(f"classes_per_task ({classes_per_task}) must be positive")
        self.classes_per_task, self.class_order = classes_per_task, class_order
        self.name = f"split_{kind}"

    def make_tasks(self, data) -> list[Task]:
        order = tuple(self.class_order or range(data.num_classes))
        if sorted(order) != list(range(data.num_classes)):
            raise ValueError(f"class_order {order} must list each of the data's "
                             f"{data.num_classes} classes once")
        k = self.classes_per_task
        if data.num_classes < 2 * k or data.num_classes % k:
            raise ValueError(f"{data.num_classes} classes cannot be split into tasks of "
                             f"{k} (at least two tasks, every task full)")
        return [Task(classes=order[i:i + k], outputs=tuple(range(i, i + k)),
                     name=f"task {i // k}: classes {','.join(map(str, order[i:i + k]))}")
                for i in range(0, data.num_classes, k)]
