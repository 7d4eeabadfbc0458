"""Unit and logging tiers: what a run directory may be, its lock, its damaged checkpoints."""

import os
import shutil
import subprocess
import sys

import pytest

from tapeloop.trainers import cli
from tapeloop.trainers.records import run_dirs
from tapeloop.trainers.run import checkpoints, controller
from tapeloop.trainers.records.config import Config
from helpers import REPO, SCRIPT_ENV

NOISE = dict(dataset="noise", noise_examples=200, hidden_sizes=(16,), dropout=0.0,
             batch_size=50, epochs=2, steps_per_loop=2, learning_rate=0.01, probe_per_class=20,
             eval_every_steps=3, checkpoint_every_steps=2)


def test_a_directory_that_is_not_a_run_is_refused_and_left_alone(tmp_path):
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "thesis.tex").write_text("x")
    for overwrite in (False, True):
        with pytest.raises(run_dirs.RunDirError, match="holds files but no tapeloop run"):
            run_dirs.check_run_dir(tmp_path / "thesis", overwrite=overwrite, resume=True)
    assert (tmp_path / "thesis" / "thesis.tex").read_text() == "x"


def test_a_run_that_died_before_its_first_checkpoint_starts_again(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "events.out.tfevents.1").write_text("")
    assert run_dirs.check_run_dir(run, overwrite=False, resume=True) is False
    with pytest.raises(run_dirs.RunDirError, match="already holds a run"):
        run_dirs.check_run_dir(run, overwrite=False, resume=False)
    results = controller.train_and_evaluate(Config(**NOISE), run, verbose=False)
    assert results["steps"] == 8 and not (run / "events.out.tfevents.1").exists()


@pytest.mark.parametrize("name", [".", "..", "../escape", "/abs/run", "a/../../b", "a//b"])
def test_run_names_stay_inside_the_logdir(tmp_path, name):
    with pytest.raises(ValueError, match="must name a directory inside --logdir"):
        cli.run_dir_in(str(tmp_path / "logs"), name)


def test_a_run_name_through_a_symlink_out_of_the_logdir_is_refused(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "logs" / "link")
    assert cli.run_dir_in(str(tmp_path / "logs"), "sweep/p1") == tmp_path / "logs/sweep/p1"
    with pytest.raises(ValueError, match="through a symbolic link"):
        cli.run_dir_in(str(tmp_path / "logs"), "link/run")


def test_the_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    run = tmp_path / "logs" / "run"
    with run_dirs.RunLock(run) as lock:
        assert not lock.held  # the parent did not exist: nothing was created
        assert not (tmp_path / "logs").exists()
        lock.acquire()
        assert run_dirs.lock_holder(run) == os.getpid()
        other = subprocess.run(
            [sys.executable, "-c", "import sys; from tapeloop.trainers.records import run_dirs\n"
             f"run_dirs.RunLock({str(run)!r}).acquire()"],
            cwd=REPO, env=SCRIPT_ENV, capture_output=True, text=True, timeout=60)
        assert other.returncode != 0
        assert f"is in use by another tapeloop process (PID {os.getpid()})" in other.stderr
    assert run_dirs.lock_holder(run) is None


def test_a_damaged_config_json_is_one_line(tmp_path):
    config = _stopped_run(tmp_path, "run", 4)
    (tmp_path / "run" / "config.json").write_text("{not json")
    with pytest.raises(run_dirs.RunDirError, match=r"config.json is damaged \(JSONDecodeError"):
        controller.train_and_evaluate(config, tmp_path / "run", verbose=False)


def _stopped_run(tmp_path, name, stop):
    config = Config(**NOISE)
    with pytest.raises(controller.StoppedAfter):
        controller.train_and_evaluate(config, tmp_path / name, verbose=False,
                                      stop_after_steps=stop)
    return config


def _damage(run, how):
    ckpt = run / run_dirs.CHECKPOINT_DIR
    data = next(ckpt.glob("ckpt-6.data-*"))
    if how == "truncate":
        data.write_bytes(data.read_bytes()[:40])
    elif how == "flip":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif how == "delete_data":
        data.unlink()
    elif how == "delete_index_file":
        (ckpt / "checkpoint").unlink()
    elif how == "garbage_index_file":
        (ckpt / "checkpoint").write_bytes(b"\xff\xfe garbage")
    elif how == "empty_index_file":
        (ckpt / "checkpoint").write_text("")


@pytest.fixture(scope="module")
def stopped_at_6(tmp_path_factory):
    """A run stopped at step 6 (checkpoints 6, 4, 2), and the results of it never stopped."""
    root = tmp_path_factory.mktemp("fallback")
    config = Config(**NOISE | dict(deterministic=True))
    straight = controller.train_and_evaluate(config, root / "straight", verbose=False)
    with pytest.raises(controller.StoppedAfter):
        controller.train_and_evaluate(config, root / "run", verbose=False, stop_after_steps=6)
    assert checkpoints.saved_steps(root / "run") == [6, 4, 2]
    return config, root / "run", straight


@pytest.mark.parametrize("how", ["truncate", "flip", "delete_data", "delete_index_file",
                                 "garbage_index_file", "empty_index_file"])
def test_resume_falls_back_to_the_newest_checkpoint_that_restores(tmp_path, how, capsys,
                                                                   stopped_at_6):
    config, stopped, straight = stopped_at_6
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    _damage(run, how)
    resumed = controller.train_and_evaluate(config, run, verbose=True)
    out = capsys.readouterr().out
    damaged = how in ("truncate", "flip", "delete_data")
    notes = [x for x in out.splitlines() if x.startswith("note: checkpoint ckpt-6")]
    assert len(notes) == (1 if damaged else 0), out
    assert f"from its checkpoint at step {4 if damaged else 6}" in out
    if damaged:
        assert "does not restore" in notes[0] and "resuming from ckpt-4" in notes[0]
        assert list((run / "checkpoints" / "damaged").glob("ckpt-6.*"))
    assert resumed["test_loss"] == straight["test_loss"]
    assert resumed["test_class_accuracy"] == straight["test_class_accuracy"]
    assert checkpoints.saved_steps(run) == [8, 6, 4]  # the manager keeps 3


def test_when_no_checkpoint_restores_the_error_names_each_and_moves_nothing(tmp_path):
    config = _stopped_run(tmp_path, "run", 4)
    for data in (tmp_path / "run" / run_dirs.CHECKPOINT_DIR).glob("ckpt-*.data-*"):
        data.write_bytes(b"")
    with pytest.raises(run_dirs.RunDirError, match=r"no checkpoint restores \(ckpt-4: .*; "
                                                   r"ckpt-2: .*\): pass --overwrite"):
        controller.train_and_evaluate(config, tmp_path / "run", verbose=False)
    assert checkpoints.saved_steps(tmp_path / "run") == [4, 2]
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))[1:]  # no new event file


def test_a_refused_or_finished_resume_writes_no_event_file(tmp_path):
    config = Config(**NOISE)
    controller.train_and_evaluate(config, tmp_path / "run", verbose=False)
    before = sorted((tmp_path / "run").iterdir())
    for _ in range(2):  # finished: nothing to do
        controller.train_and_evaluate(config, tmp_path / "run", verbose=False)
    with pytest.raises(run_dirs.SetupError, match="is at step 8, past the 1 epochs"):
        controller.train_and_evaluate(Config(**NOISE | dict(epochs=1)), tmp_path / "run",
                                      verbose=False)
    assert sorted((tmp_path / "run").iterdir()) == before
    (tmp_path / "run" / "results.json").write_text("[1, 2")
    with pytest.raises(run_dirs.RunDirError, match="results.json is damaged"):
        controller.train_and_evaluate(config, tmp_path / "run", verbose=False)
