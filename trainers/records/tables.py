"""Plain-text tables for the terminal: per-class accuracy, runs side by side."""

import math
from collections.abc import Mapping, Sequence


def class_accuracy_table(columns: Mapping[str, tuple[float, Sequence[float]]],
                         counts: Sequence[int] | None = None, unit: str = "class",
                         class_names: Sequence[str] | None = None) -> str:
    """Formats per-class accuracies, one column per run.

    Args:
      columns: `{name: (overall_accuracy, per_class_accuracies)}`; every run must
        have the same number of classes.
      counts: optional number of test examples per class, shown as a first column.
      unit: what a row is: "class", or "task" (a scenario's; the "all" row is then the
        mean over tasks).
      class_names: each class's name, shown beside its id (`class_label`).

    Returns:
      The table; a class a run never saw prints as "-".
    """
    names = list(columns)
    num_classes = {len(per_class) for _, per_class in columns.values()}
    if len(num_classes) != 1:
        raise ValueError(f"runs disagree on the number of classes: {sorted(num_classes)}")
    width = max(8, *(len(n) + 2 for n in names))
    labels = [class_label(c, class_names if unit == "class" else None)
              for c in range(num_classes.pop())]
    first = max([7, *(len(label) + 2 for label in labels)])
    head = f"{unit:<{first}}" + (f"{'examples':>10}" if counts is not None else "")
    lines = [head + "".join(f"{n:>{width}}" for n in names)]
    for c, label in enumerate(labels):
        row = f"{label:<{first}}" + (f"{int(counts[c]):>10}" if counts is not None else "")
        lines.append(row + "".join(f"{number(columns[n][1][c]):>{width}}" for n in names))
    total = f"{'all':<{first}}" + (f"{int(sum(counts)):>10}" if counts is not None else "")
    lines.append(total + "".join(f"{number(columns[n][0]):>{width}}" for n in names))
    return "\n".join(lines)


def class_label(c: int, class_names: Sequence[str] | None = None) -> str:
    """Class `c` as tables show it: "3", or "6 Shirt" where the data names its classes
    (MNIST's names are its digits, so its classes stay "3")."""
    name = class_names[c] if class_names and c < len(class_names) else None
    return str(c) if name is None or name == str(c) else f"{c} {name}"


def column_labels(count: int, *, class_names: Sequence[str] | None = None,
                  tasks: Sequence[Mapping] | None = None, unit: str = "class") -> list[str]:
    """Each column's name, as the report, the plots and the Forgetting tab show it: "class
    3" or "6 Shirt"; a scenario's tasks (`tasks`: its recorded task table) "task 1 (2,3)",
    their classes by name where the data names them, or "task 1" (a permutation, or
    `unit` "task" without a table)."""
    if not tasks and unit == "task":  # a scenario's run without its task table
        return [f"task {t}" for t in range(count)]
    if not tasks:
        return [label if label != str(c) else f"class {c}"
                for c, label in ((c, class_label(c, class_names)) for c in range(count))]

    def short(k):
        name = class_names[k] if class_names and k < len(class_names) else None
        return str(k) if name is None else name

    return [f"task {t}" if task.get("permuted") or t >= len(tasks) else
            f"task {t} ({','.join(short(k) for k in task['classes'])})"
            for t, task in ((t, tasks[t] if t < len(tasks) else {"permuted": True})
                            for t in range(count))]


def number(value: float | None, *, signed: bool = False) -> str:
    """A value with 4 decimals ("-" for None or NaN); `signed` shows + or - (never -0.0000)."""
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 1e5:  # a diverged loss: 9.883e+35, not 36 digits
        return f"{value:+.4g}" if signed else f"{value:.4g}"
    return f"{round(value, 4) + 0.0:+.4f}" if signed else f"{value:.4f}"


def side_by_side(names: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]],
                 label_width: int = 0) -> str:
    """Formats rows of already-formatted cells, one column per name, labels on the left."""
    label_width = max([label_width, *(len(label) + 2 for label, _ in rows)])
    width = max(10, *(len(n) + 2 for n in names))
    lines = [" " * label_width + "".join(f"{n:>{width}}" for n in names)]
    for label, cells in rows:
        lines.append(f"{label:<{label_width}}" + "".join(f"{c:>{width}}" for c in cells))
    return "\n".join(lines)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Formats already-formatted cells under headers; the first column left-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), *(line(r) for r in rows)])
