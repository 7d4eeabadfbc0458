"""Nothing lost: killed and resumed runs equal straight runs; signals and NaNs stop cleanly.

Subprocesses, because a process has to die (the straight runs they are compared with
run in the test worker). Real MNIST (2,000 images: class blocks of ~18 batches), the
tutorial's 784-150-100-10 model with dropout, batch 10; noise data for the signals and
the interrupted save, where the data does not matter.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from helpers import (REPO, SCRIPT_ENV, read_events, run_train, run_train_here,
                            train_command)
from tapeloop.trainers.run import checkpoints

RUN = ["--max_train_examples=2000", "--max_test_examples=1000", "--probe_per_class=50",
       "--batch_size=10", "--epochs=2", "--checkpoint_every_steps=10", "--deterministic",
       "--eval_every_steps=10"]


# Where the data does not matter (signals, an interrupted save): a smaller, faster run.
NOISE = ["--dataset=noise", "--noise_examples=3000", "--hidden_sizes=64"]


def _command(logdir, name, *extra):
    return train_command(*RUN, f"--logdir={logdir}", f"--run_name={name}", *extra)


def _run(logdir, name, *extra):
    return run_train(*RUN, f"--logdir={logdir}", f"--run_name={name}", *extra)


def _boundaries(run_dir):
    """Steps at which a phase ends, from the logged per-step phases."""
    phases = read_events(run_dir)["train/phase"]
    return {s for s in phases if s > 0 and phases[s] != phases[s - 1]}


def _checkpoint_tensors(run_dir):
    reader = tf.train.load_checkpoint(str(run_dir / checkpoints.CHECKPOINT_DIR))
    # Every variable's value; not the object graph, whose names (adam_5, seed_generator_8)
    # count the models built before in the same process.
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if "save_counter" not in k and "host_state" not in k
            and k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


@pytest.mark.slow
def test_sigkill_inside_a_block_then_resume_is_bit_identical(tmp_path, real_mnist):
    """Sorted order, so that the kill lands inside a class block; a resume inside a
    shuffled epoch is checked by test_debugging (stop_after_steps, bit-exact)."""
    order = "sorted"
    straight = run_train_here(*RUN, f"--logdir={tmp_path}", "--run_name=straight",
                              f"--order={order}")
    assert straight.returncode == 0, straight.stderr[-2000:]
    boundaries = _boundaries(tmp_path / "straight")
    total = json.loads((tmp_path / "straight" / "results.json").read_text())["steps"]
    # Kill the second run right after a checkpoint that is not at a phase end appears.
    ckpt_dir = tmp_path / "killed" / checkpoints.CHECKPOINT_DIR
    proc = subprocess.Popen(_command(tmp_path, "killed", f"--order={order}"), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=SCRIPT_ENV)
    # A seeded kill point, named in the failure messages, so that a failure reproduces.
    seed = f"kill-{order}"
    random_after = random.Random(seed).randint(1, 20)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        step = checkpoints.latest_step(tmp_path / "killed") if ckpt_dir.exists() else None
        if step is not None and random_after <= step < total - 50 and step not in boundaries:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before it could be killed ({seed})"
    resume_step = checkpoints.latest_step(tmp_path / "killed")
    assert resume_step not in boundaries and resume_step > 0, seed  # inside a block

    resumed = _run(tmp_path, "killed", f"--order={order}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming {tmp_path / 'killed'} from its checkpoint at step {resume_step}" \
        in resumed.stdout
    # Final weights and optimizer slots: bit-identical.
    a, b = _checkpoint_tensors(tmp_path / "straight"), _checkpoint_tensors(tmp_path / "killed")
    assert a.keys() == b.keys() and any("optimizer" in k for k in a)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # Per-step losses after the resume point (latest value of a step wins): identical.
    ea, eb = read_events(tmp_path / "straight"), read_events(tmp_path / "killed")
    for tag in ("train/loss", "probe/accuracy/class_0", "weights/drift/from_phase_start/model"):
        after = [s for s in sorted(ea[tag]) if s >= resume_step]
        assert after and after == [s for s in sorted(eb[tag]) if s >= resume_step]
        assert [ea[tag][s] for s in after] == [eb[tag][s] for s in after], tag
    assert sorted(eb["train/loss"]) == list(range(total))  # every step present once
    ra = json.loads((tmp_path / "straight" / "results.json").read_text())
    rb = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert ra["test_accuracy"] == rb["test_accuracy"]
    assert ra["average_forgetting"] == rb["average_forgetting"]
    # The resumed process traced each compiled function once, for every epoch end it logged.
    assert rb["tracing"] == {"train_loop": 1, "evaluate": 1, "probe": 1}
    for name in ("train_loop", "evaluate", "probe"):
        traced = eb[f"workings/tracing/{name}"]
        counts = [traced[s] for s in traced if s > resume_step]
        assert counts and set(counts) == {1.0}, name


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_flushes_and_resumes(tmp_path):
    _stop_by_signal(tmp_path, signal.SIGTERM, *NOISE)


@pytest.mark.slow
def test_sighup_the_terminal_closing_is_handled_like_sigterm(tmp_path):
    _stop_by_signal(tmp_path, signal.SIGHUP, *NOISE, resume=False)  # resumed: SIGTERM's test


def _stop_by_signal(tmp_path, signum, *data, resume=True):
    proc = subprocess.Popen(_command(tmp_path, "run", "--order=sorted", *data), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=SCRIPT_ENV)
    deadline = time.monotonic() + 240
    while checkpoints.latest_step(tmp_path / "run") is None if (
            tmp_path / "run" / checkpoints.CHECKPOINT_DIR).exists() else True:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum
    line = [x for x in err.splitlines() if x.startswith(f"stopped by signal {signum} at step")]
    assert len(line) == 1 and "run the same command again to resume" in line[0]
    step = int(line[0].split("at step ")[1].split(";")[0])
    assert checkpoints.latest_step(tmp_path / "run") == step
    assert max(read_events(tmp_path / "run")["train/loss"]) == step - 1  # flushed
    if not resume:
        return
    resumed = _run(tmp_path, "run", "--order=sorted", *data)
    assert resumed.returncode == 0 and f"from its checkpoint at step {step}" in resumed.stdout


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, real_mnist):
    proc = run_train_here(*RUN, f"--logdir={tmp_path}", "--run_name=nan", "--order=sorted",
                          "--learning_rate=1e30")
    assert proc.returncode == 1
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "is not finite (NaN or Inf) at step" in errors[0]
    bad_step = int(errors[0].split("at step ")[1].split(";")[0])
    assert "Traceback" not in proc.stderr
    latest = checkpoints.latest_step(tmp_path / "nan")
    assert latest is None or latest <= bad_step
    if latest is not None:
        for key, value in _checkpoint_tensors(tmp_path / "nan").items():
            if value.dtype.kind == "f":
                assert np.all(np.isfinite(value)), key


@pytest.mark.slow
def test_kill_while_a_checkpoint_is_written_loses_nothing(tmp_path):
    """tests/paused_save_train.py holds the process after a checkpoint's files are
    written and before the index names it; SIGKILL there leaves the index at the
    previous one, and the resume still finds the newest complete checkpoint from its files."""
    command = [sys.executable, str(REPO / "tests" / "paused_save_train.py"), "0.5",
               *_command(tmp_path, "run", "--order=sorted", *NOISE)[3:]]
    proc = subprocess.Popen(command, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=SCRIPT_ENV)
    written = []
    for line in proc.stdout:
        if line.startswith("checkpoint files written:"):
            written.append(line.split(": ", 1)[1].strip())
            if len(written) == 3:  # Kill inside the third save.
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    latest = tf.train.latest_checkpoint(str(tmp_path / "run" / checkpoints.CHECKPOINT_DIR))
    assert latest == written[1]  # the interrupted third one is not the latest
    assert os.path.exists(written[2] + ".index")  # its files were there, half-saved
    resumed = _run(tmp_path, "run", "--order=sorted", *NOISE)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    step = int(written[2].rsplit("-", 1)[1])
    assert f"from its checkpoint at step {step}" in resumed.stdout


def test_a_nan_after_checkpoints_keeps_the_last_good_one(tmp_path):
    """The loss turns NaN at step 25 (a penalty that counts its calls): checkpoints 10
    and 20 stay, finite, and the error names step 25 and checkpoint 20."""
    from tapeloop.trainers.run import controller
    from tapeloop.trainers.records.config import Config

    calls = tf.Variable(0, dtype=tf.int64)

    def penalty():
        calls.assign_add(1)
        return tf.where(calls > 25, tf.constant(np.nan, tf.float32), 0.0)

    config = Config(dataset="noise", noise_examples=600, hidden_sizes=(16,), batch_size=10,
                    epochs=1, steps_per_loop=4, checkpoint_every_steps=10, eval_every_steps=5,
                    probe_per_class=10)
    with pytest.raises(controller.NonFiniteError,
                       match=r"loss is not finite \(NaN or Inf\) at step 25; .* last good "
                             r"checkpoint is .*ckpt-20"):
        controller.train_and_evaluate(config, tmp_path / "nan", penalty=penalty, verbose=False)
    assert checkpoints.saved_steps(tmp_path / "nan") == [20, 10]
    floats = {k: v for k, v in _checkpoint_tensors(tmp_path / "nan").items()
              if isinstance(v, np.ndarray) and v.dtype.kind == "f"}
    assert any("optimizer" in k for k in floats)
    for key, value in floats.items():
        assert np.all(np.isfinite(value)), key
