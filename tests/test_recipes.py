"""BUILD.md's recipes, followed as a user follows them: a new scenario (one subclass with
`make_tasks`), a new remedy (one subclass with a seam and its state), a new model (a
builder), each passed as an object to one short run whose record says what it trained."""

import json

import numpy as np
import tensorflow as tf

import pytest

import tapeloop
from helpers import fake_mnist
from tapeloop.trainers.instruments import suite

SMALL = dict(epochs=1, batch_size=16, probe_per_class=4,
             eval_every_steps=2, steps_per_loop=4, validation_split=0.0, seed=0,
             checkpoint_every_steps=0)


class EvenOdd(tapeloop.Scenario):
    """Recipe 'a task sequence scored per task': two tasks, the even digits then the odd."""

    def __init__(self, kind, *, steps_per_task):
        super().__init__(kind, steps_per_task=steps_per_task)
        self.name = f"even_odd_{kind}"

    def make_tasks(self, data):
        even, odd = tuple(range(0, data.num_classes, 2)), tuple(range(1, data.num_classes, 2))
        return [tapeloop.Task(classes=even, outputs=even, name="even"),
                tapeloop.Task(classes=odd, outputs=odd, name="odd")]


class PullToTaskStart(tapeloop.Remedy):
    """Recipe 'a remedy': the `penalty` seam, its state made in `build` and checkpointed."""

    name = "pull"

    def __init__(self, strength):
        super().__init__()
        self.strength = strength

    def hparams(self):
        return {"strength": self.strength}

    def build(self, model):
        self.model = model
        self.anchor = [tf.Variable(v, trainable=False) for v in model.trainable_variables]

    def checkpoint_items(self):
        return {f"anchor_{i}": v for i, v in enumerate(self.anchor)}

    def on_phase_end(self, step, phase, context):
        for a, v in zip(self.anchor, self.model.trainable_variables):
            a.assign(v)

    def penalty(self):
        return self.strength * tf.add_n([tf.reduce_sum(tf.square(v - a)) for v, a in
                                         zip(self.model.trainable_variables, self.anchor)])


def my_builder(input_shape, num_classes):
    """Recipe 'a model': a builder taking the example shape and the number of outputs."""
    return tf.keras.Sequential([tf.keras.Input(input_shape), tf.keras.layers.Flatten(),
                                tf.keras.layers.Dense(10, activation="relu"),
                                tf.keras.layers.Dense(num_classes)])


def test_a_new_scenario_remedy_and_model_train_and_are_recorded(tmp_path):
    m = fake_mnist(n_train=400, n_test=80)
    data = tapeloop.from_arrays(*m, validation_split=0.0, name="fake")
    run = tmp_path / "even_odd"
    results = tapeloop.train_and_evaluate(
        tapeloop.Config(**SMALL), run, data=data, model=my_builder, verbose=False,
        scenario=EvenOdd("task", steps_per_task=6), remedies=[PullToTaskStart(0.5)])
    assert results["steps"] == 12
    assert len(results["test_class_accuracy"]) == 2  # scored per task: even, odd
    saved = json.loads((run / "config.json").read_text())
    recorded = saved["recorded"]
    # The top level says what trained: the object's tasks set the order and their length.
    assert (saved["order"], saved["scenario"], saved["steps_per_task"]) == (None, None, 6)
    hparams = suite.hparams_of(saved)
    assert (hparams["scenario"], hparams["steps_per_task"], hparams["remedies"],
            hparams["pull.strength"], hparams["model"]) == (
        "even_odd_task", 6, "pull", 0.5, "test_recipes:my_builder")
    assert "order" not in hparams
    # The remedy passed in, not the flags': no built-in remedy's setting is recorded.
    assert saved["remedy"] is None and saved["ewc_lambda"] is None and "ewc_lambda" not in hparams
    assert recorded["scenario"]["class"].endswith(":EvenOdd")
    assert [t["name"] for t in recorded["scenario"]["tasks"]] == ["even", "odd"]
    assert recorded["remedies"] == [{"name": "pull", "class": recorded["remedies"][0]["class"],
                                     "hparams": {"strength": 0.5}}]
    assert recorded["remedies"][0]["class"].endswith(":PullToTaskStart")
    assert recorded["model"]["builder"].endswith(":my_builder")
    assert np.isfinite(results["test_loss"])
    with pytest.raises(tapeloop.SetupError, match="--steps_per_task=50 contradicts the scenario"):
        tapeloop.train_and_evaluate(
            tapeloop.Config(**SMALL, steps_per_task=50), None, data=data, model=my_builder,
            scenario=EvenOdd("task", steps_per_task=6), verbose=False)
    with pytest.raises(tapeloop.SetupError, match="order None needs a scenario"):
        tapeloop.train_and_evaluate(tapeloop.Config(**SMALL, order=None), None, data=data,
                                    verbose=False)


class LargestLogit(tapeloop.Action):
    """Recipe 'a metric of your own': an Action measuring at its steps, written beside
    tapeloop's scalars."""

    def on_step(self, step, context):
        logits = context.forward(context.train_x[:32], training=False)
        context.write_scalars(step, {"mine/largest_logit": float(tf.reduce_max(logits))})


def largest_logit_step(model, optimizer, **kwargs):
    """Recipe 'a metric in tapeloop', step part: the step returns the metric."""
    step = tapeloop.make_train_step(model, optimizer, **kwargs)

    def train(batch):
        metrics = step(batch)
        return dict(metrics, largest_logit=tf.reduce_max(metrics["logits"]))
    return train


def test_a_new_metric_by_an_action_and_in_the_per_step_row(tmp_path, monkeypatch):
    """BUILD.md's 'Adding a metric', both ways: an Action (no edit of tapeloop) logs at its
    cadence; a step's new entry added to `loop.RECORD` and `loop.LOGGED` (the edit the
    recipe names, made here with monkeypatch) is logged at every step."""
    from tapeloop.trainers.engine import loop
    from helpers import read_events
    monkeypatch.setattr(loop, "RECORD", loop.RECORD + ("largest_logit",))
    monkeypatch.setattr(loop, "LOGGED", dict(loop.LOGGED, largest_logit="train/largest_logit"))
    m = fake_mnist(n_train=160, n_test=40)
    data = tapeloop.from_arrays(*m, validation_split=0.0, name="fake")
    run = tmp_path / "metric"
    results = tapeloop.train_and_evaluate(
        tapeloop.Config(**SMALL), run, data=data, verbose=False, train_step=largest_logit_step,
        actions=[LargestLogit(every_steps=5)])
    scalars = read_events(run)
    assert results["steps"] == 10
    assert sorted(scalars["train/largest_logit"]) == list(range(10))  # every step
    assert sorted(scalars["mine/largest_logit"]) == [5, 10]  # the action's cadence
    values = list(scalars["train/largest_logit"].values()) + list(
        scalars["mine/largest_logit"].values())
    assert all(np.isfinite(v) and v > 0 for v in values)
    assert len(set(scalars["train/largest_logit"].values())) > 1  # measured, not a constant


SCRIPT = """
from absl import app, flags
import tapeloop
from tapeloop.trainers.extend.remedies import EWC
tapeloop.define_flags()

class EvenOdd(tapeloop.Scenario):
    def make_tasks(self, data):
        return [tapeloop.Task(classes=(0, 2, 4, 6, 8), outputs=(0, 2, 4, 6, 8), name="even"),
                tapeloop.Task(classes=(1, 3, 5, 7, 9), outputs=(1, 3, 5, 7, 9), name="odd")]

def main(argv):
    tapeloop.run_from_flags(argv, scenario=EvenOdd("task", steps_per_task=4),
                            remedies=[EWC(strength=3.0)])

app.run(main)
"""


def test_a_script_passing_a_scenario_object_needs_no_scenario_flags(tmp_path):
    """A task sequence trains its tasks once, without a validation split: a script passing
    its own scenario gets those settings from its flags' defaults; given otherwise, one line."""
    import subprocess
    import sys
    from helpers import SCRIPT_ENV
    (tmp_path / "my_cl.py").write_text(SCRIPT)
    np.savez(tmp_path / "small.npz", **fake_mnist(n_train=200, n_test=40)._asdict())
    base = [sys.executable, "my_cl.py", f"--data_dir={tmp_path / 'small.npz'}", "--batch_size=8",
            "--probe_per_class=2", "--logdir=.", "--hidden_sizes=16"]
    ok = subprocess.run([*base, "--run_name=ok"], cwd=tmp_path, capture_output=True, text=True,
                        env=SCRIPT_ENV, timeout=300)
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr[-2000:]
    saved = json.loads((tmp_path / "ok" / "config.json").read_text())
    assert (saved["epochs"], saved["validation_split"], saved["steps_per_task"], saved["order"],
            saved["remedy"]) == (1, 0.0, 4, None, None)
    assert saved["recorded"]["remedies"][0]["hparams"]["lambda"] == 3.0
    for flag, message in (("--epochs=3", "trains its tasks once"),
                          ("--steps_per_task=9", "--steps_per_task=9 contradicts the scenario")):
        bad = subprocess.run([*base, "--run_name=bad", flag], cwd=tmp_path, capture_output=True,
                             text=True, env=SCRIPT_ENV, timeout=300)
        assert bad.returncode == 1 and message in bad.stderr, bad.stderr
        assert bad.stderr.count("\n") == 1 and not (tmp_path / "bad").exists()
