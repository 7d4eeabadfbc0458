"""End-to-end tier: the faults a clumsy user causes, each injected for real.

Two processes on one run directory, a sweep killed with SIGKILL and rerun, a full
disk (a small tmpfs, where this machine lets a test mount one), a run directory
that turns read-only, a report written where it cannot be. Each ends in one line
saying what happened and what to do, and loses nothing already saved.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tapeloop.trainers import cli
from tapeloop.trainers.records import run_dirs
from helpers import REPO, SCRIPT_ENV, run_train_here, train_command

NOISE = ["--dataset=noise", "--noise_examples=600", "--hidden_sizes=64", "--batch_size=10",
         "--probe_per_class=20", "--eval_every_steps=5", "--checkpoint_every_steps=10",
         "--deterministic"]


def _popen(command, **kw):
    return subprocess.Popen(command, cwd=REPO, env=SCRIPT_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _errors(text):
    return [x for x in text.splitlines() if x.startswith("error:")]


def _weights(run_dir):
    return np.load(run_dir / "weights" / "final.npz")


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.files == wb.files
    for key in wa.files:
        np.testing.assert_array_equal(wa[key], wb[key], err_msg=key)


def _wait_for_checkpoint(run_dir, proc, seconds=180):
    deadline = time.monotonic() + seconds
    while run_dirs.latest_step(run_dir) is None:
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_two_processes_on_one_run_dir_one_is_refused_naming_the_other(tmp_path):
    (tmp_path / "logs").mkdir()
    procs = [_popen(train_command(*NOISE, "--epochs=4", f"--learning_rate={lr}",
                                  f"--logdir={tmp_path / 'logs'}", "--run_name=run"))
             for lr in (0.001, 0.002)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], [o[1][-1500:] for o in outs]
    winner = next(p for p in procs if p.returncode == 0)
    loser_err = outs[[p.returncode for p in procs].index(1)][1]
    errors = _errors(loser_err)
    assert errors == [f"error: {tmp_path / 'logs' / 'run'} is in use by another tapeloop "
                      f"process (PID {winner.pid}): wait for it to end or stop it, then run "
                      "the same command again"]
    assert "Traceback" not in loser_err
    run = tmp_path / "logs" / "run"
    lr = json.loads((run / "config.json").read_text())["learning_rate"]
    assert lr == (0.001, 0.002)[procs.index(winner)]
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # one writer, one log


@pytest.mark.slow
def test_a_sweep_killed_with_sigkill_takes_its_points_down_and_the_rerun_finishes(tmp_path):
    sweep = [sys.executable, "-m", "tapeloop.trainers.sweep", *NOISE, "--epochs=5",
             "--order=sorted", "--sweep=learning_rate=1e-3,3e-3", "--parallel=2",
             f"--logdir={tmp_path}", "--run_name=grid"]
    points = ["learning_rate=1e-3", "learning_rate=3e-3"]
    proc = _popen(sweep)
    for point in points:
        _wait_for_checkpoint(tmp_path / "grid" / point, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 120  # Each point gets SIGTERM, checkpoints and stops.
    while any(run_dirs.lock_holder(tmp_path / "grid" / p) for p in points):
        assert time.monotonic() < deadline, "a point kept training after its sweep died"
        time.sleep(0.2)
    for point in points:
        log = (tmp_path / "grid" / f"{point}.log").read_text()
        assert "stopped by signal 15 at step" in log, log[-1500:]
        assert not (tmp_path / "grid" / point / "results.json").exists()
    again = subprocess.run(sweep, cwd=REPO, env=SCRIPT_ENV, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    for point in points:
        assert "resuming" in (tmp_path / "grid" / f"{point}.log").read_text()
    print(again.stdout)  # the table, for the record (pytest -s)
    table = again.stdout.split("\n\n")[1].splitlines()
    assert [row.split()[0] for row in table[1:]] == points
    # Nothing lost: the killed-and-resumed point equals a run never interrupted.
    straight = run_train_here(*NOISE, "--epochs=5", "--order=sorted", "--learning_rate=1e-3",
                              f"--logdir={tmp_path}", "--run_name=straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    _assert_same_weights(tmp_path / "straight", tmp_path / "grid" / points[0])


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs at tmp_path/disk; skipped, saying why, where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {proc.stderr.strip() or 'not root'}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_stops_with_one_line_and_the_rerun_continues_exactly(tmp_path, small_disk):
    args = [*NOISE, "--epochs=3", f"--logdir={small_disk}", "--run_name=run"]
    proc = _popen(train_command(*args))
    run = small_disk / "run"
    _wait_for_checkpoint(run, proc)
    with open(small_disk / "filler", "wb", buffering=0) as f:  # Fill it while the run trains.
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    _, err = proc.communicate(timeout=300)
    step = run_dirs.latest_step(run)
    assert proc.returncode == 1 and "Traceback" not in err, err[-2000:]
    assert _errors(err) == [
        f"error: cannot write {run}: no space left on device; the last checkpoint (step "
        f"{step}) is intact: free some space, then run the same command again to resume"]
    os.remove(small_disk / "filler")
    resumed = run_train_here(*args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"from its checkpoint at step {step}" in resumed.stdout
    straight = run_train_here(*NOISE, "--epochs=3", f"--logdir={tmp_path}", "--run_name=straight")
    assert straight.returncode == 0, straight.stderr[-2000:]
    _assert_same_weights(tmp_path / "straight", run)


# A user's script that reuses tapeloop's flags, with a fault injected at the first
# accuracy-matrix write: the errno a read-only (or full) run directory gives.
FAULTY_SCRIPT = """
import errno, sys
from absl import app
import tapeloop
from tapeloop.trainers.instruments import suite as instruments

def fail(path, payload):
    raise OSError(errno.{errno_name}, "injected", str(path))

instruments._write_atomic = fail
tapeloop.define_flags()
app.run(tapeloop.run_from_flags)
"""


@pytest.mark.parametrize("errno_name,why,fix", [
    ("EROFS", "read-only file system", "make it writable again"),
    ("ENOSPC", "no space left on device", "free some space"),
])
def test_a_run_dir_that_cannot_be_written_mid_run_is_one_line(tmp_path, errno_name, why, fix):
    script = tmp_path / "faulty.py"
    script.write_text(FAULTY_SCRIPT.format(errno_name=errno_name))
    proc = subprocess.run([sys.executable, str(script), *NOISE, "--epochs=2",
                           f"--logdir={tmp_path}", "--run_name=run"], cwd=REPO, env=SCRIPT_ENV,
                          capture_output=True, text=True, timeout=300)
    run = tmp_path / "run"
    step = run_dirs.latest_step(run)
    assert step is not None and proc.returncode == 1 and "Traceback" not in proc.stderr
    assert _errors(proc.stderr) == [
        f"error: cannot write {run}: {why}; the last checkpoint (step {step}) is intact: "
        f"{fix}, then run the same command again to resume"]


def test_write_failures_are_named_from_errno_and_from_tensorflow_messages():
    assert cli.write_failure(OSError(errno.EROFS, "x")) == "read-only file system"
    assert cli.write_failure(OSError(errno.EEXIST, "x")) is None

    class OpError(Exception):
        message = "SaveV2 ...; No space left on device [Op:SaveV2]"

    assert cli.write_failure(OpError()) == "no space left on device"


@pytest.mark.parametrize("flag", ["csv", "plot"])
def test_a_report_file_that_cannot_be_written_is_one_line(tmp_path, small_sorted_run, flag):
    run_dir, _, _ = small_sorted_run
    target = tmp_path / "no" / "such" / "dir" / "x"
    proc = subprocess.run([sys.executable, "-m", "tapeloop.trainers.report", str(run_dir),
                           f"--{flag}={target}"], cwd=REPO, env=SCRIPT_ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert _errors(proc.stderr) == [f"error: --{flag} {target} cannot be written: No such "
                                    "file or directory"]
