"""Nothing silently wrong: each case a user hit (the fault table, docs/reliability.md) as a test.

Every bad input ends in one `error:` line, a non-zero exit and nothing created; what
can work, works, and its record (config.json, HParams) is what it trained.
"""

import inspect
import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import tapeloop
from tapeloop.trainers import report, sweep
from tapeloop.trainers.run import controller
from helpers import REPO, SCRIPT_ENV, fake_mnist, read_events, run_train_here


# What TensorFlow's C++ runtime logs as it starts (in a fresh process): not tapeloop's.
TENSORFLOW_START_UP = ("WARNING: All log", "E0000", "W0000", "I0000",
                       "To enable the following instructions")


def _one_line_error(proc, *fragments):
    """Exit non-zero, `error: ...` as the only line of stderr, no traceback."""
    assert proc.returncode not in (0, None), proc.stdout[-1000:]
    lines = [x for x in proc.stderr.splitlines() if x.strip() and not x.startswith(
        TENSORFLOW_START_UP)]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _npz(path, x_train, y_train, x_test=None, y_test=None):
    np.savez(path, x_train=x_train, y_train=y_train,
             x_test=x_train if x_test is None else x_test,
             y_test=y_train if y_test is None else y_test)
    return path


def _three_classes(n=90, dtype=np.uint8):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 4, 4)).astype(dtype), np.arange(n) % 3


def _train_on(tmp_path, data_file, *flags):
    logdir = tmp_path / "logs"
    proc = run_train_here(f"--data_dir={data_file}", f"--logdir={logdir}", "--run_name=r",
                          "--epochs=1", "--probe_per_class=5", *flags)
    return proc, logdir


# 1. Labels are checked in their own dtype: nothing wraps into another class.
@pytest.mark.parametrize("dtype,label,shown", [(np.int64, 2**32 + 2, "4294967298"),
                                               (np.uint64, 2**64 - 1, "18446744073709551615")])
def test_a_huge_label_is_refused_not_wrapped_into_a_class(tmp_path, dtype, label, shown):
    x, y = _three_classes()
    y = y.astype(dtype)
    y[y == 2] = label
    proc, logdir = _train_on(tmp_path, _npz(tmp_path / "w.npz", x, y))
    _one_line_error(proc, "class 2 has no training examples", shown)
    assert not logdir.exists()


def test_the_api_refuses_a_label_past_the_classes_present():
    x = np.zeros((6, 4), np.uint8)
    with pytest.raises(tapeloop.DataError, match="class 2 has no training examples"):
        tapeloop.from_arrays(x, np.array([0, 1, 2**40] * 2), x, np.array([0, 1, 0] * 2))


# 4. NaN and Inf are refused before anything is created, naming the split and example.
@pytest.mark.parametrize("split,bad", [("test", np.nan), ("train", np.inf)])
def test_nan_or_inf_in_a_split_is_refused_naming_split_and_example(tmp_path, split, bad):
    x, y = _three_classes(dtype=np.float32)
    broken = x.copy()
    broken[7, 1, 2] = bad
    arrays = (broken, y, x, y) if split == "train" else (x, y, broken, y)
    proc, logdir = _train_on(tmp_path, _npz(tmp_path / "n.npz", *arrays))
    _one_line_error(proc, f"{split} inputs hold NaN or Inf (first at example 7)")
    assert not logdir.exists()


# 5. A class missing from the test split trains; sparse ids and test-only classes do not.
def test_a_class_missing_from_the_test_split_is_trained_and_said(tmp_path):
    x, y = _three_classes()
    keep = y != 1
    proc, logdir = _train_on(tmp_path, _npz(tmp_path / "m.npz", x, y, x[keep], y[keep]),
                             "--order=sorted", "--eval_every_steps=2", "--batch_size=10")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "note: class 1 has no test examples" in proc.stdout
    results = json.loads((logdir / "r" / "results.json").read_text())
    assert results["test_class_accuracy"][1] is None
    assert results["test_class_count"] == [30, 0, 30]
    events = read_events(logdir / "r")
    assert "probe/accuracy/class_0" in events and "probe/accuracy/class_1" not in events
    assert np.isfinite(results["average_forgetting"]) and np.isfinite(results["bwt"])
    text = report.comparison([report.summarize(logdir / "r")])  # out of the 2 probed classes
    assert "/2\n" in text.split("classes with spread >= 0.20")[1].split("\n")[0] + "\n"
    assert "\n1               -" in text  # class 1: no test accuracy, no forgetting


@pytest.mark.parametrize("case,message", [
    ("sparse", "class 1 has no training examples (the largest class id is 1000000"),
    ("only_in_test", "class 2 has no training examples (the test split has it"),
])
def test_classes_that_can_never_be_trained_are_refused(tmp_path, case, message):
    x, y = _three_classes()
    if case == "sparse":
        y = np.where(y == 1, 10**6, y)
        arrays = (x, y)
    else:
        arrays = (x[y != 2], y[y != 2], x, y)
    proc, logdir = _train_on(tmp_path, _npz(tmp_path / "s.npz", *arrays))
    _one_line_error(proc, message)
    assert not logdir.exists()


# 6. Batch splits on short class blocks: a part is never empty, for any model.
def _subclassed(input_shape, num_classes):
    layers = tf.keras.layers

    class Net(tf.keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.image = layers.Reshape((*input_shape, 1))
            self.conv, self.pool = layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D()
            self.flat, self.out = layers.Flatten(), layers.Dense(num_classes)

        def call(self, x, training=False):
            return self.out(self.flat(self.pool(self.conv(self.image(x)))))

    return Net()


@pytest.mark.parametrize("model", ["cnn", "subclassed"])
def test_batch_splits_train_conv_models_on_short_class_blocks(tmp_path, model):
    # 21 examples a class, batches of 10: every class block ends in a batch of one.
    rng = np.random.default_rng(1)
    size = 12 if model == "cnn" else 14
    x = rng.integers(0, 256, (63, size, size), dtype=np.uint8)
    y = np.repeat(np.arange(3), 21)
    data = tapeloop.from_arrays(x, y, x[:30], np.arange(30) % 3, validation_split=0.0)
    config = tapeloop.Config(order="sorted", epochs=1, batch_size=10, batch_splits=2,
                             probe_per_class=5, eval_every_steps=3, seed=0,
                             **({"model": "cnn"} if model == "cnn" else {}))
    results = tapeloop.train_and_evaluate(
        config, tmp_path / "r", data=data, verbose=False,
        model=_subclassed if model == "subclassed" else None)
    assert results["steps"] == 9 and np.isfinite(results["test_loss"])
    assert sorted(read_events(tmp_path / "r")["train/loss"]) == list(range(9))


# 7. tf.data of unknown size is read up to a limit; elements must be (x, integer y).
def test_from_datasets_refuses_endless_and_one_hot_and_ragged_data():
    endless = tf.data.Dataset.range(10**12).map(
        lambda i: (tf.zeros([4]), tf.cast(i % 3, tf.int32))).filter(lambda x, y: True)
    with pytest.raises(tapeloop.DataError, match="no known size and yields more than 1,000"):
        tapeloop.from_datasets(endless, endless, max_examples=1000)
    one_hot = tf.data.Dataset.from_tensor_slices(
        (tf.zeros([6, 4]), tf.one_hot([0, 1, 2] * 2, 3))).batch(2)
    with pytest.raises(tapeloop.DataError, match="integer class ids"):
        tapeloop.from_datasets(one_hot, one_hot)
    ragged = tf.data.Dataset.from_tensor_slices(
        (tf.ragged.constant([[1.0, 2.0], [3.0]]), [0, 1])).batch(2)
    with pytest.raises(tapeloop.DataError, match="dense tensors"):
        tapeloop.from_datasets(ragged, ragged)
    with pytest.raises(tapeloop.DataError, match="not a rectangular array"):
        tapeloop.from_arrays([[1, 2], [3]], [0, 1], [[1, 2], [3]], [0, 1])


# 8. The report trusts only the class ids of the run's record.
def test_report_ignores_class_tags_past_the_recorded_classes(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "run"))
    with writer.as_default():
        for tag in ("probe/accuracy/class_50000000", "probe/accuracy/class_0", "test/accuracy"):
            tf.summary.scalar(tag, 0.5, step=1)
    writer.close()
    (tmp_path / "run" / "config.json").write_text(
        json.dumps({"recorded": {"data": {"num_classes": 3}}}))
    summary = report.summarize(tmp_path / "run")
    assert len(summary.test_class_accuracy) == 3
    assert "class_50000000" not in report.comparison([summary])


# 9. Raw tracebacks where one line is promised.
def _idx(path, payload: bytes, dims):
    path.write_bytes(struct.pack(">I", 0x0800 | len(dims)) + struct.pack(f">{len(dims)}I", *dims)
                     + payload)


@pytest.mark.parametrize("dims,message", [
    ((65536, 65536, 4), "announces 17179869184 bytes of data"),
    ((1,) * 255, "announces 255 dimensions"),
    ((4, 0, 4), "holds no values"),
])
def test_bad_idx_headers_are_one_line(tmp_path, dims, message):
    d = tmp_path / "idx"
    d.mkdir()
    payload = bytes(int(np.prod(dims))) if np.prod(dims) < 10**6 else b""
    for split, n in (("train", dims[0]), ("t10k", dims[0])):
        _idx(d / f"{split}-images-idx3-ubyte", payload, dims)
        _idx(d / f"{split}-labels-idx1-ubyte", bytes(n), (n,))
    proc, logdir = _train_on(tmp_path, d)
    _one_line_error(proc, message)
    assert not logdir.exists()


def test_a_symlink_loop_in_the_run_name_is_one_line(tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    os.symlink(logdir / "a", logdir / "b")
    os.symlink(logdir / "b", logdir / "a")
    proc = run_train_here("--dataset=noise", f"--logdir={logdir}", "--run_name=a/x")
    _one_line_error(proc, "cannot be resolved")


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 40])
def test_report_on_an_empty_or_garbage_event_file_is_one_line(tmp_path, content):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "events.out.tfevents.1.host").write_bytes(content)
    with pytest.raises(ValueError, match="hold no scalars"):
        report.summarize(tmp_path / "run")


def test_a_custom_step_gets_a_built_optimizer(tmp_path):
    def make(model, optimizer, **kwargs):
        def step(batch):
            with tf.GradientTape() as tape:
                logits = model(batch["image"], training=True)
                loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
                    batch["label"], logits, from_logits=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            n = tf.cast(tf.size(batch["label"]), tf.float32)
            return {"loss": loss, "accuracy": loss * 0, "correct": loss * 0, "count": n,
                    "phase": batch["phase"], "grad_norms": tf.stack([tf.norm(g) for g in grads]),
                    "grad_norm": tf.linalg.global_norm(grads),
                    "regularization_loss": tf.constant(0.0)}
        return step

    config = tapeloop.Config(dataset="noise", epochs=1, noise_examples=100, eval_every_steps=0)
    results = tapeloop.train_and_evaluate(config, tmp_path / "r", train_step=make,
                                          verbose=False)
    recorded = json.loads((tmp_path / "r" / "config.json").read_text())["recorded"]
    assert results["steps"] == 1
    assert recorded["train_step"].endswith(":test_a_custom_step_gets_a_built_optimizer.<locals>"
                                           ".make")


# 9, 10. tapeloop-sweep: arguments, point names, run names.
def _sweep(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "tapeloop.trainers.sweep", "--dataset=noise",
                           f"--logdir={tmp_path / 'logs'}", *args], cwd=REPO, env=SCRIPT_ENV,
                          capture_output=True, text=True, timeout=300)


def test_sweep_refuses_an_unclosed_quote_and_an_escaping_run_name_creating_nothing(tmp_path):
    _one_line_error(_sweep(tmp_path, "--sweep=seed=1", "--script_args=--x='a", "--run_name=s"),
                    "No closing quotation")
    _one_line_error(_sweep(tmp_path, "--sweep=seed=1", "--run_name=../../x"),
                    "must name a directory inside --logdir")
    assert not (tmp_path / "logs").exists() and not (tmp_path.parent / "x").exists()


def test_sweep_points_never_share_a_directory_and_long_names_fit():
    a, b = sweep.point_name({"data_dir": "/d/a/b"}), sweep.point_name({"data_dir": "/d/a_b"})
    assert a != b and "/" not in a + b
    long = sweep.point_name({"data_dir": "x" * 300, "seed": "1"})
    assert len(long.encode()) <= 255 and long != sweep.point_name({"data_dir": "x" * 301,
                                                                   "seed": "1"})
    assert sweep.point_name({"seed": "1"}) == "seed=1"  # plain names as before


# 11. Run names and their locks.
def test_a_run_named_like_a_lock_is_refused_and_long_names_get_a_lock(tmp_path):
    _one_line_error(run_train_here("--dataset=noise", f"--logdir={tmp_path}",
                                   "--run_name=.r.lock"), "must not start with '.'")
    name = "r" * 252
    proc = run_train_here("--dataset=noise", "--epochs=1", "--eval_every_steps=0",
                          f"--logdir={tmp_path}", f"--run_name={name}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / name / "results.json").is_file()


# 12. Messages that name the real cause.
def test_a_text_file_given_as_npz_is_named_as_such(tmp_path):
    (tmp_path / "t.npz").write_text("hello, I am text\n")
    proc, _ = _train_on(tmp_path, tmp_path / "t.npz")
    _one_line_error(proc, "not an npz file")


def test_resuming_a_data_dir_run_without_it_names_the_data(tmp_path, real_mnist):
    x, y = _three_classes()
    data = _npz(tmp_path / "d.npz", x, y)
    proc, logdir = _train_on(tmp_path, data, "--stop_after_steps=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = run_train_here(f"--logdir={logdir}", "--run_name=r", "--epochs=1",
                           "--probe_per_class=5")
    _one_line_error(again, "was trained with other data")


# 13. A run whose checkpoints take gigabytes says so before it trains.
def test_a_large_run_directory_is_announced(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(controller, "LARGE_RUN_BYTES", 100_000)
    config = tapeloop.Config(dataset="noise", epochs=1, noise_dim=300, eval_every_steps=0)
    tapeloop.train_and_evaluate(config, tmp_path / "r", stop_after_steps=0)
    out = capsys.readouterr().out
    assert f"note: {tmp_path / 'r'} will take about" in out and "3 are kept" in out
    biggest = max(p.stat().st_size for p in (tmp_path / "r" / "checkpoints").glob("*.data*"))
    each = float(out.split("each checkpoint holds ")[1].split(" GB")[0])
    assert each == pytest.approx(biggest / 2**30, abs=0.051)


# 3. An event file deleted while the run trains stops it in one line; the rerun resumes.
class DeleteEventFiles(tapeloop.Action):
    """Deletes the run's event files at a step, as a user cleaning up by hand would."""

    def on_step(self, step, context):
        for path in context.run_dir.glob("events.out.tfevents.*"):
            path.unlink()


def test_a_deleted_event_file_stops_the_run_and_the_rerun_finishes(tmp_path):
    config = tapeloop.Config(dataset="noise", epochs=2, eval_every_steps=0,
                             checkpoint_every_steps=4, noise_examples=1000)
    with pytest.raises(tapeloop.SetupError) as err:
        tapeloop.train_and_evaluate(config, tmp_path / "r", verbose=False,
                                    actions=[DeleteEventFiles(on_steps=[6])])
    message = str(err.value)
    assert "\n" not in message and "was deleted while the run trained" in message
    assert "the checkpoint " in message and "ckpt-4 is intact" in message
    results = tapeloop.train_and_evaluate(config, tmp_path / "r", verbose=False)
    assert results["steps"] == 18
    assert sorted(read_events(tmp_path / "r")["train/loss"]) == list(range(4, 18))


def _fashion():
    """The user script's data (its source is written into the script below)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 12, 12), dtype=np.uint8)
    y = np.arange(200) % 4
    return tapeloop.from_arrays(x[:160], y[:160], x[160:], y[160:], name="fashion")


# 2. A researcher's own script: tapeloop's flags apply to what it passes, or are refused;
# the record holds its model, data, step and its own flags.
USER_SCRIPT = '''
from absl import app, flags
import numpy as np
import tapeloop

tapeloop.define_flags()
_WIDTH = flags.DEFINE_integer("width", 4, "Filters of the conv layer.")


def cnn(input_shape, num_classes):
    import tensorflow as tf
    layers = tf.keras.layers
    return tf.keras.Sequential([
        layers.Input(input_shape), layers.Reshape((*input_shape, 1)),
        layers.Conv2D(_WIDTH.value, 3, activation="relu"), layers.Flatten(),
        layers.Dense(num_classes)], name="user_cnn")


''' + inspect.getsource(_fashion) + '''

def main(argv):
    tapeloop.run_from_flags(argv, model=cnn, data=_fashion)


if __name__ == "__main__":
    app.run(main)
'''


@pytest.mark.parametrize("setting,value,what", [
    ("model", "cnn", "model"), ("dropout", 0.3, "model"), ("activation", "tanh", "model"),
    ("dataset", "noise", "data"), ("data_dir", "d.npz", "data")])
def test_settings_of_tapeloops_own_model_or_data_are_refused_when_the_script_passes_its_own(
        tmp_path, setting, value, what):
    config = tapeloop.Config(**{setting: value})
    kwargs = {"model": _subclassed} if what == "model" else {
        "data": tapeloop.from_arrays(*_three_classes(), *_three_classes())}
    with pytest.raises(tapeloop.SetupError, match=f"--{setting}={value} has no effect: this "
                                                  f"script passes its own {what}"):
        tapeloop.train_and_evaluate(config, tmp_path / "r", verbose=False, **kwargs)
    assert not (tmp_path / "r").exists()


def test_a_noise_setting_for_another_data_set_is_refused():
    """The noise data set's settings would be ignored for any other data: refused, and
    refused on the command line in one line before anything is created."""
    with pytest.raises(ValueError, match="noise_dim \\(3\\) applies to dataset 'noise' only"):
        tapeloop.Config(noise_dim=3)
    assert tapeloop.Config(dataset="noise", noise_dim=3).noise_dim == 3



def test_settings_that_would_be_ignored_are_refused_and_recorded_null(tmp_path):
    """sgd's momentum under another optimizer, a scenario's steps_per_task under one of the
    tutorial's orders: refused if given (they were ignored); null in config.json and left
    out of HParams at their defaults, so the record holds only what trained."""
    with pytest.raises(ValueError, match=r"^momentum \(0.9\) applies to optimizer 'sgd' only "
                                         r"\(optimizer is 'adam'\)$"):
        tapeloop.Config(momentum=0.9)
    with pytest.raises(ValueError, match=r"^nesterov \(True\) applies to optimizer 'sgd' only"):
        tapeloop.Config(optimizer="rmsprop", nesterov=True)
    data = tapeloop.from_arrays(*fake_mnist(n_train=100, n_test=30), name="fake")
    small = dict(order="sorted", epochs=1, batch_size=20, probe_per_class=3, hidden_sizes=(8,))
    with pytest.raises(tapeloop.SetupError, match=r"^--steps_per_task=10 applies to a scenario "
                                                  r"only \(order is 'sorted'\)$"):
        tapeloop.train_and_evaluate(tapeloop.Config(steps_per_task=10, **small), tmp_path / "r",
                                    data=data, verbose=False)
    assert not (tmp_path / "r").exists()
    for name, settings in (("adam", {}), ("sgd", dict(optimizer="sgd", momentum=0.5))):
        tapeloop.train_and_evaluate(tapeloop.Config(**small, **settings), tmp_path / name,
                                    data=data, verbose=False)
    records = {name: json.loads((tmp_path / name / "config.json").read_text())
               for name in ("adam", "sgd")}
    assert [(r["momentum"], r["nesterov"], r["steps_per_task"]) for r in records.values()] == [
        (None, None, None), (0.5, False, None)]
    assert "momentum" not in _session_hparams(tmp_path / "adam")
    assert _session_hparams(tmp_path / "sgd")["momentum"] == 0.5

def _session_hparams(run_dir):
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    for tag in acc.Tags()["tensors"]:
        data = plugin_data_pb2.HParamsPluginData.FromString(
            acc.SummaryMetadata(tag).plugin_data.content)
        if data.HasField("session_start_info"):
            return {k: v.string_value or v.number_value or v.bool_value
                    for k, v in data.session_start_info.hparams.items()}
    raise AssertionError("no HParams session")


def test_a_users_script_record_is_what_it_trained(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT)
    logdir = tmp_path / "logs"

    def run(*flags):
        return subprocess.run([sys.executable, str(script), f"--logdir={logdir}", "--run_name=r",
                               "--probe_per_class=5", "--eval_every_steps=2", *flags],
                              cwd=tmp_path, env=SCRIPT_ENV, capture_output=True, text=True,
                              timeout=300)

    proc = run("--max_train_examples=100", "--validation_split=0.5", "--width=2", "--epochs=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train 48, validation 52 (all_classes)" in proc.stdout
    saved = json.loads((logdir / "r" / "config.json").read_text())
    recorded = saved["recorded"]
    assert saved["max_train_examples"] == 100 and saved["validation_split"] == 0.5
    assert all(saved[k] is None for k in ("dataset", "data_dir", "model", "hidden_sizes",
                                          "activation", "dropout"))
    assert recorded["data"]["name"] == "fashion" and recorded["data"]["train_examples"] == 48
    assert recorded["data"]["validation_examples"] == 52
    assert recorded["model"]["builder"] == "user_script.py:cnn"
    assert recorded["model"]["trainable_parameters"] == 2 * 9 + 2 + 10 * 10 * 2 * 4 + 4
    assert recorded["train_step"] == "tapeloop.trainers.engine.steps:make_train_step"
    assert recorded["script_flags"] == {"width": 2}
    hparams = _session_hparams(logdir / "r")
    assert hparams["width"] == "2" and hparams["data"] == "fashion"  # integers as text
    assert hparams["model"] == "user_script.py:cnn" and hparams["max_train_examples"] == "100"
    assert "hidden_sizes" not in hparams and "dropout" not in hparams
    # A resume with another value of the script's flag (in this process: the same check).
    with pytest.raises(tapeloop.SetupError, match="--width was 2, now 3"):
        tapeloop.train_and_evaluate(
            tapeloop.Config(**{k: v for k, v in saved.items() if k != "recorded"
                               and v is not None and k != "hidden_sizes"}),
            logdir / "r", data=_fashion(), model=_subclassed, script_flags={"width": 3},
            verbose=False)


def test_a_resume_with_another_loss_or_train_step_is_refused_naming_it(tmp_path):
    from tapeloop.trainers.records import run_dirs

    (tmp_path / "config.json").write_text(json.dumps({"recorded": {
        "objective": "softmax cross-entropy", "train_step": "mine.py:make_step",
        "script_flags": {"width": 2}}}))
    same = {"objective": "softmax cross-entropy", "train_step": "mine.py:make_step",
            "script_flags": {"width": 2}}
    run_dirs.check_recorded(tmp_path, same)  # nothing changed: no error
    for key, value, message in (
            ("objective", "mse", "another loss (softmax cross-entropy, now mse)"),
            ("train_step", "mine.py:mixup", "another train step (mine.py:make_step, now "
                                            "mine.py:mixup)")):
        with pytest.raises(run_dirs.RunDirError, match=re.escape(message)):
            run_dirs.check_recorded(tmp_path, dict(same, **{key: value}))
