"""The report prints runs side by side from their results."""

import json

import pytest

from trainers import report


def _results(test_accuracy, per_class):
    return {"train_accuracy": 0.9, "val_accuracy": 0.8, "test_loss": 0.5,
            "test_accuracy": test_accuracy, "test_class_accuracy": per_class,
            "test_class_count": [10, 20, 30], "epoch_seconds": [3.0, 1.0, 2.0]}


def test_comparison_puts_runs_side_by_side(tmp_path):
    for name, acc, per_class in (("shuffled", 0.95, [0.9, 1.0, 0.95]),
                                 ("sorted", 0.5, [0.1, None, 0.99])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(_results(acc, per_class)))
    runs = {n: report.load_results(tmp_path / n) for n in ("shuffled", "sorted")}
    text = report.comparison(runs)
    lines = text.splitlines()
    assert lines[0].split() == ["shuffled", "sorted"]
    assert "test accuracy" in text and "0.9500" in text and "0.5000" in text
    row1 = next(line for line in lines if line.startswith("1 "))
    assert row1.split() == ["1", "20", "1.0000", "-"]  # absent class prints "-"
    assert any(line.startswith("seconds per epoch") and "2.0000" in line for line in lines)


def test_missing_results_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json: no results"):
        report.load_results(tmp_path)
