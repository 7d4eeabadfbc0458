"""Weight drift against numpy on known weights."""

import numpy as np
import pytest
import tensorflow as tf

from tapeloop.trainers.engine import model as model_lib
from tapeloop.trainers.instruments import drift


def _model():
    return model_lib.build_mlp(input_dim=3, hidden_sizes=(2,), num_classes=2, seed=0)


def test_names_follow_the_layers():
    assert drift.variable_names(_model()) == ["dense_0/kernel", "dense_0/bias",
                                              "logits/kernel", "logits/bias"]


def test_drift_metrics_match_numpy():
    m = _model()
    rng = np.random.default_rng(0)
    start = [rng.normal(size=v.shape).astype(np.float32) for v in m.trainable_variables]
    start[1][:] = 0.0  # a bias starting at zero: no relative drift for it
    for v, w in zip(m.trainable_variables, start):
        v.assign(w)
    tracker = drift.WeightDrift(m)
    middle = [w + 0.5 for w in start]
    for v, w in zip(m.trainable_variables, middle):
        v.assign(w)
    tracker.mark_phase_start()
    previous = [w + 0.25 for w in middle]
    for v, w in zip(m.trainable_variables, previous):
        v.assign(w)
    tracker.mark_previous()
    end = [w + rng.normal(size=w.shape).astype(np.float32) for w in previous]
    for v, w in zip(m.trainable_variables, end):
        v.assign(w)
    grads = tf.constant([1.0, 2.0, 3.0, 4.0])
    out = {k: float(v) for k, v in tracker.metrics(grads).items()}

    for i, name in enumerate(tracker.names):
        from_init = np.linalg.norm(end[i] - start[i])
        assert out[f"weights/drift/from_init/{name}"] == pytest.approx(from_init, rel=1e-5)
        assert out[f"weights/drift/from_phase_start/{name}"] == pytest.approx(
            np.linalg.norm(end[i] - middle[i]), rel=1e-5)
        if name == "dense_0/bias":
            assert f"weights/drift/relative/{name}" not in out
        else:
            assert out[f"weights/drift/relative/{name}"] == pytest.approx(
                from_init / np.linalg.norm(start[i]), rel=1e-5)
        assert out[f"weights/drift/grad_norm/{name}"] == pytest.approx(float(grads[i]))
        assert out[f"weights/drift/update_norm/{name}"] == pytest.approx(
            np.linalg.norm(end[i] - previous[i]), rel=1e-5)
    flat = lambda ws: np.concatenate([w.ravel() for w in ws])  # noqa: E731
    assert out["weights/drift/from_init/model"] == pytest.approx(
        np.linalg.norm(flat(end) - flat(start)), rel=1e-5)
    assert out["weights/drift/from_phase_start/model"] == pytest.approx(
        np.linalg.norm(flat(end) - flat(middle)), rel=1e-5)
    assert out["weights/drift/relative/model"] == pytest.approx(
        np.linalg.norm(flat(end) - flat(start)) / np.linalg.norm(flat(start)), rel=1e-5)
    assert out["weights/drift/grad_norm/model"] == pytest.approx(np.sqrt(1 + 4 + 9 + 16), rel=1e-6)
    assert out["weights/drift/update_norm/model"] == pytest.approx(
        np.linalg.norm(flat(end) - flat(previous)), rel=1e-5)


def test_train_step_grad_norms_match_the_weight_change():
    from tapeloop.trainers.engine import steps

    m = _model()
    before = [v.numpy() for v in m.trainable_variables]
    batch = {"image": tf.constant(np.eye(3, dtype=np.float32)),
             "label": tf.constant([0, 1, 0], tf.int32), "phase": tf.constant(0)}
    out = tf.function(steps.make_train_step(m, tf.keras.optimizers.SGD(0.5)))(batch)
    after = [v.numpy() for v in m.trainable_variables]
    updates = [np.linalg.norm(a - b) for a, b in zip(after, before)]
    # Plain SGD: update = lr * gradient.
    np.testing.assert_allclose(out["grad_norms"].numpy(), np.array(updates) / 0.5, rtol=1e-5)
    assert float(out["grad_norm"]) == pytest.approx(np.linalg.norm(updates) / 0.5, rel=1e-5)


def test_update_norm_in_the_loop_is_the_last_steps_change(tmp_path):
    """At cadence step s the logged update norm is |W_s - W_(s-1)|, the snapshot being
    taken in-graph right before the step (and never on other steps)."""
    from helpers import read_events
    from tapeloop.trainers.engine import loop, steps

    rng = np.random.default_rng(0)
    batch = {"image": tf.constant(rng.normal(size=(8, 3)).astype(np.float32)),
             "label": tf.constant(rng.integers(0, 2, 8).astype(np.int32)),
             "phase": tf.constant(0)}
    weights_after = {}
    for n in (5, 6):
        m = _model()
        opt = tf.keras.optimizers.Adam(0.1)
        tracker = drift.WeightDrift(m)
        global_step = tf.Variable(0, dtype=tf.int64)
        train_loop = loop.make_train_loop(
            steps.make_train_step(m, opt), global_step, log_every_step=False, every_n_steps=3,
            periodic=lambda metrics: tracker.metrics(metrics["grad_norms"]),
            before_periodic=tracker.mark_previous)
        writer = tf.summary.create_file_writer(str(tmp_path / str(n)))
        with writer.as_default():
            train_loop(iter(tf.data.Dataset.from_tensors(batch).repeat()),
                       tf.constant(n, tf.int64))
        writer.close()
        weights_after[n] = [v.numpy() for v in m.trainable_variables]
    logged = read_events(tmp_path / "6")["weights/drift/update_norm/model"]
    assert sorted(logged) == [3, 6]
    change = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(weights_after[6],
                                                               weights_after[5])))
    assert logged[6] == pytest.approx(change, rel=1e-5)
