"""Continual-learning scenarios and remedies: tasks, masks, streams, metrics, and remedies
passed as objects (a user's own among them) that train, save and resume bit-exactly."""

import json

import numpy as np
import pytest
import tensorflow as tf

import tapeloop
from tapeloop.trainers.extend import remedies, scenarios
from tapeloop.trainers.engine import model as model_lib
from tapeloop.trainers.instruments import continual
from tapeloop.trainers.records import forgetting
from tapeloop.trainers.extend.remedies import ewc
from helpers import fake_mnist, run_train_here

SMALL = dict(epochs=1, batch_size=16, hidden_sizes=(12,), dropout=0.0, probe_per_class=4,
             eval_every_steps=2, steps_per_loop=4, validation_split=0.0, seed=0,
             deterministic=True, checkpoint_every_steps=0)


def _data():
    m = fake_mnist(n_train=400, n_test=80)
    return tapeloop.from_arrays(*m, validation_split=0.0, name="fake")


def test_built_in_names_are_the_flags_choices():
    from tapeloop.trainers.records import config
    assert tuple(remedies.BUILT_IN) == config.REMEDIES
    assert set(scenarios.FAMILIES) == set(config.SCENARIO_FAMILIES)
    assert all(scenarios.make(n, steps_per_task=1).name == n for n in config.SCENARIOS)


def test_split_tasks_targets_and_masks():
    data = _data()
    for kind, outputs in (("class", 10), ("task", 10), ("domain", 2)):
        s = scenarios.Split(kind, steps_per_task=3).bind(data)
        assert [t.classes for t in s.tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
        assert s.num_outputs == outputs
        targets = s.targets(2, np.array([4, 5, 5]))
        assert targets.tolist() == ([0, 1, 1] if kind == "domain" else [4, 5, 5])
    mask = scenarios.Split("task", steps_per_task=3).bind(data).output_mask()
    assert mask.shape == (5, 10) and mask.sum() == 10 and mask[1, 2] and mask[1, 3]
    assert scenarios.Split("class", steps_per_task=3).bind(data).output_mask() is None
    with pytest.raises(ValueError, match="cannot be split into tasks of 3"):
        scenarios.Split("class", steps_per_task=3, classes_per_task=3).bind(data)


def test_permuted_pads_then_permutes_every_task():
    data = _data()
    s = scenarios.Permuted("task", steps_per_task=3, num_tasks=3).bind(data)
    assert s.num_outputs == 30 and s.input_dim == 1024 and s.example_shape(data) == (32, 32)
    row = data.x_train[:1]
    first, second = s.transform(row, 0), s.transform(row, 1)
    # The same pixels (plus a zero border of 240) in another order; the tasks differ.
    for moved in (first, second):
        assert np.array_equal(np.sort(moved[0]), np.sort(np.concatenate([row[0],
                                                                          np.zeros(240)])))
    assert not np.array_equal(first, second)
    assert s.targets(2, np.array([3])).tolist() == [23]


def test_stream_trains_each_task_in_turn_and_resumes_in_place():
    data = _data()
    s = scenarios.Split("task", steps_per_task=3).bind(data)
    batches = list(s.pipeline(data, data.x_train, batch_size=8, seed=1).as_numpy_iterator())
    assert len(batches) == 15 and [int(b["phase"]) for b in batches] == [0] * 3 + [1] * 3 + [
        2] * 3 + [3] * 3 + [4] * 3
    for b in batches:
        task = int(b["phase"])
        assert (b["task"] == task).all()
        assert set(b["label"].tolist()) <= set(s.tasks[task].outputs)
    tail = list(s.pipeline(data, data.x_train, batch_size=8, seed=1,
                           start_step=7).as_numpy_iterator())
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(batches[7:], tail))
    joint = list(s.pipeline(data, data.x_train, batch_size=8, seed=1,
                            joint=True).as_numpy_iterator())
    assert len(joint) == 15 and len(set(np.concatenate([b["task"] for b in joint]))) == 5


def test_stability_metrics_by_hand():
    # Two tasks, probed every 10 steps; task 0 ends at step 20 at 0.9, dips to 0.3 at
    # step 30 (the stability gap), recovers to 0.8; task 1 ends at 0.95.
    steps = np.array([0, 10, 20, 30, 40, 50])
    acc = np.array([[0.1, 0.0], [0.6, 0.0], [0.9, 0.1], [0.3, 0.5], [0.7, 0.8],
                    [0.8, 0.95]])
    m = forgetting.stability_metrics(steps, acc, [20, 50], window=10)
    assert m["min_acc"] == pytest.approx(0.3)  # task 0's worst after step 20
    assert m["wc_acc"] == pytest.approx(0.95 / 2 + 0.3 / 2)
    assert m["wf_10"] == pytest.approx(0.6)  # 0.9 -> 0.3 within one window of 10 steps
    assert m["acc"] == pytest.approx((0.8 + 0.95) / 2)
    assert forgetting.stability_metrics(steps, acc, [20, 50], window=5)["wf_5"] == 0.0


def test_fisher_closed_form_equals_per_example_gradients():
    model = model_lib.build_mlp(input_dim=6, hidden_sizes=(5, 4), num_classes=4, dropout=0.3,
                                seed=1)
    x = np.random.default_rng(0).normal(size=(37, 6)).astype(np.float32)
    mask = np.array([False, True, True, False])

    def forward(rows, tasks=None, training=False):
        return tf.where(mask, model(rows, training=training), -1e9)

    fast = ewc.fisher_diagonal(model, forward, model.trainable_variables, x, 0, (1, 2), mask)
    slow = ewc.fisher_diagonal(None, forward, model.trainable_variables, x, 0, (1, 2), mask)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
    assert all(f.max() > 0 for f in fast)

def test_offline_ewc_as_one_quadratic_has_each_tasks_value_and_gradient():
    rng = np.random.default_rng(3)
    shape = (7, 5)
    fishers = [rng.uniform(0, 2, shape) * (rng.random(shape) > 0.3) for _ in range(4)]
    for f in fishers:
        f[:, 0] = 0  # a column no task's Fisher reaches
    points = [rng.normal(size=shape) for _ in range(4)]
    theta = rng.normal(size=shape)
    total, anchor, offset = np.zeros(shape, np.float32), np.zeros(shape, np.float32), 0.0
    for f, p in zip(fishers, points):
        total, anchor, added = ewc.merge(total, anchor, f, p)
        offset += added
    # Value: every task's term, summed, against A (theta - M)^2 + c.
    expected = sum(np.sum(f * (theta - p) ** 2) for f, p in zip(fishers, points))
    assert np.sum(total * (theta - anchor) ** 2) + offset == pytest.approx(expected, rel=1e-5)
    # Gradient: sum_k 2 F_k (theta - theta*_k) against 2 A (theta - M).
    gradient = sum(2 * f * (theta - p) for f, p in zip(fishers, points))
    np.testing.assert_allclose(2 * total * (theta - anchor), gradient, rtol=1e-4, atol=1e-5)
    assert np.all(anchor[total == 0] == 0) and (total == 0).any()  # no Fisher: no pull



def test_task_il_scores_each_task_on_its_own_outputs():
    data = _data()
    task_il = scenarios.Split("task", steps_per_task=2).bind(data)
    class_il = scenarios.Split("class", steps_per_task=2).bind(data)

    def forward(rows, training=False):  # always says "class 1, or else class 9"
        return tf.tile(tf.constant([[0, 2, 0, 0, 0, 0, 0, 0, 0, 3.0]]), [tf.shape(rows)[0], 1])

    args = dict(input_dim=data.input_dim, batch_size=50, batch_splits=1, strategy=None,
                objective=None)
    by_task = continual.task_evaluator(task_il, forward, **args)(data.x_test, data.y_test)
    by_class = continual.task_evaluator(class_il, forward, **args)(data.x_test, data.y_test)
    # Task-IL: task 0 picks class 1 of {0, 1}; other tasks pick their first class.
    np.testing.assert_allclose(by_task.class_accuracy, [0.5] * 5)
    np.testing.assert_allclose(by_class.class_accuracy, [0, 0, 0, 0, 0.5])


class L2Anchor(tapeloop.Remedy):
    """A user's remedy, written here as a user would: pull toward the last task's weights."""

    name = "l2_anchor"

    def __init__(self, strength):
        super().__init__()
        self.strength = strength

    def hparams(self):
        return {"strength": self.strength}

    def build(self, model):
        self.weights = model.trainable_variables
        self.anchor = [tf.Variable(v.numpy(), trainable=False) for v in self.weights]
        self.tasks = tf.Variable(0.0, trainable=False)

    def checkpoint_items(self):
        return {"anchor": self.anchor, "tasks": self.tasks}

    def penalty(self):
        return self.strength * tf.minimum(self.tasks, 1.0) * tf.add_n(
            [tf.reduce_sum(tf.square(v - a)) for v, a in zip(self.weights, self.anchor)])

    def on_phase_end(self, step, task, context):
        for v, a in zip(self.weights, self.anchor):
            a.assign(v)
        self.tasks.assign_add(1.0)


def _final(run_dir):
    w = np.load(run_dir / "weights" / "final.npz")
    return {k: w[k] for k in w.files}


def test_remedies_as_objects_train_save_and_resume_bit_exactly(tmp_path):
    """A user's remedy and every built-in one at once: their seams combine, their state is
    checkpointed, and a run stopped mid-task resumes to the same weights."""
    config = tapeloop.Config(**SMALL)
    data = _data()

    def run(run_dir, strength=0.5, **kwargs):
        made = [L2Anchor(strength), remedies.Replay(3), remedies.EWC(10.0), remedies.SI(1.0),
                remedies.LwF(2.0), remedies.AGEM(3)]
        return tapeloop.train_and_evaluate(
            config, run_dir, data=data,
            scenario=scenarios.Split("class", steps_per_task=5, classes_per_task=5),
            remedies=made, verbose=False, **kwargs)

    whole = run(tmp_path / "whole")
    with pytest.raises(tapeloop.trainers.run.standard_actions.StoppedAfter):
        run(tmp_path / "stopped", stop_after_steps=7)  # inside task 1, after task 0's work
    run(tmp_path / "stopped")
    a, b = _final(tmp_path / "whole"), _final(tmp_path / "stopped")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert whole["min_acc"] is not None and 0 <= whole["wc_acc"] <= 1
    saved = json.loads((tmp_path / "whole" / "config.json").read_text())
    recorded = {r["name"]: r["hparams"] for r in saved["recorded"]["remedies"]}
    assert recorded["l2_anchor"] == {"strength": 0.5} and recorded["ewc"]["lambda"] == 10.0
    from tapeloop.trainers.instruments import suite as instruments
    hparams = instruments.hparams_of(saved)  # what the HParams dashboard shows
    assert hparams["remedies"] == "l2_anchor+replay+ewc+si+lwf+agem"
    assert hparams["l2_anchor.strength"] == 0.5 and hparams["si.c"] == 1.0
    assert saved["recorded"]["scenario"]["kind"] == "class"
    assert [t["classes"] for t in saved["recorded"]["scenario"]["tasks"]] == [[0, 1, 2, 3, 4],
                                                                             [5, 6, 7, 8, 9]]
    with pytest.raises(tapeloop.SetupError, match="strength"):
        run(tmp_path / "stopped", strength=0.7)  # another strength on resume: refused


def test_the_tutorial_orders_are_scenario_objects_and_replay_a_remedy(tmp_path):
    """`Sorted()` with the reservoir remedy, passed as objects, is `--order=replay` bit for
    bit; a remedy acting at task ends is refused with the shuffled order (no tasks)."""
    flags = dict(SMALL, epochs=2, validation_split=0.1, replay_capacity=20, replay_fraction=0.25)
    data = _data()
    by_name = tapeloop.train_and_evaluate(tapeloop.Config(**flags, order="replay"),
                                          tmp_path / "by_name", data=data, verbose=False)
    by_object = tapeloop.train_and_evaluate(
        tapeloop.Config(**flags, order="sorted"), tmp_path / "by_object", data=data,
        scenario=scenarios.orders.Sorted(),
        remedies=[remedies.ReservoirReplay(capacity=20, fraction=0.25)], verbose=False)
    a, b = _final(tmp_path / "by_name"), _final(tmp_path / "by_object")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert by_name["test_accuracy"] == by_object["test_accuracy"]
    assert len(by_name["test_class_accuracy"]) == 10  # scored per class, as the tutorial
    from tapeloop.trainers.instruments import suite as instruments
    saved = json.loads((tmp_path / "by_object" / "config.json").read_text())
    assert saved["recorded"]["remedies"][0]["hparams"] == {"capacity": 20, "fraction": 0.25}
    assert saved["recorded"]["order"] == "tapeloop.trainers.extend.scenarios.orders:Sorted"
    hparams = instruments.hparams_of(saved)  # the object's settings, not the unused flags'
    assert hparams["reservoir.capacity"] == 20 and "replay_capacity" not in hparams
    assert "ewc_lambda" not in hparams and hparams["order"] == "sorted"
    with pytest.raises(tapeloop.SetupError, match="--order=blocked contradicts the order"):
        tapeloop.train_and_evaluate(tapeloop.Config(**flags, order="blocked", block_steps=2),
                                    None, data=data, scenario=scenarios.orders.Sorted(),
                                    verbose=False)
    with pytest.raises(tapeloop.SetupError, match="acts at task ends: the shuffled order"):
        tapeloop.train_and_evaluate(tapeloop.Config(**flags), None, data=data,
                                    scenario=scenarios.orders.Shuffled(),
                                    remedies=[remedies.EWC(1.0)], verbose=False)


def test_scenario_flags_run_the_protocol_and_refuse_what_cannot_apply(tmp_path):
    bad = [(["--remedy=ewc"], "needs a --scenario"),
           (["--scenario=split_mnist_class", "--remedy=joint,ewc"], "stands alone"),
           (["--scenario=split_mnist_class", "--order=sorted"], "leave out --order"),
           (["--scenario=split_mnist_class", "--epochs=3"], "trains its tasks once"),
           (["--scenario=split_mnist_class", "--remedy=mas"], "must be one of")]
    for args, message in bad:
        out = run_train_here(*args, f"--logdir={tmp_path}", "--run_name=x")
        assert out.returncode == 1 and message in out.stderr, (args, out.stderr)
        assert out.stderr.count("\n") == 1 and not (tmp_path / "x").exists()
    # --scenario alone: the reference protocol, but for what the command line gives.
    np.savez(tmp_path / "small.npz", **fake_mnist(n_train=200, n_test=40)._asdict())
    out = run_train_here("--scenario=split_mnist_class", "--remedy=si", "--si_c=7",
                         "--steps_per_task=2", "--batch_size=8", "--probe_per_class=2",
                         "--eval_every_steps=1", f"--data_dir={tmp_path / 'small.npz'}",
                         f"--logdir={tmp_path}", "--run_name=protocol")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "min-ACC" in out.stdout and "WC-ACC" in out.stdout
    saved = json.loads((tmp_path / "protocol" / "config.json").read_text())
    assert (saved["hidden_sizes"], saved["learning_rate"], saved["dropout"], saved["si_c"],
            saved["si_epsilon"], saved["batch_size"], saved["epochs"]) == (
        [400, 400], 1e-3, 0.0, 7.0, 0.1, 8, 1)
    # Only the settings that apply: not EWC's (an SI run), nor the noise data set's.
    assert saved["ewc_lambda"] is None and saved["noise_dim"] is None
    # The scenario's tasks set the order: no order of the tutorial's is recorded.
    assert (saved["order"], saved["scenario"], saved["steps_per_task"]) == (
        None, "split_mnist_class", 2)
    assert saved["recorded"]["remedies"] == [
        {"name": "si", "class": "tapeloop.trainers.extend.remedies.si:SI",
         "hparams": {"c": 7.0, "epsilon": 0.1}}]
