"""Summary writers behind a tiny interface; a `None` log dir writes nothing.

`MetricWriter` is the host-side interface (scalars, text, images, HParams, layouts);
`scalars_in_graph` and `scalar_rows_in_graph` write from inside compiled code to
whichever writer is the default (`with writer.as_default():` around the call).

In-graph scalars are written as whole `Summary` protos built by `ScalarProtos`: one
event holds every scalar of a step, the same TF2 scalar values `tf.summary.scalar`
writes (a float tensor with the "scalars" plugin's metadata), so TensorBoard and
`trainers.events` read them alike. One write per step instead of one per tag, and
the protos of many steps encoded by a few vectorised ops, is what keeps per-step
logging cheap (BENCHMARKS.md).
"""

import contextlib

import tensorflow as tf
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.image import metadata as image_metadata


# TensorFlow's default writer flushes every 10 events, and each flush syncs the file:
# with four scalars per step that is a disk sync every few steps, which measured up
# to 0.2 s per epoch on this VM's disk (nothing on tmpfs). Events are flushed instead
# every FLUSH_MILLIS (TensorBoard shows them that late at most), when MAX_QUEUE are
# waiting, at every checkpoint and at the end.
MAX_QUEUE = 10_000
FLUSH_MILLIS = 5_000


class MetricWriter:
    """Writes TensorBoard events to `logdir`, or nothing at all when `logdir` is None.

    Host-side writes are compiled: one call per set of tags (traced once per distinct
    set) instead of one eager op per value, so a phase end writing ~50 scalars or an
    epoch end writing histograms costs a fraction of a millisecond.
    """

    def __init__(self, logdir: str | None):
        self.logdir = logdir
        self._writer = (tf.summary.create_noop_writer() if logdir is None
                        else tf.summary.create_file_writer(str(logdir), max_queue=MAX_QUEUE,
                                                           flush_millis=FLUSH_MILLIS))
        self._scalar_fns = {}
        self._active = 0

    @contextlib.contextmanager
    def as_default(self):
        """Context in which compiled code (`scalars_in_graph`) writes to this writer.

        Leaving it flushes the events (TensorFlow's `as_default` does). Host-side
        writes inside it do not enter the writer again, so they do not flush (and
        sync the file) one by one: about 1 ms each on this VM's disk.
        """
        with self._writer.as_default():
            self._active += 1
            try:
                yield
            finally:
                self._active -= 1

    def _default(self):
        return contextlib.nullcontext() if self._active else self._writer.as_default()

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        """Writes each `{tag: value}` at `step`."""
        tags = tuple(scalars)
        if tags not in self._scalar_fns:
            def write(s, values, tags=tags):
                scalars_in_graph(s, dict(zip(tags, tf.unstack(values))))

            self._scalar_fns[tags] = tf.function(write)
        with self._default():
            self._scalar_fns[tags](tf.constant(step, tf.int64),
                                   tf.constant([float(v) for v in scalars.values()],
                                               tf.float32))

    def write_text(self, step: int, tag: str, text: str) -> None:
        """Writes `text` (markdown) under `tag` at `step`."""
        with self._default():
            tf.summary.text(tag, text, step=step)

    def histogram_writer(self, variables: dict[str, tf.Variable]):
        """Compiles `write(step)`: a histogram of each `{tag: variable}`'s current value."""
        @tf.function
        def write(step):
            for tag, variable in variables.items():
                tf.summary.histogram(tag, variable, step=step)

        def run(step: int) -> None:
            with self._default():
                write(tf.constant(step, tf.int64))

        return run

    def write_png(self, step: int, tag: str, png: bytes, *, width: int, height: int) -> None:
        """Writes an already PNG-encoded image as an image summary (no second encoding)."""
        with self._default():
            tf.summary.write(tag, tf.constant([str(width), str(height), png]), step=step,
                             metadata=image_metadata.create_summary_metadata(
                                 display_name=tag, description="", converted_to_tensor=True))

    def write_layout(self, charts: dict[str, dict[str, list[str]]]) -> None:
        """Writes a custom-scalars layout: `{category: {chart title: [tag regexes]}}`.

        Every tag matching a chart's regexes is drawn on that one chart.
        """
        layout = layout_pb2.Layout(category=[
            layout_pb2.Category(title=category, chart=[
                layout_pb2.Chart(title=title,
                                 multiline=layout_pb2.MultilineChartContent(tag=regexes))
                for title, regexes in category_charts.items()])
            for category, category_charts in charts.items()])
        with self._default():
            tf.summary.experimental.write_raw_pb(
                custom_scalar_summary.pb(layout).SerializeToString(), step=0)

    def write_hparams(self, hparams: dict, metric_tags: list[str]) -> None:
        """Writes the run's hyperparameters for the HParams dashboard, with its metrics' tags.

        Values that are not bool, int, float or str (tuples, None) are written as strings.
        """
        clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
                 for k, v in hparams.items()}
        with self._default():
            hp.hparams_config(hparams=[hp.HParam(k) for k in clean],
                              metrics=[hp.Metric(tag) for tag in metric_tags])
            hp.hparams(clean)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class ScalarProtos:
    """Serialized `Summary` protos of float32 scalars under fixed tags, built in-graph.

    `ScalarProtos(tags)(values)` turns `values` of shape (..., len(tags)) into strings
    of shape (...): one `Summary` per leading index, holding every tag's value. Each
    value's bytes are constant but for its `TensorProto` (encoded by
    `tf.io.encode_proto`), so a whole block of steps is encoded by four ops.

    Raises:
      ValueError: if a tag has no group ("train/loss", not "loss") or repeats.
    """

    def __init__(self, tags):
        self.tags = tuple(tags)
        for tag in self.tags:
            if not tag.rpartition("/")[0]:
                raise ValueError(f"tag ({tag!r}) must have a group, like 'train/loss'")
        if len(set(self.tags)) != len(self.tags):
            raise ValueError(f"tags repeat: {self.tags}")
        metadata = scalar_metadata.create_summary_metadata(
            display_name=None, description=None).SerializeToString()
        self._prefixes = []
        for tag in self.tags:
            # Summary.value (1) { tag (1), metadata (9), tensor (8) { 8 bytes } }, where
            # the TensorProto is dtype DT_FLOAT (08 01) + packed float_val (2a 04 f32).
            head = _field(1, tag.encode()) + _field(9, metadata)
            self._prefixes.append(b"\x0a" + _varint(len(head) + 10) + head + b"\x42\x08")

    def __call__(self, values) -> tf.Tensor:
        values = tf.cast(values, tf.float32)
        flat = tf.reshape(values, [-1, 1])
        n = tf.shape(flat)[0]
        protos = tf.io.encode_proto(tf.ones([n, 2], tf.int32),
                                    [tf.ones([n, 1], tf.int32), flat],  # dtype 1: DT_FLOAT
                                    ["dtype", "float_val"], "tensorflow.TensorProto")
        protos = tf.reshape(protos, tf.shape(values))
        # A constant made here, not in __init__: the protos may be built inside loops.
        return tf.strings.reduce_join(tf.constant(self._prefixes) + protos, axis=-1)


def scalars_in_graph(step, scalars: dict) -> None:
    """Writes `{"group/name": tensor}` at `step` from inside a `tf.function`, as one event.

    Tags are kept exactly as given. Raises ValueError on a tag without a group.
    """
    protos = ScalarProtos(tuple(scalars))
    tf.summary.experimental.write_raw_pb(
        protos(tf.stack([tf.cast(v, tf.float32) for v in scalars.values()])), step=step)


def scalar_rows_in_graph(first_step, tags, rows) -> None:
    """Writes row i of `rows` (n, len(tags)) at step `first_step + i`, one event per row."""
    protos = ScalarProtos(tags)(rows)
    first_step = tf.cast(first_step, tf.int64)
    for i in tf.range(tf.shape(protos, out_type=tf.int64)[0]):
        tf.summary.experimental.write_raw_pb(protos[i], step=first_step + i)


def _varint(n: int) -> bytes:
    out = b""
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            return out + bytes([low])
        out += bytes([low | 0x80])


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload
