"""Pipelines: the order of presentation is what its name says, and every example comes once."""

import numpy as np
import pytest

from tapeloop.data import pipelines

LABELS = np.array([3, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 3, 0, 2, 1, 2, 3, 0, 0, 1, 2, 3],
                  np.int32)
IMAGES = np.arange(len(LABELS), dtype=np.float32)[:, None]  # image value = example index


def _stream(ds):
    return [(b["image"].numpy()[:, 0].astype(int), b["label"].numpy(), int(b["phase"]))
            for b in ds]


def _epochs(batches, plan):
    n = plan.total_steps
    return [batches[i:i + n] for i in range(0, len(batches), n)]


@pytest.mark.parametrize("class_order", [None, (2, 0, 3, 1)])
def test_class_sorted_follows_the_class_order(class_order):
    ds = pipelines.class_sorted(IMAGES, LABELS, batch_size=2, seed=0, epochs=2,
                                class_order=class_order)
    plan = pipelines.plan_epoch(LABELS, order="sorted", batch_size=2, class_order=class_order)
    expected_order = class_order or (0, 1, 2, 3)
    batches = _stream(ds)
    assert len(batches) == 2 * plan.total_steps
    for epoch in _epochs(batches, plan):
        labels = np.concatenate([b[1] for b in epoch])
        # Labels appear as contiguous blocks in the configured order.
        blocks = [int(c) for i, c in enumerate(labels) if i == 0 or c != labels[i - 1]]
        assert blocks == list(expected_order)
        # Phase id = the class of the batch, and a batch never mixes classes.
        for idx, lab, phase in epoch:
            assert set(lab) == {phase}
        # Every training example exactly once per epoch.
        np.testing.assert_array_equal(np.sort(np.concatenate([b[0] for b in epoch])),
                                      np.arange(len(LABELS)))


def test_class_sorted_last_partial_batch_stays_in_its_class():
    plan = pipelines.plan_epoch(LABELS, order="sorted", batch_size=4)
    counts = np.bincount(LABELS)  # [5, 5, 6, 7]
    assert plan.phases == (0, 1, 2, 3) and plan.steps == (2, 2, 2, 2)
    batches = _stream(pipelines.class_sorted(IMAGES, LABELS, batch_size=4, seed=0, epochs=1))
    assert [len(b[0]) for b in batches] == [4, 1, 4, 1, 4, 2, 4, 3]
    assert sum(len(b[0]) for b in batches) == counts.sum()


def test_class_sorted_reshuffles_within_class_each_epoch():
    batches = _stream(pipelines.class_sorted(IMAGES, LABELS, batch_size=100, seed=0, epochs=2))
    first, second = batches[:4], batches[4:]
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, second))


def test_shuffled_is_shuffled_reproducible_and_complete():
    n = len(LABELS)
    plan = pipelines.plan_epoch(LABELS, order="shuffled", batch_size=5)
    assert plan.steps == (5,)  # 23 examples: 4 full batches and one of 3
    a = _stream(pipelines.shuffled(IMAGES, LABELS, batch_size=5, seed=1, epochs=3))
    b = _stream(pipelines.shuffled(IMAGES, LABELS, batch_size=5, seed=1, epochs=3))
    c = _stream(pipelines.shuffled(IMAGES, LABELS, batch_size=5, seed=2, epochs=3))
    orders = [np.concatenate([x[0] for x in e]) for e in _epochs(a, plan)]
    for epoch, order in enumerate(orders):
        np.testing.assert_array_equal(np.sort(order), np.arange(n))  # each example once
        assert not np.array_equal(order, np.arange(n))  # not the file order
        assert {x[2] for x in _epochs(a, plan)[epoch]} == {epoch}  # phase = epoch
    assert not np.array_equal(orders[0], orders[1])  # reshuffled every epoch
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[0], y[0])  # same seed, same order
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))
    # Labels travel with their images.
    for idx, lab, _ in a:
        np.testing.assert_array_equal(lab, LABELS[idx])


def test_shuffled_mixes_classes_within_a_batch_on_real_labels(real_mnist):
    labels = real_mnist.y_train[:2000].astype(np.int32)
    images = np.zeros((2000, 1), np.float32)
    batch = next(iter(pipelines.shuffled(images, labels, batch_size=100, seed=0, epochs=1)))
    assert len(np.unique(batch["label"].numpy())) >= 8


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match=r"batch_size \(0\)"):
        pipelines.shuffled(IMAGES, LABELS, batch_size=0, seed=0, epochs=1)
    with pytest.raises(ValueError, match="must list each class"):
        pipelines.class_sorted(IMAGES, LABELS, batch_size=2, seed=0, epochs=1,
                               class_order=(0, 1, 2))
    with pytest.raises(ValueError, match="order"):
        pipelines.plan_epoch(LABELS, order="zigzag", batch_size=2)


@pytest.mark.parametrize("order", ["shuffled", "sorted", "blocked"])
@pytest.mark.parametrize("start", [0, 1, 5, 7, 13])
def test_a_stream_started_later_continues_the_full_stream_exactly(order, start):
    k = 1 if order == "blocked" else 0
    full = _stream(pipelines.make_pipeline(order, IMAGES, LABELS, batch_size=4, seed=3,
                                           epochs=3, block_steps=k))
    resumed = _stream(pipelines.make_pipeline(order, IMAGES, LABELS, batch_size=4, seed=3,
                                              epochs=3, start_step=start, block_steps=k))
    assert len(resumed) == len(full) - start
    for a, b in zip(full[start:], resumed):
        np.testing.assert_array_equal(a[0], b[0])
        assert a[2] == b[2]
    with pytest.raises(ValueError, match="start_step"):
        pipelines.make_pipeline(order, IMAGES, LABELS, batch_size=4, seed=3, epochs=3,
                                start_step=10 ** 6, block_steps=k)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_blocked_classes_take_turns_every_k_batches(k):
    batch_size = 2
    ds = pipelines.class_blocks(IMAGES, LABELS, batch_size=batch_size, seed=0, epochs=2,
                                block_steps=k, class_order=(2, 0, 3, 1))
    plan = pipelines.plan_epoch(LABELS, order="blocked", batch_size=batch_size, block_steps=k,
                                class_order=(2, 0, 3, 1))
    batches = _stream(ds)
    assert len(batches) == 2 * plan.total_steps
    for epoch in _epochs(batches, plan):
        for idx, lab, phase in epoch:  # single-class batches, phase = class
            assert set(lab) == {phase}
        np.testing.assert_array_equal(np.sort(np.concatenate([b[0] for b in epoch])),
                                      np.arange(len(LABELS)))
        # The plan's blocks are the stream's runs of one phase, at most k long, and the
        # classes take turns in the class order while each still has batches.
        phases = [b[2] for b in epoch]
        assert phases == [p for p, n in zip(plan.phases, plan.steps) for _ in range(n)]
        assert max(plan.steps) == k and plan.phases[:4] == (2, 0, 3, 1)
        counts = np.bincount(LABELS)
        left = {c: -(-int(counts[c]) // batch_size) for c in (2, 0, 3, 1)}
        for p, n in zip(plan.phases, plan.steps):
            assert n == min(k, left[p])
            left[p] -= n
        assert not any(left.values())


def test_blocked_with_blocks_longer_than_any_class_is_the_sorted_stream():
    sorted_ = _stream(pipelines.make_pipeline("sorted", IMAGES, LABELS, batch_size=2, seed=4,
                                              epochs=2))
    blocked = _stream(pipelines.make_pipeline("blocked", IMAGES, LABELS, batch_size=2, seed=4,
                                              epochs=2, block_steps=100))
    assert len(sorted_) == len(blocked)
    for a, b in zip(sorted_, blocked):
        np.testing.assert_array_equal(a[0], b[0])
        assert a[2] == b[2]
    with pytest.raises(ValueError, match="block_steps"):
        pipelines.make_pipeline("blocked", IMAGES, LABELS, batch_size=2, seed=4, epochs=1)


def test_pixel_batches_equal_the_preprocessed_arrays_bit_for_bit(real_mnist):
    from tapeloop.data import splits

    s = splits.mnist_splits(real_mnist, validation_split=0.1, max_train_examples=2000)
    assert s.train_pixels.dtype == np.uint8 and s.train_pixels.shape == s.x_train.shape
    for order in ("shuffled", "sorted"):
        floats = pipelines.make_pipeline(order, s.x_train, s.y_train, batch_size=64, seed=1,
                                         epochs=1)
        pixels = pipelines.make_pipeline(order, s.train_pixels, s.y_train, batch_size=64,
                                         seed=1, epochs=1, pixel_mean=s.pixel_mean)
        for a, b in zip(floats, pixels):
            np.testing.assert_array_equal(a["image"].numpy(), b["image"].numpy())
            np.testing.assert_array_equal(a["label"].numpy(), b["label"].numpy())
    with pytest.raises(ValueError, match="must be uint8"):
        pipelines.shuffled(s.x_train, s.y_train, batch_size=4, seed=0, epochs=1,
                           pixel_mean=s.pixel_mean)
