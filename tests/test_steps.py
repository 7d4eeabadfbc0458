"""The train step learns; the eval step's per-class sums match numpy; the loop logs every step."""

import numpy as np
import tensorflow as tf

from helpers import read_events
from tapeloop.trainers.engine import evaluation, loop, losses, model as model_lib, steps


def _batch(n=64, dim=8, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": tf.constant(rng.normal(size=(n, dim)).astype(np.float32)),
            "label": tf.constant(rng.integers(0, classes, n).astype(np.int32)),
            "phase": tf.constant(0, tf.int32)}


def _model(dropout=0.0, seed=0):
    return model_lib.build_mlp(input_dim=8, hidden_sizes=(16,), num_classes=4,
                               dropout=dropout, seed=seed)


def test_train_step_lowers_the_loss_on_a_fixed_batch():
    m = _model()
    step = tf.function(steps.make_train_step(m, tf.keras.optimizers.Adam(0.01)))
    batch = _batch()
    first = step(batch)
    for _ in range(50):
        last = step(batch)
    assert float(last["loss"]) < 0.5 * float(first["loss"])
    assert float(last["accuracy"]) > float(first["accuracy"])
    assert float(first["count"]) == 64


def test_train_step_loss_and_accuracy_are_this_batch_before_the_update():
    m = _model()
    batch = _batch()
    logits = m(batch["image"], training=False).numpy()
    labels = batch["label"].numpy()
    shifted = logits - logits.max(axis=1, keepdims=True)
    ce = -(shifted[np.arange(64), labels] - np.log(np.exp(shifted).sum(axis=1)))
    out = steps.make_train_step(m, tf.keras.optimizers.SGD(0.1))(batch)
    np.testing.assert_allclose(float(out["loss"]), ce.mean(), rtol=1e-5)
    assert float(out["accuracy"]) == np.mean(logits.argmax(axis=1) == labels)


def test_eval_step_per_class_sums_match_numpy():
    m = _model()
    batch = _batch(n=50)
    out = steps.make_eval_step(m, 4)(batch["image"], batch["label"])
    logits = m(batch["image"], training=False).numpy()
    labels = batch["label"].numpy()
    right = logits.argmax(axis=1) == labels
    for c in range(4):
        assert out["count"][c] == np.sum(labels == c)
        assert out["correct"][c] == np.sum(right[labels == c])
    result = evaluation.result_from_sums(*(out[k].numpy() for k in ("loss_sum", "correct",
                                                                     "count")))
    assert result.accuracy == right.mean()


def test_evaluator_batches_add_up_and_absent_classes_are_nan():
    m = _model()
    images = np.random.default_rng(1).normal(size=(37, 8)).astype(np.float32)
    labels = np.array([0, 1, 2] * 12 + [0], np.int32)  # class 3 absent
    whole = evaluation.make_evaluator(m, num_classes=4, input_dim=8, batch_size=1000)
    small = evaluation.make_evaluator(m, num_classes=4, input_dim=8, batch_size=5)
    a, b = whole(images, labels), small(images, labels)
    np.testing.assert_allclose(a.class_accuracy[:3], b.class_accuracy[:3])
    assert np.isnan(a.class_accuracy[3]) and a.class_count[3] == 0
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-6)
    assert small.tracing_count() == 1  # partial batch: no retrace


def test_k_step_loop_equals_k_single_steps_and_logs_each_step_once(tmp_path):
    data = tf.data.Dataset.from_tensors(_batch()).repeat()
    results = []
    for k in (1, 6):
        tf.keras.utils.set_random_seed(0)
        m = _model()
        opt = tf.keras.optimizers.SGD(0.05)
        global_step = tf.Variable(0, dtype=tf.int64)
        train_loop = loop.make_train_loop(steps.make_train_step(m, opt), global_step)
        it = iter(data)
        writer = tf.summary.create_file_writer(str(tmp_path / f"k{k}"))
        with writer.as_default():
            for _ in range(12 // k):
                train_loop(it, tf.constant(k, tf.int64))
        writer.close()
        assert int(global_step) == 12
        assert train_loop.tracing_counts()["train_loop"] == 1
        results.append((m.get_weights(), read_events(tmp_path / f"k{k}")))
    (w1, ev1), (w6, ev6) = results
    for a, b in zip(w1, w6):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for tag in ("train/loss", "train/accuracy", "train/phase"):
        assert sorted(ev1[tag]) == list(range(12)) == sorted(ev6[tag])
    np.testing.assert_allclose([ev1["train/loss"][s] for s in range(12)],
                               [ev6["train/loss"][s] for s in range(12)], rtol=1e-6)


def test_code_of_yours_is_converted_by_autograph_and_tapeloops_is_not():
    """tapeloop compiles its own functions with AutoGraph off; a step, remedy, objective
    or penalty of yours is converted, so Python control flow on tensors works in it."""
    import tapeloop

    assert steps.user_code(steps.correct_predictions) is steps.correct_predictions
    made = {}

    def make(model, optimizer, **kwargs):
        def step(batch):
            with tf.GradientTape() as tape:
                logits = model(batch["image"], training=True)
                loss = tf.reduce_mean(losses.logits_cross_entropy(batch["label"], logits))
                if loss > 1e9:  # a tensor condition: needs AutoGraph
                    loss = loss * 0.0
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            norms = tf.stack([tf.norm(g) for g in grads])
            n = tf.cast(tf.size(batch["label"]), tf.float32)
            made["traced"] = True
            return {"loss": loss, "accuracy": loss * 0, "correct": loss * 0, "count": n,
                    "phase": batch["phase"], "grad_norms": norms,
                    "grad_norm": tf.norm(norms), "regularization_loss": tf.constant(0.0)}
        return step

    config = tapeloop.Config(dataset="noise", epochs=1, noise_examples=300, eval_every_steps=0,
                             checkpoint_every_steps=0)
    results = tapeloop.train_and_evaluate(config, None, train_step=make, verbose=False)
    assert made["traced"] and results["steps"] == 3

    class Clipped(tapeloop.Remedy):  # a penalty with a tensor `if`
        name = "clipped"

        def build(self, model):
            self.weights = model.trainable_variables

        def penalty(self):
            total = tf.add_n([tf.reduce_sum(tf.square(w)) for w in self.weights])
            if total > 1e6:
                total = tf.constant(1e6)
            return 1e-3 * total

    from helpers import fake_mnist
    data = tapeloop.from_arrays(*fake_mnist(n_train=400, n_test=80), validation_split=0.0,
                                name="fake")
    config = tapeloop.Config(scenario="split_mnist_class", epochs=1, validation_split=0.0,
                             steps_per_task=2, batch_size=16, hidden_sizes=(8,),
                             eval_every_steps=0, checkpoint_every_steps=0)
    results = tapeloop.train_and_evaluate(config, None, data=data, remedies=[Clipped()],
                                          verbose=False)
    assert results["steps"] == 10
