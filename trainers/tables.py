"""Plain-text tables for the terminal: per-class accuracy, runs side by side."""

import math
from collections.abc import Mapping, Sequence


def class_accuracy_table(columns: Mapping[str, tuple[float, Sequence[float]]],
                         counts: Sequence[int] | None = None, unit: str = "class") -> str:
    """Formats per-class accuracies, one column per run.

    Args:
      columns: `{name: (overall_accuracy, per_class_accuracies)}`; every run must
        have the same number of classes.
      counts: optional number of test examples per class, shown as a first column.
      unit: what a row is: "class", or "task" (a scenario's; the "all" row is then the
        mean over tasks).

    Returns:
      The table; a class a run never saw prints as "-".
    """
    names = list(columns)
    num_classes = {len(per_class) for _, per_class in columns.values()}
    if len(num_classes) != 1:
        raise ValueError(f"runs disagree on the number of classes: {sorted(num_classes)}")
    width = max(8, *(len(n) + 2 for n in names))
    head = f"{unit:<7}" + (f"{'examples':>10}" if counts is not None else "")
    lines = [head + "".join(f"{n:>{width}}" for n in names)]
    for c in range(num_classes.pop()):
        row = f"{c:<7}" + (f"{int(counts[c]):>10}" if counts is not None else "")
        lines.append(row + "".join(f"{number(columns[n][1][c]):>{width}}" for n in names))
    total = f"{'all':<7}" + (f"{int(sum(counts)):>10}" if counts is not None else "")
    lines.append(total + "".join(f"{number(columns[n][0]):>{width}}" for n in names))
    return "\n".join(lines)


def number(value: float | None, *, signed: bool = False) -> str:
    """A value with 4 decimals ("-" for None or NaN); `signed` shows + or - (never -0.0000)."""
    if value is None or math.isnan(value):
        return "-"
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
