"""The public API with the user's own models, losses and data (in-process, small data)."""

import json

import numpy as np
import pytest
import tensorflow as tf

import tapeloop
from tapeloop.trainers.engine import losses, model as model_lib, optimizers
from helpers import fake_mnist, read_events

SMALL = dict(order="sorted", epochs=1, batch_size=20, probe_per_class=5, eval_every_steps=4,
             seed=0, deterministic=True)  # with the script's own model
MLP = dict(SMALL, hidden_sizes=(16,))  # with the built-in one


def _data(n_train=200, n_test=60):
    m = fake_mnist(n_train=n_train, n_test=n_test)
    return tapeloop.from_arrays(*m, validation_split=0.1, name="fake")


def _regularized_mlp(strength):
    def build(input_shape, num_classes):
        reg = tf.keras.regularizers.L2(strength) if strength else None
        return tf.keras.Sequential([
            tf.keras.layers.Input((int(np.prod(input_shape)),)),
            tf.keras.layers.Dense(16, activation="relu", kernel_regularizer=reg, name="hidden",
                                  kernel_initializer=tf.keras.initializers.GlorotUniform(1)),
            tf.keras.layers.Dense(num_classes, name="out",
                                  kernel_initializer=tf.keras.initializers.GlorotUniform(2))],
            name="user_mlp")
    return build


def test_model_losses_enter_the_loss_and_are_logged(tmp_path):
    config = tapeloop.Config(**SMALL)
    for name, strength in (("plain", 0.0), ("l2", 0.1)):
        tapeloop.train_and_evaluate(config, tmp_path / name, data=_data(),
                                    model=_regularized_mlp(strength), verbose=False)
    a = np.load(tmp_path / "plain" / "weights" / "final.npz")
    b = np.load(tmp_path / "l2" / "weights" / "final.npz")
    assert any(not np.array_equal(a[k], b[k]) for k in a.files)
    reg = read_events(tmp_path / "l2")["train/regularization_loss"]
    assert len(reg) == 10 and min(reg.values()) > 0  # every step of 10, positive
    assert "train/regularization_loss" not in read_events(tmp_path / "plain")


def tutorial_create_model():
    """The tutorial's create_model(), unchanged: softmax output, categorical_crossentropy."""
    model = tf.keras.models.Sequential()
    model.add(tf.keras.layers.Input((784,)))
    model.add(tf.keras.layers.Dense(150, activation="relu"))
    model.add(tf.keras.layers.Dropout(0.5))
    model.add(tf.keras.layers.Dense(100, activation="relu"))
    model.add(tf.keras.layers.Dropout(0.5))
    model.add(tf.keras.layers.Dense(10, activation="softmax"))
    optimizer = tf.keras.optimizers.Adam(learning_rate=0.001)
    model.compile(loss='categorical_crossentropy', optimizer=optimizer, metrics=['accuracy'])
    return model


def test_the_tutorials_compiled_softmax_model_trains_with_its_loss_and_optimizer(tmp_path):
    results = tapeloop.train_and_evaluate(tapeloop.Config(**SMALL), tmp_path / "r",
                                          data=_data(), model=lambda s, c: tutorial_create_model(),
                                          verbose=False)
    recorded = json.loads((tmp_path / "r" / "config.json").read_text())["recorded"]
    assert recorded["model"]["outputs"] == "probabilities"
    assert recorded["objective"] == "compiled categorical_crossentropy"
    assert np.isfinite(results["test_loss"]) and results["steps"] == 10


def test_probabilities_are_scored_as_keras_scores_them():
    labels = tf.constant([0, 2, 1])
    p = tf.constant([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [1.0, 0.0, 0.0]])
    keras = tf.keras.losses.categorical_crossentropy(tf.one_hot(labels, 3), p)
    np.testing.assert_allclose(losses.probabilities_cross_entropy(labels, p), keras, rtol=1e-6)


def test_a_softmax_model_compiled_from_logits_is_refused():
    m = tutorial_create_model()
    m.compile(loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True), optimizer="adam")
    with pytest.raises(ValueError, match="treated as logits"):
        losses.make_objective(m)


def test_speedups_switch_themselves_off_where_invalid():
    mlp = model_lib.build_mlp(input_dim=784, hidden_sizes=(8,), num_classes=10, seed=0)
    cnn = model_lib.build_cnn(input_shape=(28, 28), num_classes=10, seed=0)
    images = np.zeros((4, 784), np.float32)
    images[:, :10] = np.arange(40).reshape(4, 10)
    assert model_lib.fold_constant_columns(mlp, images) is not None
    assert model_lib.fold_constant_columns(cnn, images) is None
    bn = tf.keras.Sequential([tf.keras.layers.Input((4,)), tf.keras.layers.BatchNormalization(),
                              tf.keras.layers.Dense(3)])
    assert model_lib.has_batch_statistics(bn) and not model_lib.has_batch_statistics(mlp)
    adam = tf.keras.optimizers.Adam()
    adam.build(mlp.trainable_variables)
    assert optimizers.is_fused(adam, mlp.trainable_variables)
    constrained = tf.keras.Sequential([tf.keras.layers.Input((4,)), tf.keras.layers.Dense(
        3, kernel_constraint=tf.keras.constraints.NonNeg())])
    adam2 = tf.keras.optimizers.Adam()
    adam2.build(constrained.trainable_variables)
    assert not optimizers.is_fused(adam2, constrained.trainable_variables)


def test_subclassed_model_with_batchnorm_on_tf_data(tmp_path):
    class Net(tf.keras.Model):
        def __init__(self, classes):
            super().__init__()
            self.conv = tf.keras.layers.Conv2D(4, 3, activation="relu")
            self.bn = tf.keras.layers.BatchNormalization()
            self.flat = tf.keras.layers.Flatten()
            self.out = tf.keras.layers.Dense(classes)

        def call(self, x, training=False):
            return self.out(self.flat(self.bn(self.conv(x), training=training)))

    m = fake_mnist(n_train=120, n_test=60)
    x_train = m.x_train[..., None].astype(np.float32) / 255
    x_test = m.x_test[..., None].astype(np.float32) / 255
    train = tf.data.Dataset.from_tensor_slices((x_train, m.y_train.astype(np.int32))).batch(7)
    test = tf.data.Dataset.from_tensor_slices((x_test, m.y_test.astype(np.int32)))
    data = tapeloop.from_datasets(train, test, validation_split=0.0)
    assert data.shape == (28, 28, 1) and data.num_classes == 10
    results = tapeloop.train_and_evaluate(tapeloop.Config(**SMALL, validation_split=0.0),
                                          tmp_path / "r", data=data, model=lambda s, c: Net(c),
                                          verbose=False)
    assert results["steps"] == 10 and np.isfinite(results["test_loss"])
    with pytest.raises(tapeloop.DataError, match="infinite"):
        tapeloop.from_datasets(train.repeat(), test)


class CountingAction(tapeloop.Action):
    def __init__(self):
        super().__init__(every_steps=3, on_steps=(5,))
        self.steps, self.phases, self.epochs = [], [], []

    def on_step(self, step, context):
        self.steps.append(step)

    def on_phase_end(self, step, phase, context):
        self.phases.append(phase)

    def on_epoch_end(self, step, epoch, context):
        self.epochs.append(epoch)


def test_actions_run_at_their_exact_steps(tmp_path):
    counting = CountingAction()
    extra = tapeloop.PeriodicEvaluation(np.zeros((3, 784)), np.arange(3), every_steps=4,
                                        tag="mine")
    config = tapeloop.Config(**dict(MLP, epochs=2, steps_per_loop=50))
    tapeloop.train_and_evaluate(config, tmp_path / "r", data=_data(), verbose=False,
                                actions=[counting, extra])
    assert counting.steps == [3, 5, 6, 9, 12, 15, 18]  # 20 steps: 2 epochs of 10
    assert counting.phases == list(range(10)) * 2 and counting.epochs == [0, 1]
    assert sorted(read_events(tmp_path / "r")["mine/accuracy"]) == [4, 8, 12, 16, 20]


def test_resume_refuses_another_model_or_other_data_in_one_line(tmp_path):
    config = tapeloop.Config(**MLP)
    tapeloop.train_and_evaluate(config, tmp_path / "r", data=_data(), verbose=False)
    before = sorted(p.name for p in (tmp_path / "r").rglob("*"))
    with pytest.raises(tapeloop.SetupError) as err:
        tapeloop.train_and_evaluate(tapeloop.Config(**dict(SMALL, epochs=2)), tmp_path / "r",
                                    data=_data(), model=_regularized_mlp(0.0), verbose=False)
    assert "other model" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(tapeloop.SetupError) as err:
        tapeloop.train_and_evaluate(dataclass_replace(config, epochs=2), tmp_path / "r",
                                    data=_data(n_train=220), verbose=False)
    assert "other data" in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in (tmp_path / "r").rglob("*")) == before  # nothing written


def dataclass_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


class StepCounter(tapeloop.Action):
    """Counts the steps it saw in a variable made in build(): it survives a resume."""

    def __init__(self, late=False):
        super().__init__(every_steps=1)
        self.late, self.seen = late, None

    def build(self, model):
        if not self.late:
            self.seen = tf.Variable(0, dtype=tf.int64, name="seen")

    def on_begin(self, step, context):
        if self.late:  # too late: the checkpoint is assembled
            self.seen = tf.Variable(0, dtype=tf.int64, name="seen")

    def checkpoint_items(self):
        return {"seen": self.seen} if self.seen is not None else {}

    def on_step(self, step, context):
        self.seen.assign_add(1)


def test_an_actions_state_made_in_build_survives_a_resume_and_later_state_is_refused(tmp_path):
    config = tapeloop.Config(**dict(MLP, epochs=2))
    from tapeloop.trainers.run.standard_actions import StoppedAfter

    first = StepCounter()
    with pytest.raises(StoppedAfter):
        tapeloop.train_and_evaluate(config, tmp_path / "r", data=_data(), verbose=False,
                                    actions=[first], stop_after_steps=7)
    assert int(first.seen) == 7
    resumed = StepCounter()
    tapeloop.train_and_evaluate(config, tmp_path / "r", data=_data(), verbose=False,
                                actions=[resumed])
    assert int(resumed.seen) == 20  # 7 restored from the checkpoint, 13 seen now
    with pytest.raises(tapeloop.SetupError) as err:
        tapeloop.train_and_evaluate(config, tmp_path / "late", data=_data(), verbose=False,
                                    actions=[StepCounter(late=True)])
    assert str(err.value) == ("StepCounter.checkpoint_items() lists seen, made after the "
                              "checkpoint was assembled: create them in build(model), or "
                              "they are never saved")


def test_every_error_train_and_evaluate_documents_is_exported():
    import re
    from pathlib import Path

    doc = tapeloop.train_and_evaluate.__doc__
    raises = doc[doc.index("Raises"):doc.index('"""') if '"""' in doc else None]
    named = set(re.findall(r"\b([A-Z][A-Za-z]*Error|Interrupted|StoppedAfter)\b", raises))
    assert named == {"SetupError", "RunDirError", "DataError", "Interrupted",
                     "NonFiniteError", "StoppedAfter"}
    for name in named:
        assert name in tapeloop.__all__ and issubclass(getattr(tapeloop, name), Exception)
    assert (Path(tapeloop.__file__).parent / "py.typed").is_file()  # typed: PEP 561


def test_an_error_in_the_users_step_is_one_line_naming_it_and_the_batch(tmp_path):
    def wrong_key_step(model, optimizer, **kwargs):
        step = tapeloop.make_train_step(model, optimizer, **kwargs)

        def train(batch):
            return step(dict(batch, image=batch["x"] * 2.0))  # the batch has no "x"
        return train

    with pytest.raises(tapeloop.SetupError) as err:
        tapeloop.train_and_evaluate(tapeloop.Config(**MLP), tmp_path / "r", data=_data(),
                                    verbose=False, train_step=wrong_key_step)
    line = str(err.value)
    assert line.startswith("test_api.py:test_an_error_in_the_users_step_is_one_line_naming_it"
                           "_and_the_batch.<locals>.wrong_key_step.<locals>.train (line ")
    assert line.endswith("raised KeyError: 'x' while tapeloop compiled it; its batch holds "
                         "image, label, phase") and "\n" not in line
    with pytest.raises(tapeloop.SetupError, match="^a train step must return a dict of "
                                                  "StepMetrics, not float$"):
        tapeloop.train_and_evaluate(tapeloop.Config(**MLP), tmp_path / "s", data=_data(),
                                    verbose=False,
                                    train_step=lambda model, optimizer, **kw: lambda b: 0.0)


class CalledAction(tapeloop.Action):
    def __call__(self, context):  # not a hook
        raise AssertionError("never called")


class StepsForgotten(tapeloop.Action):
    every_steps = 25  # a class attribute: Action.__init__ sets the instance's (0)

    def on_step(self, step, context):
        raise AssertionError("never called")


@pytest.mark.parametrize("action, why", [
    (CalledAction(), "CalledAction overrides none of Action's hooks, on_begin, on_step, "
                     "on_epoch_start, on_phase_start, on_phase_end, on_epoch_end, on_end "
                     "(__call__ is not one: name it on_step(self, step, context)): it would "
                     "never run"),
    (StepsForgotten(), "StepsForgotten.on_step runs at the steps it asks for, and it asks "
                       "for none: pass every_steps= or on_steps= to Action.__init__: it would "
                       "never run")])
def test_an_action_that_would_never_run_is_refused_before_anything_is_created(
        tmp_path, action, why):
    with pytest.raises(tapeloop.SetupError) as err:
        tapeloop.train_and_evaluate(tapeloop.Config(**MLP), tmp_path / "r", data=_data(),
                                    verbose=False, actions=[action])
    assert str(err.value) == why
    assert not any(tmp_path.iterdir())
    from tapeloop.trainers.extend.actions import never_runs

    assert never_runs(StepsForgotten(on_steps=(3,))) is None  # asked for a step: runs
    assert never_runs(CountingAction()) is None
