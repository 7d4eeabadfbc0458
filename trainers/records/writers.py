"""Summary writers behind a tiny interface; a `None` log dir writes nothing.

`MetricWriter` is the host-side interface (scalars, text, images, HParams, layouts);
`scalars_in_graph` and `scalar_rows_in_graph` write from inside compiled code to
whichever writer is the default (`with writer.as_default():` around the call).

In-graph scalars are written as whole `Summary` protos built by `ScalarProtos`: one
event holds every scalar of a step, the same TF2 scalar values `tf.summary.scalar`
writes (a float tensor with the "scalars" plugin's metadata), so TensorBoard and
`trainers.records.events` read them alike. One write per step instead of one per tag, and
the protos of many steps encoded by a few vectorised ops, is what keeps per-step
logging cheap (BENCHMARKS.md).
"""

import contextlib
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.hparams import plugin_data_pb2 as hparams_plugin_data_pb2
from tensorboard.plugins.image import metadata as image_metadata

from tapeloop.trainers.records import forgetting


# TensorFlow's default writer flushes every 10 events, and each flush syncs the file:
# with four scalars per step that is a disk sync every few steps, a cost that shows on
# a slow disk (BUILD.md, Speed). Events are flushed instead
# every FLUSH_MILLIS (TensorBoard shows them that late at most), when MAX_QUEUE are
# waiting, at every checkpoint and at the end.
MAX_QUEUE = 10_000
FLUSH_MILLIS = 5_000


class EventFileLost(Exception):
    """The run's event file vanished while it was written (deleted, or its folder moved)."""


class MetricWriter:
    """Writes TensorBoard events to `logdir`, or nothing at all when `logdir` is None.

    Host-side writes are compiled: one call per set of tags (traced once per distinct
    set) instead of one eager op per value, so a phase end writing dozens of scalars or
    an epoch end writing histograms is one compiled call.
    """

    def __init__(self, logdir: str | None):
        self.logdir = logdir
        self._file_writer = None  # made at the first write: a refused resume leaves no file
        self._path = None  # its event file
        self._protos = {}
        self._write_raw = tf.function(
            lambda step, proto: tf.summary.experimental.write_raw_pb(proto, step=step),
            autograph=False)
        self._active = 0

    @contextlib.contextmanager
    def as_default(self):
        """Context in which compiled code (`scalars_in_graph`) writes to this writer.

        Leaving it flushes the events (TensorFlow's `as_default` does). Host-side
        writes inside it do not enter the writer again, so they do not flush (and
        sync the file) one by one.
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
        """Writes every `{tag: value}` at `step`, as one event.

        The `Summary` is built on the host and written by one compiled function (one
        trace for every set of tags; a new set does not trace again mid-run).
        """
        tags = tuple(scalars)
        if tags not in self._protos:
            self._protos[tags] = ScalarProtos(tags)
        proto = self._protos[tags].serialize(list(scalars.values()))
        with self._default():
            self._write_raw(tf.constant(step, tf.int64), tf.constant(proto))

    def write_text(self, step: int, tag: str, text: str) -> None:
        """Writes `text` (markdown) under `tag` at `step`."""
        with self._default():
            tf.summary.text(tag, text, step=step)

    def histogram_writer(self, variables: dict[str, tf.Variable]):
        """Compiles `write(step)`: a histogram of each `{tag: variable}`'s current value."""
        metadata = histogram_metadata.create_summary_metadata(display_name=None,
                                                              description=None)

        @tf.function(autograph=False)
        def write(step):
            for tag, variable in variables.items():
                tf.summary.write(tag, histogram_buckets(variable), step=step, metadata=metadata)

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

    def write_hparams(self, hparams: dict, *, trial_id: str) -> None:
        """Writes the run's hyperparameters (HParams' session), named `trial_id` there.

        Values that are not bool, int, float or str (tuples, None) are written as
        strings. The experiment (which hparams and metrics there are, and which
        differ between the runs) is written once beside the runs: `write_experiment`.
        """
        with self._default():
            hp.hparams(hparam_values(hparams), trial_id=trial_id)

    @property
    def _writer(self):
        if self._file_writer is None and self.logdir is None:
            self._file_writer = tf.summary.create_noop_writer()
        elif self._file_writer is None:
            before = set(Path(self.logdir).glob("events.out.tfevents.*"))
            self._file_writer = tf.summary.create_file_writer(
                str(self.logdir), max_queue=MAX_QUEUE, flush_millis=FLUSH_MILLIS)
            made = sorted(set(Path(self.logdir).glob("events.out.tfevents.*")) - before)
            self._path = made[-1] if made else None  # TensorFlow creates the file at once
        return self._file_writer

    def flush(self) -> None:
        """Writes the queued events to the file.

        Raises:
          EventFileLost: the event file is gone. TensorFlow would go on writing into
            the deleted file and lose every later event without a word; the compiled
            loop holds this writer, so the run stops and its resume writes a new file.
        """
        if self._file_writer is not None:
            self._file_writer.flush()
        if self._path is not None and not self._path.exists():
            raise EventFileLost(f"the event file {self._path} was deleted while the run "
                                "trained: the events since its last flush are lost")

    def close(self) -> None:
        if self._file_writer is not None:
            self._file_writer.close()


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
        # Summary.value (1) { tag (1), metadata (9), tensor (8) { _TENSOR_HEAD + f32 } }:
        # everything before the TensorProto is constant per tag. A forgetting metric's
        # metadata carries its definition (TensorBoard's tabs show it).
        tensor_size = len(_TENSOR_HEAD) + 4
        self._prefixes = []
        for tag in self.tags:
            metadata = scalar_metadata.create_summary_metadata(
                display_name=None, description=forgetting.DESCRIPTIONS.get(tag)).SerializeToString()
            head = _field(1, tag.encode()) + _field(9, metadata) + b"\x42" + _varint(tensor_size)
            self._prefixes.append(b"\x0a" + _varint(len(head) + tensor_size) + head)

    def serialize(self, values) -> bytes:
        """The same `Summary` built on the host from one value per tag (Python numbers)."""
        if len(values) != len(self.tags):
            raise ValueError(f"{len(values)} values for {len(self.tags)} tags")
        floats = np.asarray(values, np.float64).astype(np.float32)  # as tf.cast rounds
        return b"".join(prefix + _TENSOR_HEAD + f.tobytes()
                        for prefix, f in zip(self._prefixes, floats.astype("<f4")))

    def __call__(self, values) -> tf.Tensor:
        values = tf.cast(values, tf.float32)
        flat = tf.reshape(values, [-1, 1])
        n = tf.shape(flat)[0]
        # Each one _TENSOR_HEAD + its 4 bytes (the host path and a test rely on that).
        protos = tf.io.encode_proto(tf.ones([n, 2], tf.int32),
                                    [tf.ones([n, 1], tf.int32), flat],  # dtype 1: DT_FLOAT
                                    ["dtype", "float_val"], "tensorflow.TensorProto")
        protos = tf.reshape(protos, tf.shape(values))
        # A constant made here, not in __init__: the protos may be built inside loops.
        return tf.strings.reduce_join(tf.constant(self._prefixes) + protos, axis=-1)


def histogram_buckets(data, bucket_count: int = 30) -> tf.Tensor:
    """TensorBoard's histogram buckets of `data`, (bucket_count, 3): left, right, count.

    The same edges and counts as `tf.summary.histogram` (a test compares them), but
    counted with `bincount` instead of a (size x buckets) float64 one-hot matrix
    (BUILD.md, Speed, has the comparison). `data` must not be empty.
    """
    data = tf.cast(tf.reshape(data, [-1]), tf.float64)
    low, high = tf.reduce_min(data), tf.reduce_max(data)
    width = (high - low) / bucket_count
    single = tf.equal(high, low)
    scaled = (data - low) / tf.where(single, tf.ones_like(width), width)
    index = tf.minimum(tf.cast(tf.floor(scaled), tf.int32), bucket_count - 1)
    index = tf.where(single, bucket_count - 1, index)  # one value: all in the last bucket
    counts = tf.cast(tf.math.bincount(index, minlength=bucket_count, maxlength=bucket_count),
                     tf.float64)
    edges = tf.concat([tf.linspace(low, high, bucket_count + 1)[:-1], [high]], 0)
    left = tf.where(single, tf.fill([bucket_count], high), edges[:-1])
    right = tf.where(single, tf.fill([bucket_count], high), edges[1:])
    return tf.stack([left, right, counts], axis=1)


def scalars_in_graph(step, scalars: dict) -> None:
    """Writes `{"group/name": tensor}` at `step` from inside a `tf.function`, as one event.

    Tags are kept exactly as given. Raises ValueError on a tag without a group.
    """
    protos = ScalarProtos(tuple(scalars))
    tf.summary.experimental.write_raw_pb(
        protos(tf.stack([tf.cast(v, tf.float32) for v in scalars.values()])), step=step)


def scalar_rows_in_graph(first_step, tags, rows) -> None:
    """Writes row i of `rows` (n, len(tags)) at step `first_step + i`, one event per row.

    The writes are unrolled `ROWS_PER_ITERATION` to a loop iteration (the rest one by
    one): a loop iteration costs more than a write (BUILD.md, Speed).
    """
    protos = ScalarProtos(tags)(rows)
    first_step = tf.cast(first_step, tf.int64)
    n = tf.shape(protos, out_type=tf.int64)[0]
    unrolled = n // ROWS_PER_ITERATION * ROWS_PER_ITERATION

    def write(i):
        tf.summary.experimental.write_raw_pb(protos[i], step=first_step + i)

    def rows_from(start):
        for j in range(ROWS_PER_ITERATION):
            write(start + j)
        return (start + ROWS_PER_ITERATION,)

    def one_row(i):
        write(i)
        return (i + 1,)

    tf.while_loop(lambda start: start < unrolled, rows_from, (tf.constant(0, tf.int64),))
    tf.while_loop(lambda i: i < n, one_row, (unrolled,))


ROWS_PER_ITERATION = 10


def scalar_rows_at_steps(at, tags, rows) -> None:
    """Writes row i of `rows` (n, len(tags)) at step `at[i]` (int64, (n,)), one event each."""
    protos = ScalarProtos(tuple(tags))(rows)
    n = tf.shape(protos)[0]

    def write(i):
        tf.summary.experimental.write_raw_pb(protos[i], step=at[i])
        return (i + 1,)

    tf.while_loop(lambda i: i < n, write, (tf.constant(0),))


_TENSOR_HEAD = b"\x08\x01\x2a\x04"  # TensorProto: dtype DT_FLOAT, packed float_val of 4 bytes


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


EXPERIMENT_SUFFIX = ".hparams"


def hparam_values(hparams: dict) -> dict:
    """Values HParams can hold: integers as text (it shows numbers as 100.000)."""
    return {k: v if isinstance(v, (bool, float, str)) else str(v) for k, v in hparams.items()}


def write_experiment(logdir: Path, runs: list[dict], metric_tags: list[str], *,
                     fallback: tuple[str, ...] = ()) -> Path:
    """Writes HParams' experiment for the runs of `logdir` into one event file there.

    `runs`: each run's hparams. The experiment lists those whose values differ
    between the runs (marked `differs`), or `fallback` when none do (one run), so
    the HParams tab shows them and `metric_tags` without a click; every value stays
    in each run's own record. The file replaces the one written before (TensorBoard
    reads one experiment per logdir; a run started later sees more runs). TensorBoard
    orders the list itself (those that differ first, then by name) and shows the first
    five as columns; the others are ticked in its left pane.
    """
    names = list(dict.fromkeys(k for run in runs for k in run))
    values = [hparam_values(run) for run in runs]
    differs = {k: len({json.dumps(v.get(k)) for v in values}) > 1 for k in names}
    shown = [k for k in names if differs[k]] or [k for k in fallback if k in names]
    summary = hp.hparams_config_pb(hparams=[hp.HParam(k) for k in shown],
                                   metrics=[hp.Metric(t) for t in metric_tags])
    value = summary.value[0]
    experiment = hparams_metadata.parse_experiment_plugin_data(
        value.metadata.plugin_data.content)
    for info in experiment.hparam_infos:
        info.differs = differs[info.name]
    value.metadata.CopyFrom(hparams_metadata.create_summary_metadata(
        hparams_plugin_data_pb2.HParamsPluginData(experiment=experiment)))
    old = list(Path(logdir).glob(f"events.out.tfevents.*{EXPERIMENT_SUFFIX}"))
    writer = tf.summary.create_file_writer(str(logdir), filename_suffix=EXPERIMENT_SUFFIX)
    with writer.as_default():
        tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=0)
    writer.close()
    for path in old:
        path.unlink(missing_ok=True)
    return next(iter(sorted(set(Path(logdir).glob(f"events.out.tfevents.*{EXPERIMENT_SUFFIX}"))
                            - set(old))), None)
