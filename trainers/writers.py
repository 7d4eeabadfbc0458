"""Summary writers behind a tiny interface; a `None` log dir writes nothing.

`MetricWriter` is the host-side interface (scalars, text, images, HParams, layouts);
`scalars_in_graph` writes from inside compiled code to whichever writer is the
default (`with writer.as_default():` around the call).
"""

import tensorflow as tf
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

    def as_default(self):
        """Context in which compiled code (`scalars_in_graph`) writes to this writer."""
        return self._writer.as_default()

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        """Writes each `{tag: value}` at `step`."""
        tags = tuple(scalars)
        if tags not in self._scalar_fns:
            def write(s, values, tags=tags):
                for i, tag in enumerate(tags):
                    tf.summary.scalar(tag, values[i], step=s)

            self._scalar_fns[tags] = tf.function(write)
        with self._writer.as_default():
            self._scalar_fns[tags](tf.constant(step, tf.int64),
                                   tf.constant([float(v) for v in scalars.values()],
                                               tf.float32))

    def write_text(self, step: int, tag: str, text: str) -> None:
        """Writes `text` (markdown) under `tag` at `step`."""
        with self._writer.as_default():
            tf.summary.text(tag, text, step=step)

    def histogram_writer(self, variables: dict[str, tf.Variable]):
        """Compiles `write(step)`: a histogram of each `{tag: variable}`'s current value."""
        @tf.function
        def write(step):
            for tag, variable in variables.items():
                tf.summary.histogram(tag, variable, step=step)

        def run(step: int) -> None:
            with self._writer.as_default():
                write(tf.constant(step, tf.int64))

        return run

    def write_png(self, step: int, tag: str, png: bytes, *, width: int, height: int) -> None:
        """Writes an already PNG-encoded image as an image summary (no second encoding)."""
        with self._writer.as_default():
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
        with self._writer.as_default():
            tf.summary.experimental.write_raw_pb(
                custom_scalar_summary.pb(layout).SerializeToString(), step=0)

    def write_hparams(self, hparams: dict, metric_tags: list[str]) -> None:
        """Writes the run's hyperparameters for the HParams dashboard, with its metrics' tags.

        Values that are not bool, int, float or str (tuples, None) are written as strings.
        """
        clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
                 for k, v in hparams.items()}
        with self._writer.as_default():
            hp.hparams_config(hparams=[hp.HParam(k) for k in clean],
                              metrics=[hp.Metric(tag) for tag in metric_tags])
            hp.hparams(clean)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def scalars_in_graph(step, scalars: dict) -> None:
    """Writes `{"group/name": tensor}` from inside a `tf.function`, tags kept as given.

    `tf.summary.scalar` prefixes the enclosing name scope, and AutoGraph's loops open
    one ("while/"); an absolute scope (ending in "/") keeps the tag exactly.
    """
    for tag, value in scalars.items():
        scope, _, name = tag.rpartition("/")
        if not scope:
            raise ValueError(f"tag ({tag!r}) must have a group, like 'train/loss'")
        with tf.name_scope(scope + "/"):
            tf.summary.scalar(name, value, step=step)
