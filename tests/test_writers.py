"""Unit tier for the in-graph scalar writer: hand-built protos, one event per step."""

import math

import numpy as np
import pytest

from tapeloop.trainers.records import events, writers
from helpers import tags_by_plugin

VALUES = [0.0, -0.0, 1.5, -2.25e-38, 3.4e38, math.inf, -math.inf, math.nan, 0.1]


def test_scalar_protos_parse_as_tensorboard_scalars():
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    tags = [f"group/t{i}" for i in range(len(VALUES))]
    rows = np.array([VALUES, VALUES[::-1]], np.float32)
    protos = writers.ScalarProtos(tags)(tf.constant(rows)).numpy()
    assert protos.shape == (2,)
    for proto, row in zip(protos, rows):
        summary = summary_pb2.Summary.FromString(proto)
        assert [v.tag for v in summary.value] == tags
        for value, expected in zip(summary.value, row):
            assert value.metadata.plugin_data.plugin_name == "scalars"
            got = tf.make_ndarray(value.tensor)
            assert got.dtype == np.float32 and got.shape == ()
            np.testing.assert_array_equal(got, expected)  # bit-equal, NaN and -0.0 included
            assert math.copysign(1, got) == math.copysign(1, expected)


def test_forgetting_metrics_carry_their_definition_for_tensorboard():
    """TensorBoard shows a summary's description in its own tabs: the forgetting metrics
    say what they are; other tags carry none (their bytes are as before)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2
    from tapeloop.trainers.records import forgetting

    tags = ["forgetting/average", "forgetting/bwt", "result/min_acc", "train/loss"]
    proto = writers.ScalarProtos(tags)(tf.constant([0.1, -0.2, 0.5, 1.0])).numpy()
    summary = summary_pb2.Summary.FromString(proto)
    described = {v.tag: v.metadata.summary_description for v in summary.value}
    assert described["forgetting/average"].startswith("Average forgetting: the mean")
    assert described["forgetting/bwt"].startswith("Backward transfer")
    assert described["result/min_acc"] == forgetting.DESCRIPTIONS["result/min_acc"]
    assert described["train/loss"] == ""


def test_rows_and_scalars_land_at_their_steps(tmp_path):
    import tensorflow as tf

    writer = writers.MetricWriter(tmp_path)
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)

    @tf.function
    def write(first):
        writers.scalar_rows_in_graph(first, ["a/x", "a/y", "b/z"], tf.constant(rows))
        writers.scalars_in_graph(first + 10, {"c/one": tf.constant(7), "c/two": 0.5})

    with writer.as_default():
        write(tf.constant(5, tf.int64))
    writer.close()
    scalars = events.read_scalars(tmp_path)
    assert scalars["a/x"] == {5: 0.0, 6: 3.0, 7: 6.0, 8: 9.0}
    assert scalars["b/z"] == {5: 2.0, 6: 5.0, 7: 8.0, 8: 11.0}
    assert scalars["c/one"] == {15: 7.0} and scalars["c/two"] == {15: 0.5}
    assert tags_by_plugin(tmp_path) == {"scalars": ["a/x", "a/y", "b/z", "c/one",
                                                           "c/two"]}


@pytest.mark.parametrize("n", [1, writers.ROWS_PER_ITERATION, 2 * writers.ROWS_PER_ITERATION + 3])
def test_every_row_is_written_once_unrolled_or_not(tmp_path, n):
    import tensorflow as tf

    writer = writers.MetricWriter(tmp_path)
    rows = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    write = tf.function(lambda first, rows: writers.scalar_rows_in_graph(first, ["a/x", "a/y"],
                                                                          rows))
    with writer.as_default():
        write(tf.constant(3, tf.int64), tf.constant(rows))
    writer.close()
    scalars = events.read_scalars(tmp_path)
    assert scalars["a/x"] == {3 + i: 2.0 * i for i in range(n)}
    assert scalars["a/y"] == {3 + i: 2.0 * i + 1 for i in range(n)}
    steps = [e.step for e in tf.compat.v1.train.summary_iterator(
        str(next(tmp_path.glob("events.out.tfevents.*")))) if e.summary.value]
    assert steps == list(range(3, 3 + n))  # each row once, in order


@pytest.mark.parametrize("tags", [["loss"], ["a/x", "a/x"]])
def test_bad_tags_are_refused(tags):
    with pytest.raises(ValueError, match="group|repeat"):
        writers.ScalarProtos(tags)


def test_host_built_protos_equal_the_graph_built_ones():
    import tensorflow as tf

    tags = [f"g/t{i}" for i in range(len(VALUES))]
    protos = writers.ScalarProtos(tags)
    assert protos.serialize(VALUES) == protos(tf.constant(VALUES, tf.float32)).numpy()
    with pytest.raises(ValueError, match="values for"):
        protos.serialize(VALUES[:-1])


@pytest.mark.parametrize("data", [
    np.random.default_rng(0).normal(size=(300, 7)), np.full(50, 0.25), np.arange(5.0)])
def test_histogram_buckets_equal_tensorboards(data):
    import tensorflow as tf
    from tensorboard.plugins.histogram import summary_v2

    ours = writers.histogram_buckets(tf.constant(data, tf.float32)).numpy()
    theirs = summary_v2._buckets(tf.constant(data, tf.float32), bucket_count=30).numpy()
    np.testing.assert_array_equal(ours, theirs)

