"""Summary writers behind a tiny interface; a `None` log dir writes nothing."""

import numpy as np
import tensorflow as tf
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary
from tensorboard.plugins.hparams import api as hp


def create_writer(logdir: str | None):
    """A TensorBoard event-file writer for `logdir`, or a no-op writer for None."""
    if logdir is None:
        return tf.summary.create_noop_writer()
    return tf.summary.create_file_writer(str(logdir))


def write_scalars(writer, step: int, scalars: dict[str, float]) -> None:
    """Writes each `{tag: value}` at `step`."""
    with writer.as_default():
        for tag, value in scalars.items():
            tf.summary.scalar(tag, value, step=step)


def write_text(writer, step: int, tag: str, text: str) -> None:
    """Writes `text` (markdown) under `tag` at `step`."""
    with writer.as_default():
        tf.summary.text(tag, text, step=step)


def write_histograms(writer, step: int, arrays: dict[str, np.ndarray]) -> None:
    """Writes a histogram of each `{tag: array}` at `step`."""
    with writer.as_default():
        for tag, values in arrays.items():
            tf.summary.histogram(tag, values, step=step)


def write_image(writer, step: int, tag: str, rgb: np.ndarray) -> None:
    """Writes one RGB uint8 (H, W, 3) image at `step` (TensorBoard stores it as PNG)."""
    with writer.as_default():
        tf.summary.image(tag, rgb[None], step=step)


def write_layout(writer, charts: dict[str, dict[str, list[str]]]) -> None:
    """Writes a custom-scalars layout: `{category: {chart title: [tag regexes]}}`.

    Every tag matching a chart's regexes is drawn on that one chart.
    """
    layout = layout_pb2.Layout(category=[
        layout_pb2.Category(title=category, chart=[
            layout_pb2.Chart(title=title,
                             multiline=layout_pb2.MultilineChartContent(tag=regexes))
            for title, regexes in category_charts.items()])
        for category, category_charts in charts.items()])
    with writer.as_default():
        tf.summary.experimental.write_raw_pb(
            custom_scalar_summary.pb(layout).SerializeToString(), step=0)


def write_hparams(writer, hparams: dict, metric_tags: list[str]) -> None:
    """Writes the run's hyperparameters for the HParams dashboard, with its metrics' tags.

    Values that are not bool, int, float or str (tuples, None) are written as strings.
    """
    clean = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
             for k, v in hparams.items()}
    with writer.as_default():
        hp.hparams_config(hparams=[hp.HParam(k) for k in clean],
                          metrics=[hp.Metric(tag) for tag in metric_tags])
        hp.hparams(clean)


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
