"""The training script on a few hundred real MNIST images.

End to end (a subprocess: `run_train`) for what a person runs: a real run, a flag file,
the help. Bad values and run directories go through the same flag parsing and `main`
in this process (`run_train_here`): they are about the answer, not the process.
"""

import json

import pytest

from helpers import (fake_mnist, read_events, run_train as _train,
                            run_train_here as _here, write_idx_dir)


def test_sorted_run_on_real_mnist_writes_files_and_prints_the_table(tmp_path, real_mnist):
    logdir = tmp_path / "logs"
    proc = _train("--flagfile=trainers/configs/mnist_sorted.flags", "--epochs=2",
                  "--max_train_examples=600", "--max_test_examples=300",
                  "--probe_per_class=20",
                  f"--logdir={logdir}", "--run_name=small")
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = logdir / "small"
    results = json.loads((run / "results.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert config["order"] == "sorted" and config["hidden_sizes"] == [150, 100]
    out = proc.stdout
    assert "133,860" in out  # the model summary
    assert "epoch 2/2" in out and "test accuracy per class:" in out
    table = out[out.index("test accuracy per class:"):].splitlines()[1:13]
    assert table[0].split() == ["class", "examples", "test"]
    assert len(table) == 12  # header, ten classes, "all"
    all_row = table[-1].split()
    assert all_row[:2] == ["all", "300"]
    assert float(all_row[2]) == pytest.approx(results["test_accuracy"], abs=5e-5)
    for c in range(10):
        row = table[1 + c].split()
        assert int(row[0]) == c
        assert float(row[2]) == pytest.approx(results["test_class_accuracy"][c], abs=5e-5)
    events = read_events(run)
    assert sorted(events["train/loss"]) == list(range(results["steps"]))
    assert f"forgetting on the probe: average {results['average_forgetting']:.4f}" in out
    for name in ("accuracy_matrix.csv", "accuracy_matrix.png", "weights/initial.npz",
                 "weights/final.npz"):
        assert (run / name).is_file(), name


def test_flag_file_then_override(tmp_path):
    proc = _here("--flagfile=trainers/configs/noise.flags", "--epochs=2", "--probe_per_class=50",
                 "--learning_rate=0.05", f"--logdir={tmp_path}", "--run_name=noise")
    assert proc.returncode == 0, proc.stderr[-2000:]
    config = json.loads((tmp_path / "noise" / "config.json").read_text())
    assert config["learning_rate"] == 0.05 and config["epochs"] == 2
    assert config["hidden_sizes"] == [100, 100] and config["dataset"] == "noise"
    assert "11,503" in proc.stdout


@pytest.mark.parametrize("flag,message", [
    ("--batch_size=0", "batch_size"),
    ("--learning_rate=0", "learning_rate must be positive"),
    ("--learning_rate=-0.1", "learning_rate must be positive"),
    ("--optimizer=lbfgs", "optimizer"),
    ("--order=random", "order"),
    ("--dataset=cifar", "dataset"),
    ("--validation_split=1.0", "validation_split"),
    ("--validation_split=-0.5", "validation_split"),
    ("--hidden_sizes=150,abc", "hidden_sizes"),
    ("--hidden_sizes=150,0", "hidden_sizes"),
    ("--epochs=0", "epochs"),
    ("--validation_scope=current_class", "needs order 'sorted'"),
])
def test_bad_flags_exit_with_one_clear_line_and_create_nothing(tmp_path, flag, message):
    logdir = tmp_path / "logs"
    proc = _here("--dataset=noise", flag, f"--logdir={logdir}", "--run_name=r")
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not logdir.exists()


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt"])
def test_bad_data_dir_exits_with_one_clear_line_and_creates_nothing(tmp_path, case):
    data_dir = tmp_path / "mnist"
    if case != "missing":
        data_dir.mkdir()
    if case == "corrupt":
        write_idx_dir(data_dir, fake_mnist())
        labels = data_dir / "train-labels-idx1-ubyte"
        labels.write_bytes(b"\x00\x00\x08\x01" + labels.read_bytes()[4:-7])
    logdir = tmp_path / "logs"
    proc = _here(f"--data_dir={data_dir}", f"--logdir={logdir}", "--run_name=r")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(data_dir) in errors[0], proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    assert not logdir.exists()


def test_help_describes_every_flag():
    proc = _train("--helpshort", timeout=60)
    text = proc.stdout + proc.stderr
    for flag in ("order", "validation_scope", "hidden_sizes", "optimizer", "learning_rate",
                 "batch_size", "epochs", "data_dir", "steps_per_loop", "logdir", "run_name"):
        assert f"--{flag}" in text
    assert "(no help available)" not in text


def test_every_flag_default_is_the_config_default():
    """The script's flags repeat Config's defaults (absl style, literal): they must agree."""
    import dataclasses
    import xml.etree.ElementTree as ET

    from tapeloop.trainers.records.config import Config

    proc = _train("--helpxml", timeout=60)
    flags = {f.findtext("name"): f.findtext("default") or ""
             for f in ET.fromstring(proc.stdout).iter("flag")
             if f.findtext("file", "").endswith("train.py")}

    def as_flag(value):
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, tuple):
            return ",".join(map(str, value))
        return str(value)

    fields = {f.name: as_flag(f.default) for f in dataclasses.fields(Config)}
    assert set(fields) <= set(flags)  # every setting has its flag
    assert {name: flags[name] for name in fields} == fields


@pytest.mark.parametrize("flag,message", [
    ("--steps_per_loop=0", "steps_per_loop"),
    ("--eval_every_steps=-1", "eval_every_steps"),
    ("--checkpoint_every_steps=-5", "checkpoint_every_steps"),
    ("--batch_splits=0", "batch_splits"),
    ("--probe_per_class=2000", "probe_per_class (2000) exceeds what the test split allows"),
    ("--max_train_examples=1", "the training split is empty (validation 1,"),
    ("--order=sorted --class_order=9", "class_order (9,) must list each class of the data"),
    ("--hidden_sizes=1000000000", "model mlp: out of memory building it (OOM when "
                                  "allocating tensor with shape[784,1000000000]"),
    ("--run_name=.", "--run_name ('.') must name a directory inside --logdir"),
])
def test_more_bad_values_exit_with_one_line_and_create_nothing(tmp_path, flag, message,
                                                               real_mnist):
    logdir = tmp_path / "logs"
    proc = _here("--max_train_examples=300", f"--logdir={logdir}", "--run_name=r", *flag.split())
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    assert not logdir.exists()


def test_log_directory_that_is_a_file_or_cannot_be_written(tmp_path):
    (tmp_path / "afile").write_text("x")
    for logdir, message in ((tmp_path / "afile", "is a file, not a directory"),
                            ("/proc/tapeloop-logs", "cannot be created or written")):
        proc = _here("--dataset=noise", f"--logdir={logdir}", "--run_name=r")
        errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
        assert proc.returncode == 1 and len(errors) == 1 and message in errors[0], \
            proc.stderr[-1500:]
        assert "Traceback" not in proc.stderr
    assert (tmp_path / "afile").read_text() == "x"


def test_run_directory_holding_an_incompatible_run_is_left_alone(tmp_path):
    first = _here("--dataset=noise", "--epochs=1", f"--logdir={tmp_path}", "--run_name=r")
    assert first.returncode == 0, first.stderr[-1500:]
    def listing():  # The run and everything in it (the lock beside it names its holder).
        return sorted((p.relative_to(tmp_path), p.stat().st_mtime)
                      for p in (tmp_path / "r").rglob("*"))

    before = listing()
    proc = _here("--dataset=noise", "--epochs=1", "--learning_rate=0.5", "--order=sorted",
                  f"--logdir={tmp_path}", "--run_name=r")
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-1500:]
    assert "--learning_rate was 0.001, now 0.5" in errors[0] and "--order was" in errors[0]
    assert listing() == before
    assert [p.name for p in sorted(tmp_path.iterdir()) if not p.name.endswith(".hparams")] == [
        ".r.lock", "r"]


def test_the_terminal_shows_tapeloops_lines_only_unless_tensorflows_are_asked_for(tmp_path):
    """TensorFlow's C++ start-up lines (oneDNN, CPU features, a failed CUDA probe) stay off
    stderr; TAPELOOP_TF_LOGS=1 brings them back."""
    args = ("--dataset=noise", "--epochs=1", "--noise_examples=200", "--probe_per_class=5",
            f"--logdir={tmp_path}",
            "--overwrite")
    quiet = _train(*args, "--run_name=quiet", env={"TF_CPP_MIN_LOG_LEVEL": ""})
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stderr == "", quiet.stderr[-2000:]
    assert "epoch 1/1" in quiet.stdout
    loud = _train(*args, "--run_name=loud", env={"TAPELOOP_TF_LOGS": "1",
                                                 "TF_CPP_MIN_LOG_LEVEL": ""})
    assert loud.returncode == 0 and "oneDNN" in loud.stderr
