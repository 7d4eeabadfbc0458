"""tapeloop-sweep: a grid of real (small) runs, skip and resume on rerun, a results table."""

import csv
import json
import subprocess
import sys

import pytest

from helpers import REPO, SCRIPT_ENV, event_tags, run_train_here

NOISE = ["--dataset=noise", "--noise_examples=300", "--hidden_sizes=16", "--batch_size=30",
         "--probe_per_class=20", "--eval_every_steps=3", "--epochs=2", "--deterministic"]
AXES = ["--sweep=learning_rate=1e-3,1e-2", "--sweep=order=shuffled,sorted"]
POINTS = ["learning_rate=1e-3,order=shuffled", "learning_rate=1e-3,order=sorted",
          "learning_rate=1e-2,order=shuffled", "learning_rate=1e-2,order=sorted"]


def _sweep(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "tapeloop.trainers.sweep", *NOISE, *args,
                           f"--logdir={tmp_path}", "--run_name=grid"],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=SCRIPT_ENV)


def test_grid_runs_every_point_tabulates_and_reruns_skip_or_resume(tmp_path):
    sweep_dir = tmp_path / "grid"
    # One point was interrupted before the sweep ran: the sweep resumes it.
    early = run_train_here(*NOISE, "--learning_rate=1e-2", "--order=sorted",
                           f"--logdir={sweep_dir}", f"--run_name={POINTS[3]}",
                           "--stop_after_steps=5")
    assert early.returncode == 0, early.stderr[-2000:]
    proc = _sweep(tmp_path, *AXES, "--parallel=2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "resuming" in (sweep_dir / f"{POINTS[3]}.log").read_text()
    with open(sweep_dir / "results.csv") as f:
        table = {row["point"]: row for row in csv.DictReader(f)}
    assert sorted(table) == sorted(POINTS)
    for point in POINTS:
        results = json.loads((sweep_dir / point / "results.json").read_text())
        config = json.loads((sweep_dir / point / "config.json").read_text())
        lr, order = point.split(",")
        assert config["learning_rate"] == float(lr.split("=")[1])
        assert config["order"] == order.split("=")[1]
        assert config["hidden_sizes"] == [16] and config["epochs"] == 2  # base flags passed on
        assert table[point]["test_accuracy"] == f"{results['test_accuracy']:.4f}"
        assert table[point]["average_forgetting"] == f"{results['average_forgetting']:.4f}"
        assert table[point]["class_2"] == f"{results['test_class_accuracy'][2]:.4f}"
        assert f"{point}: test accuracy {results['test_accuracy']:.4f}" in proc.stdout
        assert any("hparams" in t for t in event_tags(sweep_dir / point))
    printed = proc.stdout.split("\n\n")[1].splitlines()
    assert printed[0].split()[:5] == ["point", "test", "acc", "avg", "forgetting"]
    assert [r.split()[0] for r in printed[1:]] == POINTS
    again = _sweep(tmp_path, *AXES, "--parallel=2")
    assert again.returncode == 0
    assert again.stdout.count("finished before, skipped") == 4 and "started" not in again.stdout


@pytest.mark.parametrize("spec,message", [
    ("nonsense=1,2", "'nonsense' is not a training flag"),
    ("learning_rate", "expected NAME=V1,V2"),
    ("learning_rate=-1", "--learning_rate=-1"),
    ("order=sideways", "--order=sideways"),
    ("block_steps=3", "block_steps (3) applies to order 'blocked' only"),
    ("learning_rate=1e-3,1e-3", "1e-3 is given twice (two processes would train one run"),
    ("learning_rate=1e-3,0.001", "points learning_rate=1e-3 and learning_rate=0.001 are the "
                                 "same run"),
])
def test_bad_sweeps_are_refused_before_anything_runs(tmp_path, spec, message):
    proc = _sweep(tmp_path, f"--sweep={spec}")
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-1500:]
    assert not (tmp_path / "grid").exists()
