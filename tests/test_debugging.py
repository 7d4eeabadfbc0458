"""Step-level debugging flags, each exercised on small data: in this process, or as a
subprocess where the flag changes TensorFlow's global state (eager, numerics, profiler)."""

import re
import subprocess
import sys

import numpy as np
import pytest

from helpers import REPO, SCRIPT_ENV, read_events, run_train, run_train_here
from tapeloop.trainers.instruments import step_dumps

NOISE = ["--dataset=noise", "--noise_examples=300", "--hidden_sizes=16", "--dropout=0.2",
         "--batch_size=30", "--probe_per_class=20", "--eval_every_steps=3"]


def _train(tmp_path, name, *extra):
    """The training script, run in this process (see `run_train_here`)."""
    return run_train_here(*NOISE, f"--logdir={tmp_path}", f"--run_name={name}", *extra)


def _process(tmp_path, name, *extra):
    """The training script as a subprocess: for flags that change TensorFlow's global state."""
    return run_train(*NOISE, f"--logdir={tmp_path}", f"--run_name={name}", *extra)


def _weights(tmp_path, name):
    return np.load(tmp_path / name / "weights" / "final.npz")


def _assert_same_weights(tmp_path, name_a, name_b):
    a, b = _weights(tmp_path, name_a), _weights(tmp_path, name_b)
    assert a.files == b.files
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])


def test_run_eagerly_gives_the_compiled_weights(tmp_path):
    for name, extra, run in (("compiled", [], _train), ("eager", ["--run_eagerly"], _process)):
        proc = run(tmp_path, name, "--epochs=2", "--deterministic", *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = _weights(tmp_path, "compiled"), _weights(tmp_path, "eager")
    for key in a.files:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-7)


def test_stop_after_steps_checkpoints_and_the_rerun_continues_exactly(tmp_path):
    straight = _train(tmp_path, "straight", "--epochs=3", "--deterministic")
    assert straight.returncode == 0, straight.stderr[-2000:]
    stopped = _train(tmp_path, "stopped", "--epochs=3", "--deterministic",
                     "--stop_after_steps=13")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert "stopped after step 13 as asked (checkpoint saved)" in stopped.stdout
    assert not (tmp_path / "stopped" / "results.json").exists()
    resumed = _train(tmp_path, "stopped", "--epochs=3", "--deterministic")
    assert resumed.returncode == 0 and "from its checkpoint at step 13" in resumed.stdout
    _assert_same_weights(tmp_path, "straight", "stopped")


def test_check_numerics_names_the_op_that_made_the_nan(tmp_path):
    proc = _process(tmp_path, "nan", "--epochs=1", "--check_numerics", "--learning_rate=1e30")
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error: check_numerics:")]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-2000:]
    assert "Infinity or NaN" in errors[0] or "Detected at node" in errors[0]
    assert any(op in errors[0] for op in ("MatMul", "Relu", "BiasAdd", "dense", "logits"))
    # What ran it and the step it was on; TensorFlow's own log only names the op.
    assert re.search(r" in the training step at step \d+; training stopped, nothing saved",
                     errors[0]), errors[0]
    assert proc.stderr.strip().splitlines()[-1] == errors[0]


def test_profile_steps_write_a_profiler_trace(tmp_path):
    proc = _process(tmp_path, "prof", "--epochs=2", "--profile_steps=3,9")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "profiler trace of steps 3-9 written to" in proc.stdout
    assert list((tmp_path / "prof" / "plugins" / "profile").glob("*/*.xplane.pb"))
    bad = _train(tmp_path, "bad", "--profile_steps=9,3")  # refused before the profiler
    assert bad.returncode != 0 and "--profile_steps must be two steps A,B" in bad.stderr


def test_inspect_steps_dump_the_steps_and_change_nothing_else(tmp_path):
    plain = _train(tmp_path, "plain", "--epochs=2", "--deterministic")
    assert plain.returncode == 0, plain.stderr[-2000:]
    # Step 5 is a cadence step (5 + 1 is a multiple of 3): the probe follows it.
    inspected = _train(tmp_path, "inspected", "--epochs=2", "--deterministic",
                       "--inspect_steps=2,4-6,17")
    assert inspected.returncode == 0, inspected.stderr[-2000:]
    lines = [x for x in inspected.stdout.splitlines() if x.startswith("inspect step ")]
    assert [int(x.split()[2].rstrip(":")) for x in lines] == [2, 4, 5, 6, 17]
    events = read_events(tmp_path / "inspected")
    for step in (2, 4, 5, 6, 17):
        path = tmp_path / "inspected" / "inspect" / f"step_{step}.npz"
        assert f"-> {path}" in lines[[2, 4, 5, 6, 17].index(step)]
        dump = step_dumps.load(path)
        assert int(dump["step"]) == step and int(dump["phase"]) == events["train/phase"][step]
        n = len(dump["label"])
        assert dump["image"].shape == (n, 10) and dump["logits"].shape == (n, 3)
        np.testing.assert_allclose(dump["example_loss"].mean(), events["train/loss"][step],
                                   rtol=1e-5)
        assert [u.shape for u in dump["update"].values()] == [(10, 16), (16,), (16, 3), (3,)]
        assert all(np.any(u != 0) for u in dump["update"].values())
    # The inspected steps were the same steps: same weights, same logged values.
    _assert_same_weights(tmp_path, "plain", "inspected")
    plain_events = read_events(tmp_path / "plain")
    for tag, values in plain_events.items():
        if not tag.startswith(("workings/epoch_seconds", "workings/tracing/")):
            assert events[tag] == values, tag
    assert events["workings/tracing/inspect"] == {9: 1.0, 18: 1.0}  # traced once, then reused


def test_report_inspect_prints_a_dump_readably(tmp_path):
    proc = _train(tmp_path, "run", "--epochs=1", "--inspect_steps=3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    path = tmp_path / "run" / "inspect" / "step_3.npz"
    out = subprocess.run([sys.executable, "-m", "tapeloop.trainers.report", f"--inspect={path}"],
                         cwd=REPO, capture_output=True, text=True, env=SCRIPT_ENV)
    assert out.returncode == 0, out.stderr[-2000:]
    dump = step_dumps.load(path)
    worst = int(np.argmax(dump["example_loss"]))
    text = out.stdout
    assert f"inspect step 3: phase {int(dump['phase'])}, 30 examples" in text
    table = text.split("worst 5 examples:\n")[1].splitlines()
    assert table[1].split()[:2] == [str(worst), str(int(dump["label"][worst]))]
    assert f"{dump['example_loss'][worst]:.4f}" in table[1]
    per_class = text.split("per class in this batch:\n")[1].split("\n\n")[0].splitlines()[1:]
    for row in per_class:
        c, count, mean_loss = row.split()[:3]
        m = dump["label"] == int(c)
        assert int(count) == m.sum() and mean_loss == f"{dump['example_loss'][m].mean():.4f}"
    assert "dense_0/kernel" in text.split("per variable:")[1]
    bad = subprocess.run([sys.executable, "-m", "tapeloop.trainers.report",
                          f"--inspect={tmp_path / 'run' / 'config.json'}"],
                         cwd=REPO, capture_output=True, text=True, env=SCRIPT_ENV)
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and "npz" in bad.stderr


def test_bad_inspect_steps_are_refused_before_anything_is_written(tmp_path):
    for value, message in (("5-3", "--inspect_steps must be steps N or ranges A-B"),
                           ("x", "--inspect_steps must be steps N or ranges A-B"),
                           ("0-5000", "at most 1000 steps"),
                           ("18", "must be steps of this run, 0..17")):
        proc = _train(tmp_path, "bad", "--epochs=2", f"--inspect_steps={value}")
        assert proc.returncode != 0 and message in proc.stderr, (value, proc.stderr[-800:])
        assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_debugger_dump_dir_writes_debugger_v2_dumps_alongside_checkpoints(tmp_path):
    from tensorflow.python.debug.lib import debug_events_reader

    dump_dir = tmp_path / "tfdbg"
    proc = _process(tmp_path, "dbg", "--epochs=2", "--deterministic",
                    "--checkpoint_every_steps=4", f"--debugger_dump_dir={dump_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    suffixes = {p.suffix for p in dump_dir.glob("tfdbg_events.*")}
    assert {".execution", ".graphs", ".graph_execution_traces"} <= suffixes
    with debug_events_reader.DebugDataReader(str(dump_dir)) as reader:
        reader.update()
        graph_ops = {t.op_type for t in reader.graph_execution_traces()}
    assert {"MatMul", "Relu", "IteratorGetNext"} <= graph_ops  # the compiled train step
    plain = _train(tmp_path, "plain", "--epochs=2", "--deterministic")
    assert plain.returncode == 0
    _assert_same_weights(tmp_path, "plain", "dbg")
    assert (tmp_path / "dbg" / "checkpoints").is_dir()


def test_a_stop_exactly_at_a_phase_or_epoch_end_is_finished_on_resume(tmp_path):
    """Stopping right at a boundary saves before its end-of-phase work; resuming does it."""
    sorted_ = ["--order=sorted", "--epochs=2", "--deterministic"]
    straight = _train(tmp_path, "straight", *sorted_)
    assert straight.returncode == 0, straight.stderr[-2000:]
    rows = (tmp_path / "straight" / "accuracy_matrix.csv").read_text().splitlines()
    ends = [int(r.split(",")[0]) for r in rows[1:]]
    for name, stop in (("phase", ends[0]), ("epoch", ends[2])):  # 3 classes: 3rd ends epoch 1
        stopped = _train(tmp_path, name, *sorted_, f"--stop_after_steps={stop}")
        assert stopped.returncode == 0, stopped.stderr[-2000:]
        resumed = _train(tmp_path, name, *sorted_)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert (tmp_path / name / "accuracy_matrix.csv").read_text().splitlines() == rows
        assert resumed.stdout.count("epoch 1/2") == 1  # the epoch line comes once, resumed
        events, expected = read_events(tmp_path / name), read_events(tmp_path / "straight")
        for tag in ("forgetting/average", "val/accuracy", "test/accuracy", "train/epoch_loss"):
            assert events[tag] == expected[tag], (name, tag)
        _assert_same_weights(tmp_path, "straight", name)


def test_blocked_order_makes_a_matrix_row_per_block_and_validates_per_epoch(tmp_path):
    proc = _train(tmp_path, "blocked", "--order=blocked", "--block_steps=1", "--epochs=2",
                  "--checkpoint_every_steps=4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "class blocks of 1 batches" in proc.stdout
    events = read_events(tmp_path / "blocked")
    phases = [int(events["train/phase"][s]) for s in sorted(events["train/phase"])]
    # Train classes hold 96, 94 and 79 examples: 4, 4 and 3 batches of 30 per epoch.
    assert phases == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1] * 2
    rows = (tmp_path / "blocked" / "accuracy_matrix.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, 23))  # a row per block
    assert sorted(events["val/accuracy"]) == [11, 22]
    bad = _train(tmp_path, "bad", "--order=blocked")
    assert bad.returncode == 1 and "needs block_steps >= 1" in bad.stderr
    assert not (tmp_path / "bad").exists()
