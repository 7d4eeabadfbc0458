"""tf.distribute: mirrored on two logical CPUs and two local multi-worker processes,
each compared with the single-device run."""

import json
import socket
import subprocess
import time

import numpy as np
import pytest

from helpers import (REPO, SCRIPT_ENV, read_events, run_train, run_train_here,
                            train_command)
from tapeloop.trainers.instruments import step_dumps

SMALL = ["--dataset=noise", "--noise_examples=300", "--hidden_sizes=16", "--batch_size=30",
         "--probe_per_class=20", "--eval_every_steps=3", "--epochs=2", "--dropout=0",
         "--deterministic", "--checkpoint_every_steps=4"]
MIRRORED = ["--strategy=mirrored", "--cpu_devices=2"]


def _run(extra):
    """A run with a strategy flag is a subprocess (the logical devices are set before
    TensorFlow starts); the single-device run it is compared with runs in this process."""
    return run_train if extra else run_train_here


def _weights(run_dir):
    return np.load(run_dir / "weights" / "final.npz")


def _assert_close_weights(a_dir, b_dir):
    a, b = _weights(a_dir), _weights(b_dir)
    for key in a.files:  # float sums in another order: equal within float tolerance
        np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-5 * np.abs(a[key]).max())


@pytest.mark.parametrize("order", [["--order=shuffled"], pytest.param(
    ["--order=replay", "--replay_capacity=40"], marks=pytest.mark.slow)],
    ids=["shuffled", "replay"])
def test_mirrored_on_two_devices_matches_default(tmp_path, order):
    """replay: sorted order, with the reservoir remedy's memory drawn alike on every
    replica and filled with the global batch in its order."""
    for name, extra in (("default", []), ("mirrored", MIRRORED)):
        proc = _run(extra)(*SMALL, *order, f"--logdir={tmp_path}",
                           f"--run_name={name}", "--inspect_steps=2,10", *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert "strategy mirrored: 2 replicas, 15 examples each per batch" in proc.stdout
    _assert_close_weights(tmp_path / "default", tmp_path / "mirrored")
    for step in (2, 10):  # step 10 is a partial batch in the replay order: uneven shards
        a, b = (step_dumps.load(tmp_path / name / "inspect" / f"step_{step}.npz")
                for name in ("default", "mirrored"))
        np.testing.assert_array_equal(np.sort(a["label"]), np.sort(b["label"]))
        np.testing.assert_allclose(np.sort(b["example_loss"]), np.sort(a["example_loss"]),
                                   rtol=1e-5, atol=1e-6)
        for name in a["variable_names"]:  # the global batch's whole update
            np.testing.assert_allclose(b["update"][name], a["update"][name], rtol=1e-4,
                                       atol=1e-6)
    a, b = read_events(tmp_path / "default"), read_events(tmp_path / "mirrored")
    assert a["train/phase"] == b["train/phase"]  # the same class blocks at the same steps
    assert sorted(a["forgetting/average"]) == sorted(b["forgetting/average"])
    for tag in ("train/loss", "train/accuracy", "probe/accuracy/class_1", "test/accuracy"):
        assert sorted(a[tag]) == sorted(b[tag])
        np.testing.assert_allclose([b[tag][s] for s in sorted(b[tag])],
                                   [a[tag][s] for s in sorted(a[tag])], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_mirrored_resumes_and_guards_non_finite_losses(tmp_path):
    # Compared with the single-device run, within the tolerance mirrored = default has.
    straight = run_train_here(*SMALL, f"--logdir={tmp_path}", "--run_name=straight")
    stopped = run_train(*SMALL, *MIRRORED, f"--logdir={tmp_path}", "--run_name=resumed",
                        "--stop_after_steps=7")
    assert straight.returncode == 0 and stopped.returncode == 0, stopped.stderr[-2000:]
    resumed = run_train(*SMALL, *MIRRORED, f"--logdir={tmp_path}", "--run_name=resumed")
    assert resumed.returncode == 0 and "checkpoint at step 7" in resumed.stdout
    _assert_close_weights(tmp_path / "straight", tmp_path / "resumed")
    nan = run_train(*SMALL, *MIRRORED, f"--logdir={tmp_path}", "--run_name=nan",
                    "--learning_rate=1e30")
    assert nan.returncode == 1 and "is not finite (NaN or Inf) at step" in nan.stderr


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(tmp_path, name, *extra):
    hosts = ",".join(f"127.0.0.1:{p}" for p in _free_ports(2))
    env = SCRIPT_ENV | {"TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return [subprocess.Popen(
        train_command(*SMALL, "--order=sorted", "--strategy=multi_worker",
                      f"--worker_hosts={hosts}", f"--task_index={i}", f"--logdir={tmp_path}",
                      f"--run_name={name}", "--collective_timeout_seconds=20", *extra),
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]


def _finish(procs, timeout=240):
    return [p.communicate(timeout=timeout) + (p.returncode,) for p in procs]


@pytest.mark.slow
def test_two_workers_train_like_one_and_only_the_chief_writes(tmp_path):
    default = run_train_here(*SMALL, "--order=sorted", f"--logdir={tmp_path}",
                             "--run_name=default")
    assert default.returncode == 0, default.stderr[-2000:]
    stopped = _finish(_start_workers(tmp_path, "cluster", "--stop_after_steps=7"))
    assert all(rc == 0 for _, _, rc in stopped), stopped[0][1][-2000:] + stopped[1][1][-2000:]
    (chief_out, chief_err, _), (worker_out, _, _) = _finish(_start_workers(tmp_path, "cluster"))
    assert "checkpoint at step 7" in chief_out, chief_err[-2000:]
    fingerprints = [line.split()[-1] for out in (chief_out, worker_out)
                    for line in out.splitlines() if "final weights fingerprint" in line]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    assert "worker 1: final weights fingerprint" in worker_out
    run_dir = tmp_path / "cluster"
    assert (run_dir / "results.json").is_file() and list(run_dir.glob("events.out.tfevents.*"))
    assert list((run_dir / "checkpoints").glob("ckpt-*.index"))
    assert not list((tmp_path / "tmp").iterdir())  # the worker's temporary dirs are gone
    # Only the chief locked and wrote: its run, the lock beside each run dir, and the
    # HParams experiment of the runs side by side.
    names = sorted(p.name for p in tmp_path.iterdir())
    assert [n for n in names if not n.endswith(".hparams")] == [
        ".cluster.lock", ".default.lock", "cluster", "default", "tmp"]
    assert len([n for n in names if n.endswith(".hparams")]) == 1
    a = json.loads((tmp_path / "default" / "results.json").read_text())
    b = json.loads((run_dir / "results.json").read_text())
    np.testing.assert_allclose(b["test_class_accuracy"], a["test_class_accuracy"], atol=0.01)
    _assert_close_weights(tmp_path / "default", run_dir)


@pytest.mark.slow
def test_a_dead_worker_ends_the_other_with_an_error_not_a_hang(tmp_path):
    procs = _start_workers(tmp_path, "cluster", "--epochs=1000")
    chief, worker = procs
    deadline = time.time() + 120
    while not list((tmp_path / "cluster").glob("events.out.tfevents.*")):
        assert time.time() < deadline and chief.poll() is None, chief.communicate()[1][-2000:]
        time.sleep(0.5)
    time.sleep(2)  # training is under way
    worker.kill()
    killed = time.time()
    _, err = chief.communicate(timeout=90)
    worker.communicate()
    assert chief.returncode == 1, err[-2000:]
    assert "error: multi_worker: a collective op failed" in err
    assert time.time() - killed < 60


@pytest.mark.parametrize("args,message", [
    (["--strategy=multi_worker"], "needs the cluster in TF_CONFIG, or --worker_hosts"),
    (["--strategy=multi_worker", "--worker_hosts=a,b", "--task_index=0"], "'a' is not host:port"),
    (["--strategy=multi_worker", "--worker_hosts=a:1,b:2", "--task_index=5"],
     "task_index (5) must lie in [0, 1]"),
    (["--strategy=mirrored", "--order=blocked"], "needs block_steps >= 1"),
])
def test_bad_distribution_settings_are_refused_before_anything_is_written(tmp_path, args,
                                                                         message):
    proc = run_train_here("--dataset=noise", "--epochs=1", f"--logdir={tmp_path}",
                          "--run_name=bad", *args)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-1000:]
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_mirrored_scenario_with_every_remedy_matches_default(tmp_path):
    """Task masks, replay's weighted mix, the reservoir's memory, EWC, SI's path integral,
    LwF's teacher and A-GEM's projection of the global gradient: two replicas train what
    one device trains."""
    args = ["--dataset=noise", "--noise_examples=400", "--noise_classes=4",
            "--probe_per_class=10", "--scenario=split_mnist_task", "--steps_per_task=8",
            "--batch_size=16", "--hidden_sizes=16", "--eval_every_steps=2",
            "--remedy=replay,ewc,si,lwf,agem,reservoir", "--replay_per_class=5",
            "--replay_capacity=20", "--replay_fraction=0.25", "--ewc_lambda=10",
            "--si_c=1", "--deterministic", "--checkpoint_every_steps=0"]
    for name, extra in (("default", []), ("mirrored", MIRRORED)):
        proc = _run(extra)(*args, f"--logdir={tmp_path}", f"--run_name={name}", *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert "strategy mirrored: 2 replicas" in proc.stdout
    _assert_close_weights(tmp_path / "default", tmp_path / "mirrored")
