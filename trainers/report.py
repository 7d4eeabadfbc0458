"""Prints finished runs side by side: `python -m trainers.report RUN_DIR [RUN_DIR ...]`."""

import json
import sys
from pathlib import Path

from absl import app

from trainers import tables


def load_results(run_dir: Path) -> dict:
    """Reads `run_dir/results.json`.

    Raises:
      FileNotFoundError, ValueError: with a message naming the file.
    """
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results (is {run_dir} a finished run?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def comparison(runs: dict[str, dict]) -> str:
    """Overall numbers, then per-class test accuracy, one column per run."""
    names = list(runs)
    width = max(10, *(len(n) + 2 for n in names))
    rows = [("train accuracy (last epoch)", "train_accuracy"),
            ("validation accuracy (last)", "val_accuracy"),
            ("test loss", "test_loss"), ("test accuracy", "test_accuracy"),
            ("seconds per epoch (median)", None)]
    lines = [f"{'':<30}" + "".join(f"{n:>{width}}" for n in names)]
    for label, key in rows:
        cells = []
        for n in names:
            if key is None:
                secs = sorted(runs[n]["epoch_seconds"])
                value = secs[len(secs) // 2] if secs else None
            else:
                value = runs[n].get(key)
            cells.append("-" if value is None else f"{value:.4f}")
        lines.append(f"{label:<30}" + "".join(f"{c:>{width}}" for c in cells))
    first = runs[names[0]]
    table = tables.class_accuracy_table(
        {n: (r["test_accuracy"], [float("nan") if a is None else a
                                  for a in r["test_class_accuracy"]]) for n, r in runs.items()},
        counts=first["test_class_count"])
    return "\n".join(lines) + "\n\ntest accuracy per class:\n" + table


def main(argv):
    if len(argv) < 2:
        sys.exit("usage: python -m trainers.report RUN_DIR [RUN_DIR ...]")
    try:
        runs = {Path(d).name: load_results(Path(d)) for d in argv[1:]}
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(comparison(runs))


def run():
    """Entry point of the `tapeloop-report` console script."""
    app.run(main)


if __name__ == "__main__":
    run()
