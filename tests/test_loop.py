"""Correctness of the compiled K-step loop inside real runs (speed is measured by bench)."""

import numpy as np
import pytest

from tapeloop.data import pipelines, splits
from helpers import SMALL_SORTED, fake_mnist, read_events
from tapeloop.trainers.engine import loop, losses
from tapeloop.trainers.run import controller
from tapeloop.trainers.records.config import Config


@pytest.fixture(scope="module")
def runs_by_steps_per_loop(tmp_path_factory):
    """The same 2-epoch sorted run (dropout on, probe every 3) with K = 1, 4 and 7."""
    data = splits.mnist_splits(fake_mnist(n_train=200, n_test=60), validation_split=0.1)
    out = {}
    for k in (1, 4, 7):
        run_dir = tmp_path_factory.mktemp(f"k{k}") / "run"
        config = Config(**SMALL_SORTED | dict(steps_per_loop=k))
        results = controller.train_and_evaluate(config, run_dir, data=data, verbose=False)
        out[k] = (run_dir, results, data)
    return out


def test_k_steps_per_call_give_the_same_weights_and_logged_values(runs_by_steps_per_loop):
    final = {k: np.load(run_dir / "weights" / "final.npz")
             for k, (run_dir, _, _) in runs_by_steps_per_loop.items()}
    events = {k: read_events(run_dir) for k, (run_dir, _, _) in runs_by_steps_per_loop.items()}
    for k in (4, 7):
        for name in final[1].files:
            np.testing.assert_allclose(final[k][name], final[1][name], rtol=1e-6, atol=1e-7)
        for tag in ("train/loss", "train/accuracy", "probe/accuracy/class_3",
                    "weights/drift/from_phase_start/model", "weights/drift/update_norm/model",
                    "val/accuracy"):
            assert sorted(events[k][tag]) == sorted(events[1][tag]), tag
            np.testing.assert_allclose([events[k][tag][s] for s in sorted(events[k][tag])],
                                       [events[1][tag][s] for s in sorted(events[1][tag])],
                                       rtol=1e-5, atol=1e-6)


def test_every_step_logged_once_and_every_phase_boundary_seen(runs_by_steps_per_loop):
    run_dir, results, data = runs_by_steps_per_loop[7]
    events = read_events(run_dir)
    assert sorted(events["train/loss"]) == list(range(results["steps"]))
    plan = pipelines.plan_epoch(data.y_train, order="sorted", batch_size=6)
    boundaries = list(np.cumsum(list(plan.steps) * 2))
    assert sorted(events["forgetting/average"]) == boundaries  # every class block's end
    assert sorted(events["val/accuracy"]) == boundaries
    # K = 7 does not divide the 3-step blocks: calls never cross a boundary anyway.
    phases = [events["train/phase"][s] for s in range(results["steps"])]
    assert phases == [c for c, n in zip(plan.phases * 2, plan.steps * 2) for _ in range(n)]


@pytest.mark.parametrize("g,n,k", [(0, 10, 3), (5, 1, 3), (2, 1, 3), (0, 2, 3), (7, 20, 5),
                                   (9, 1, 10), (10, 10, 10)])
def test_cadence_arithmetic_finds_every_multiple(g, n, k):
    """The loop's head / measured steps / tail split of (g, g + n] against brute force."""
    import tensorflow as tf

    updates = tf.Variable(g, dtype=tf.int64)  # counts the steps as they run

    def fake_step(batch):
        updates.assign_add(1)
        return {"loss": tf.constant(0.0), "accuracy": tf.constant(0.0),
                "count": tf.constant(1.0), "phase": batch, "grad_norm": tf.constant(0.0),
                "grad_norms": tf.zeros([1]), "correct": tf.constant(0.0),
                "regularization_loss": tf.constant(0.0)}

    global_step = tf.Variable(g, dtype=tf.int64)
    seen = tf.Variable(tf.zeros([64], tf.int64))
    train_loop = loop.make_train_loop(
        fake_step, global_step, log_every_step=False, every_n_steps=k,
        periodic=lambda metrics: {"x/step": tf.cast(updates, tf.float32)},
        before_periodic=lambda: seen.scatter_nd_update([[updates + 1]], [1]))
    train_loop(iter(tf.data.Dataset.from_tensors(tf.constant(0)).repeat()),
               tf.constant(n, tf.int64))
    measured = [int(i) for i in np.flatnonzero(seen.numpy())]
    assert int(global_step) == g + n
    assert measured == [s for s in range(g + 1, g + n + 1) if s % k == 0]


def test_inspect_returns_the_batch_and_the_update_it_applied():
    import tensorflow as tf

    from tapeloop.trainers.engine import model as model_lib, optimizers, steps

    m = model_lib.build_mlp(input_dim=4, hidden_sizes=(5,), num_classes=3, dropout=0.0, seed=0)
    opt = optimizers.make_optimizer("sgd", learning_rate=0.5)
    global_step = tf.Variable(0, dtype=tf.int64)
    train_loop = loop.make_train_loop(steps.make_train_step(m, opt), global_step,
                                      log_every_step=False, variables=m.trainable_variables)
    rng = np.random.default_rng(0)
    batch = {"image": rng.normal(size=(6, 4)).astype(np.float32),
             "label": np.array([0, 1, 2, 0, 1, 2], np.int32), "phase": np.int64(7)}
    before = [v.numpy() for v in m.trainable_variables]
    with tf.GradientTape() as tape:
        logits = m(batch["image"], training=False)
        loss = tf.reduce_mean(losses.logits_cross_entropy(batch["label"], logits))
    grads = tape.gradient(loss, m.trainable_variables)
    out = train_loop.inspect(iter(tf.data.Dataset.from_tensors(batch).repeat()))
    after = [v.numpy() for v in m.trainable_variables]
    assert int(global_step) == 1 and int(out["phase"]) == 7
    np.testing.assert_array_equal(out["image"], batch["image"])
    np.testing.assert_allclose(out["logits"], logits.numpy(), rtol=1e-6)
    np.testing.assert_allclose(out["example_loss"].numpy().mean(), float(loss), rtol=1e-6)
    for u, b, a, g, n in zip(out["update"], before, after, grads, out["grad_norms"]):
        np.testing.assert_allclose(u.numpy(), a - b, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(u.numpy(), -0.5 * g.numpy(), rtol=1e-5, atol=1e-7)  # SGD
        np.testing.assert_allclose(float(n), np.linalg.norm(g.numpy()), rtol=1e-5)


def test_jit_compile_results_depend_on_the_batches_alone_and_resume_bit_exactly(tmp_path):
    """--jit_compile: full batches train in XLA, a class's smaller last batch in the plain
    graph; the results do not depend on where calls end (K = 3 or 7), a run stopped
    between calls resumes bit-exactly, and without dropout (whose draws differ between
    XLA and TensorFlow's kernels) it trains as the plain loop does."""
    import tapeloop

    data = splits.mnist_splits(fake_mnist(n_train=200, n_test=60), validation_split=0.1)

    def run(name, stop_after_steps=0, **settings):
        config = Config(**SMALL_SORTED | dict(jit_compile=True) | settings)
        return controller.train_and_evaluate(config, tmp_path / name, data=data, verbose=False,
                                             stop_after_steps=stop_after_steps)

    def final(name):
        return np.load(tmp_path / name / "weights" / "final.npz")

    run("k7", steps_per_loop=7)
    run("k3", steps_per_loop=3)
    assert all(np.array_equal(final("k7")[w], final("k3")[w]) for w in final("k7").files)
    events, other = read_events(tmp_path / "k7"), read_events(tmp_path / "k3")
    for tag in ("train/loss", "train/grad_norm", "probe/accuracy/class_3", "probe/loss",
                "weights/drift/from_phase_start/model", "weights/drift/update_norm/model"):
        assert events[tag] == other[tag], tag
    assert sorted(events["probe/loss"]) == list(range(0, 61, 3))  # every cadence step
    with pytest.raises(tapeloop.trainers.run.standard_actions.StoppedAfter):
        run("stopped", steps_per_loop=7, stop_after_steps=23)
    run("stopped", steps_per_loop=7)
    assert all(np.array_equal(final("stopped")[w], final("k7")[w]) for w in final("k7").files)
    for name, jit in (("plain0", False), ("xla0", True)):
        run(name, dropout=0.0, jit_compile=jit)
    for w in final("plain0").files:
        np.testing.assert_allclose(final("xla0")[w], final("plain0")[w], rtol=1e-4, atol=1e-5)


def test_jit_compile_trains_full_batches_in_xla_and_smaller_ones_in_the_plain_graph():
    """A step that draws with "threefry", which only XLA's kernels take on a CPU: calls of
    full batches run it, a call with a smaller batch runs that one in the plain graph."""
    import tensorflow as tf

    step_count = tf.Variable(0, dtype=tf.int64)
    weight = tf.Variable(1.0)

    def step(batch):
        draw = tf.random.stateless_uniform([], seed=[1, 2], alg="threefry")
        weight.assign_add(draw * 0.0)
        n = tf.cast(tf.size(batch["label"]), tf.float32)
        zero = tf.constant(0.0)
        return {"loss": zero, "accuracy": zero, "correct": zero, "count": n,
                "phase": tf.constant(0), "grad_norms": tf.zeros([1]), "grad_norm": zero,
                "regularization_loss": zero}

    train_loop = loop.make_train_loop(step, step_count, log_every_step=False, jit_compile=True,
                                      jit_batch_rows=4)

    def stream(examples):  # batches of 4: the last one smaller unless 4 divides it
        return iter(tf.data.Dataset.range(examples)
                    .map(lambda i: {"label": tf.cast(i, tf.int32)}).batch(4))

    out = train_loop(stream(12 * 4), tf.constant(12, tf.int64))  # two XLA programs' worth
    assert int(out["count"]) == 48 and int(step_count) == 12
    with pytest.raises(tf.errors.InvalidArgumentError, match="counter must be a vector"):
        train_loop(stream(11), tf.constant(3, tf.int64))


def test_jit_compile_refuses_a_step_xla_cannot_compile_in_one_line():
    """Replay's memory sample has a size known only at run time, which XLA cannot compile."""
    import tapeloop
    from tapeloop.trainers.extend import remedies, scenarios

    with pytest.raises(tapeloop.SetupError, match=r"^jit_compile: XLA cannot compile the "
                       r"training step \(.*compile-time constant.*\); train without") as e:
        tapeloop.train_and_evaluate(
            Config(**SMALL_SORTED | dict(jit_compile=True, validation_split=0.0, epochs=1,
                                         order="shuffled")), None,
            data=splits.mnist_splits(fake_mnist(n_train=200, n_test=60), validation_split=0.0),
            scenario=scenarios.Split("class", steps_per_task=4, classes_per_task=5),
            remedies=[remedies.Replay(2)], verbose=False)
    assert "\n" not in str(e.value)


def test_jit_compile_is_refused_with_a_strategy_or_check_numerics():
    import tapeloop

    with pytest.raises(ValueError, match="jit_compile runs on one device"):
        Config(jit_compile=True, strategy="mirrored")
    data = splits.mnist_splits(fake_mnist(n_train=60, n_test=30), validation_split=0.1)
    with pytest.raises(tapeloop.SetupError, match="not with check_numerics"):
        controller.train_and_evaluate(Config(**SMALL_SORTED | dict(jit_compile=True)), None,
                                      data=data, verbose=False, check_numerics=True)
