"""End to end: every script in examples/ runs as a user runs it, on small real data."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tapeloop.trainers.run import checkpoints
from helpers import REPO, SCRIPT_ENV, event_tags

SMALL = ["--max_train_examples=600", "--max_test_examples=500", "--probe_per_class=10",
         "--epochs=1", "--batch_size=50"]


def _example(name, tmp_path, run_name, *args, timeout=300):
    return subprocess.run([sys.executable, str(REPO / "examples" / name), f"--logdir={tmp_path}",
                           f"--run_name={run_name}", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout, env=SCRIPT_ENV)


def _kill_at(name, tmp_path, args, *, step):
    """Runs the example as run "killed" and SIGKILLs it once a checkpoint reaches `step`."""
    command = [sys.executable, str(REPO / "examples" / name), f"--logdir={tmp_path}",
               "--run_name=killed", *args]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=SCRIPT_ENV)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if (checkpoints.latest_step(tmp_path / "killed") or 0) >= step:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"


def _recorded(run_dir):
    return json.loads((run_dir / "config.json").read_text())["recorded"]


def test_cnn_example(tmp_path, real_mnist):
    order = "sorted"  # the example's own model in the order that shows forgetting
    proc = _example("cnn_mnist.py", tmp_path, order, f"--order={order}", *SMALL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "test accuracy per class:" in proc.stdout and "forgetting on the probe" in proc.stdout
    recorded = _recorded(tmp_path / order)
    assert recorded["model"]["builder"].endswith(":small_cnn")
    assert "Conv2D" in [layer["class"] for layer in recorded["model"]["layers"]]
    assert recorded["data"]["example_shape"] == [28, 28]
    results = json.loads((tmp_path / order / "results.json").read_text())
    assert len(results["test_class_accuracy"]) == 10 and results["bwt"] is not None


def test_digits_example_uses_the_users_arrays(tmp_path):
    pytest.importorskip("sklearn", reason="pip install 'tapeloop[examples]'")
    proc = _example("digits.py", tmp_path, "digits", "--order=sorted", "--epochs=2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = _recorded(tmp_path / "digits")["data"]
    assert data["name"] == "sklearn digits" and data["example_shape"] == [8, 8]
    assert data["num_classes"] == 10 and sum(data["test_class_counts"]) == 360
    assert "probe: 150 test examples" in proc.stdout  # 15 per class, sized for the set


def test_l2_to_phase_start_example_pulls_and_logs_its_penalty(tmp_path, real_mnist):
    args = ["--order=sorted", *SMALL, "--deterministic", "--eval_every_steps=5"]
    plain = _example("l2_to_phase_start.py", tmp_path, "plain", "--l2_strength=0", *args)
    pulled = _example("l2_to_phase_start.py", tmp_path, "pulled", "--l2_strength=1", *args)
    for proc in (plain, pulled):
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train/regularization_loss" in event_tags(tmp_path / "pulled")
    assert "train/regularization_loss" not in event_tags(tmp_path / "plain")
    a = np.load(tmp_path / "plain" / "weights" / "final.npz")
    b = np.load(tmp_path / "pulled" / "weights" / "final.npz")
    assert any(not np.array_equal(a[k], b[k]) for k in a.files)
    reader = tf.train.load_checkpoint(str(tmp_path / "pulled" / checkpoints.CHECKPOINT_DIR))
    assert any("anchor_0" in k for k in reader.get_variable_to_shape_map())


def test_noisy_step_example_trains_its_own_step_and_action_and_records_its_flags(
        tmp_path, real_mnist):
    from tapeloop.trainers.instruments import suite
    from helpers import read_events
    proc = _example("noisy_step.py", tmp_path, "noisy", "--noise=0.3", "--norm_every=4",
                    "--order=sorted", *SMALL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == ""  # tapeloop imported first: no TensorFlow start-up lines
    saved = json.loads((tmp_path / "noisy" / "config.json").read_text())
    recorded = saved["recorded"]
    assert recorded["train_step"] == "noisy_step.py:noisy_step"
    assert recorded["script_flags"] == {"noise": 0.3, "norm_every": 4}
    hparams = suite.hparams_of(saved)
    assert (hparams["noise"], hparams["order"], hparams["max_train_examples"]) == (
        0.3, "sorted", 600)
    norms = read_events(tmp_path / "noisy")["mine/weight_norm"]
    steps = json.loads((tmp_path / "noisy" / "results.json").read_text())["steps"]
    assert sorted(norms) == list(range(4, steps + 1, 4)) and len(set(norms.values())) > 1


@pytest.mark.slow
def test_subclassed_model_on_tf_data_killed_and_resumed_bit_exactly(tmp_path, real_mnist):
    args = ["--order=sorted", "--max_train_examples=2000", "--epochs=2", "--deterministic",
            "--checkpoint_every_steps=7", "--probe_per_class=10"]
    straight = _example("subclassed_tfdata.py", tmp_path, "straight", *args)
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert _recorded(tmp_path / "straight")["data"]["name"] == "mnist via tf.data"
    _kill_at("subclassed_tfdata.py", tmp_path, args, step=14)  # a fixed, early point
    resumed = _example("subclassed_tfdata.py", tmp_path, "killed", *args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout
    a = np.load(tmp_path / "straight" / "weights" / "final.npz")
    b = np.load(tmp_path / "killed" / "weights" / "final.npz")
    assert a.files == b.files and len(a.files) == 4
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.slow
def test_users_own_remedy_killed_and_resumed_bit_exactly_strength_recorded(tmp_path):
    """examples/mas_remedy.py: a remedy written as a user would, no edit to tapeloop.
    (Another strength on resume is refused: tests/test_continual.py.)"""
    from helpers import fake_mnist
    np.savez(tmp_path / "small.npz", **fake_mnist(n_train=400, n_test=60)._asdict())
    args = ["--scenario=split_mnist_task", f"--data_dir={tmp_path / 'small.npz'}",
            "--steps_per_task=30", "--batch_size=16", "--hidden_sizes=32",
            "--probe_per_class=3", "--deterministic", "--checkpoint_every_steps=5",
            "--mas_lambda=0.5", "--mas_samples=50"]
    straight = _example("mas_remedy.py", tmp_path, "straight", *args)
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert "mas (lambda 0.5, samples 50)" in straight.stdout and "min-ACC" in straight.stdout
    _kill_at("mas_remedy.py", tmp_path, args, step=40)  # after task 0's end
    resumed = _example("mas_remedy.py", tmp_path, "killed", *args)
    assert resumed.returncode == 0 and "resuming" in resumed.stdout, resumed.stderr[-2000:]
    a = np.load(tmp_path / "straight" / "weights" / "final.npz")
    b = np.load(tmp_path / "killed" / "weights" / "final.npz")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    remedies = _recorded(tmp_path / "straight")["remedies"]
    assert remedies == [{"name": "mas", "class": "mas_remedy.py:MAS",
                         "hparams": {"lambda": 0.5, "samples": 50}}]
