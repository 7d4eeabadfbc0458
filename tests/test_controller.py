"""Logging tier: a small run writes events that read back with the right tags and steps."""

import json

import numpy as np
import pytest

from tapeloop.data import pipelines, splits
from helpers import event_tags, fake_mnist, read_events
from tapeloop.trainers.run import controller
from tapeloop.trainers.records import run_dirs
from tapeloop.trainers.records.config import Config

NOISE = dict(dataset="noise", noise_examples=200, hidden_sizes=(16,), dropout=0.0,
             batch_size=50, epochs=3, steps_per_loop=2, learning_rate=0.01, probe_per_class=20,
             eval_every_steps=3)


def test_noise_run_logs_every_step_and_every_epoch(tmp_path):
    config = Config(**NOISE)
    results = controller.train_and_evaluate(config, tmp_path / "run", verbose=False)
    events = read_events(tmp_path / "run")
    data = controller.load_splits(config)
    per_epoch = pipelines.plan_epoch(data.y_train, order="shuffled", batch_size=50).total_steps
    total = 3 * per_epoch
    assert per_epoch == 4 and results["steps"] == total  # 180 training examples, batch 50
    for tag in ("train/loss", "train/accuracy", "train/phase"):
        assert sorted(events[tag]) == list(range(total)), tag  # contiguous from 0, no gaps
    # In shuffled order the phase is the epoch.
    assert [events["train/phase"][s] for s in range(total)] == [0] * 4 + [1] * 4 + [2] * 4
    epoch_ends = [per_epoch * (e + 1) for e in range(3)]
    for tag in ("train/epoch_loss", "train/epoch_accuracy", "test/loss", "test/accuracy",
                "val/loss", "val/accuracy"):
        assert sorted(events[tag]) == epoch_ends, tag
    assert "config" in event_tags(tmp_path / "run")
    # Printed/saved results agree with the events.
    assert results["test_accuracy"] == pytest.approx(events["test/accuracy"][total], abs=1e-6)
    mean_batch_acc = np.mean([events["train/accuracy"][s] for s in range(8, 12)])
    assert results["train_accuracy"] == pytest.approx(mean_batch_acc, abs=0.02)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["test_class_accuracy"] == results["test_class_accuracy"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["dataset"] == "noise"
    # One trace for the whole run: across epochs and the last partial batch of each.
    assert results["tracing"] == {"train_loop": 1, "evaluate": 1, "probe": 1}


def test_test_split_once_at_the_end_when_not_every_epoch(tmp_path, capsys):
    every = controller.train_and_evaluate(Config(**NOISE), tmp_path / "every", verbose=False)
    config = Config(**NOISE | dict(test_every_epoch=False))
    results = controller.train_and_evaluate(config, tmp_path / "run", verbose=True)
    events = read_events(tmp_path / "run")
    assert "test/accuracy" not in events and sorted(events["train/epoch_loss"]) == [4, 8, 12]
    assert events["result/test_accuracy"] == {12: pytest.approx(results["test_accuracy"])}
    # The same training: the one evaluation at the end equals the last per-epoch one.
    assert results["test_class_accuracy"] == every["test_class_accuracy"]
    assert "test loss" not in capsys.readouterr().out.split("test accuracy per class")[0]


def test_sorted_current_class_validates_each_block_on_its_class(tmp_path):
    data = splits.mnist_splits(fake_mnist(n_train=200, n_test=50), validation_split=0.1)
    config = Config(order="sorted", validation_scope="current_class", epochs=2, batch_size=8,
                    hidden_sizes=(8,), steps_per_loop=4, probe_per_class=5)
    controller.train_and_evaluate(config, tmp_path / "run", data=data, verbose=False)
    events = read_events(tmp_path / "run")
    plan = pipelines.plan_epoch(data.y_train, order="sorted", batch_size=8)
    boundaries = np.cumsum(plan.steps * 2).tolist()  # two epochs of ten class blocks
    assert sorted(events["val/accuracy"]) == boundaries
    # Each batch's phase is the class block it came from.
    phases = [events["train/phase"][s] for s in range(boundaries[-1])]
    expected = [c for c, n in zip(plan.phases * 2, plan.steps * 2) for _ in range(n)]
    assert phases == expected


def test_run_dir_holding_a_run_resumes_refuses_or_is_overwritten(tmp_path):
    config = Config(**NOISE | dict(epochs=1))
    first = controller.train_and_evaluate(config, tmp_path / "run", verbose=False)
    # Same settings: a finished run has nothing left to do and reports its results.
    again = controller.train_and_evaluate(config, tmp_path / "run", verbose=False)
    assert again["test_loss"] == first["test_loss"]
    with pytest.raises(controller.RunDirError, match="already holds a run"):
        controller.train_and_evaluate(config, tmp_path / "run", verbose=False, resume=False)
    other = Config(**NOISE | dict(epochs=1, learning_rate=0.02, seed=3))
    with pytest.raises(controller.RunDirError,
                       match=r"--learning_rate was 0.01, now 0.02, --seed was 0, now 3"):
        controller.train_and_evaluate(other, tmp_path / "run", verbose=False)
    # --overwrite never deletes what tapeloop did not write.
    (tmp_path / "run" / "notes.txt").write_text("x")
    with pytest.raises(controller.RunDirError, match=r"did not write \(notes.txt\)"):
        controller.train_and_evaluate(config, tmp_path / "run", verbose=False, overwrite=True)
    assert (tmp_path / "run" / "notes.txt").read_text() == "x"
    (tmp_path / "run" / "notes.txt").unlink()
    events = list((tmp_path / "run").glob("events.out.tfevents.*"))
    replaced = controller.train_and_evaluate(other, tmp_path / "run", verbose=False,
                                             overwrite=True)
    assert replaced["test_loss"] != first["test_loss"]
    assert not any(e.exists() for e in events)  # the old run's events went with it


def test_run_dir_under_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(controller.RunDirError, match="is a file"):
        run_dirs.check_run_dir(tmp_path / "afile" / "run", overwrite=False)


def test_same_seed_same_results(tmp_path):
    config = Config(**NOISE | dict(epochs=1))
    a = controller.train_and_evaluate(config, None, verbose=False)
    b = controller.train_and_evaluate(config, None, verbose=False)
    assert a["test_loss"] == b["test_loss"] and a["train_loss"] == b["train_loss"]


def test_numbers_read_well_a_diverged_loss_a_single_phase_and_chained_runs(capsys):
    """No 36-digit loss, no `BWT +nan` after one phase, the threads note said once."""
    from tapeloop.trainers.records import tables

    assert tables.number(988329098754827508587523421516070912.0) == "9.883e+35"
    assert tables.number(-2.5e7, signed=True) == "-2.5e+07" and tables.number(0.5) == "0.5000"
    data = splits.mnist_splits(fake_mnist(n_train=60, n_test=30), validation_split=0.0)
    controller.train_and_evaluate(Config(epochs=1, batch_size=20, hidden_sizes=(4,),
                                         probe_per_class=2, validation_split=0.0), None,
                                  data=data)
    out = capsys.readouterr().out
    assert "BWT - (one phase: nothing after it to forget)" in out and "nan" not in out
    import tensorflow as tf

    tf.constant(1.0) + 1.0  # TensorFlow has started: its threads are fixed
    other = tf.config.threading.get_intra_op_parallelism_threads() + 3
    assert controller.configure_threads(other).startswith("note: TensorFlow already started")
    assert controller.configure_threads(other) is None  # the next run in this process
