"""The report reads runs back from their events and prints them side by side."""

import subprocess
import sys

import numpy as np
import pytest

from helpers import REPO, read_events
from tapeloop.trainers import report


def test_summary_numbers_come_from_the_events(small_sorted_run):
    run_dir, results, _ = small_sorted_run
    s = report.summarize(run_dir)
    assert s.test_accuracy == pytest.approx(results["test_accuracy"])
    np.testing.assert_allclose(s.test_class_accuracy, results["test_class_accuracy"])
    np.testing.assert_allclose(s.class_forgetting, results["class_forgetting"])
    assert s.average_forgetting == pytest.approx(results["average_forgetting"])
    assert s.bwt == pytest.approx(results["bwt"])
    assert s.class_blocks  # sorted: the last epoch has ten blocks
    scalars = read_events(run_dir)
    # The sawtooth is computed over the last epoch's probes, steps (30, 60].
    last = [s.curves[k] for k in sorted(s.curves) if 30 < k <= 60]
    np.testing.assert_allclose(s.last_epoch["spread"], np.ptp(np.array(last), axis=0))
    assert s.drift_from_init == pytest.approx(scalars["weights/drift/from_init/model"][60])
    # Blocks of 3 steps with drift every 3 steps: one drift probe per block, no pairs.
    assert s.growth == {"rising_pairs": 0, "pairs": 0, "rising_blocks": 0, "blocks": 0}


def test_comparison_text_and_csv(small_sorted_run, tmp_path):
    run_dir, results, _ = small_sorted_run
    out = subprocess.run([sys.executable, "-m", "tapeloop.trainers.report", str(run_dir),
                          str(run_dir), f"--csv={tmp_path / 'curves.csv'}"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["small_sorted", "small_sorted"]
    row = next(line for line in lines if line.startswith("test accuracy "))
    assert row.split()[-1] == f"{results['test_accuracy']:.4f}"
    row = next(line for line in lines if line.startswith("backward transfer"))
    assert row.split()[-1] == f"{results['bwt']:+.4f}"
    assert "forgetting per class" in out.stdout and "spread of probe accuracy" in out.stdout
    csv = (tmp_path / "curves.csv").read_text().splitlines()
    assert csv[0] == "run,step," + ",".join(f"class_{c}" for c in range(10))
    steps = [int(line.split(",")[1]) for line in csv[1:]]
    assert len(steps) == 2 * len(report.summarize(run_dir).curves)  # both runs
    assert steps[:3] == [0, 3, 6]


def test_missing_or_unfinished_runs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        report.summarize(tmp_path)
    out = subprocess.run([sys.executable, "-m", "tapeloop.trainers.report", str(tmp_path / "nope")],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "error:" in out.stderr and "Traceback" not in out.stderr


def test_runs_with_other_tags_and_class_counts_are_read_and_what_they_lack_named(
        small_sorted_run, tmp_path):
    """A user's loop that wrote only train/loss, and a 3-class run beside a 10-class one."""
    from tapeloop.trainers.records import writers
    from tapeloop.trainers.run import controller
    from tapeloop.trainers.records.config import Config

    own = tmp_path / "own_loop"
    writer = writers.MetricWriter(own)
    for step in range(5):
        writer.write_scalars(step, {"train/loss": 1.0 / (step + 1)})
    writer.close()
    noise = tmp_path / "noise"
    controller.train_and_evaluate(Config(dataset="noise", noise_examples=60, epochs=1,
                                         batch_size=10, probe_per_class=2, hidden_sizes=(4,)),
                                  noise, verbose=False)
    run_dir, results, _ = small_sorted_run
    for order in ((run_dir, noise, own), (own, noise, run_dir)):
        out = subprocess.run([sys.executable, "-m", "tapeloop.trainers.report",
                              *map(str, order)], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
        assert "own_loop lacks: a final result" in out.stdout
        assert "test results (no epoch finished)" in out.stdout and "probe curves" in out.stdout
        table = out.stdout.split("test accuracy per class:")[1].splitlines()
        rows = {line.split()[0]: line.split()[1:] for line in table[2:12]}
        assert sorted(rows, key=int) == [str(c) for c in range(10)]  # every class of the 10
        column = [n.name for n in order].index("small_sorted")
        assert rows["9"][column] == f"{results['test_class_accuracy'][9]:.4f}"
        assert rows["9"][[n.name for n in order].index("noise")] == "-"  # no class 9 there


def test_plot_draws_the_probe_curves_of_each_run_with_its_phases(small_sorted_run, tmp_path):
    run_dir, _, _ = small_sorted_run
    s = report.summarize(run_dir)
    assert s.by_class and s.phases[0] == [0, 3, 0] and len(s.phases) == 20  # 2 epochs x 10
    out = subprocess.run([sys.executable, "-m", "tapeloop.trainers.report", str(run_dir),
                          f"--plot={tmp_path / 'curves.png'}"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"probe curves drawn in {tmp_path / 'curves.png'}" in out.stdout
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"Matplotlib" in png[:300]
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > 1000 and height > 2 * 250  # the whole run, then the last epoch zoomed


def test_the_accuracy_matrix_picture_is_drawn_with_matplotlib(small_sorted_run):
    run_dir, _, _ = small_sorted_run
    png = (run_dir / "accuracy_matrix.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"Matplotlib" in png[:300]
