"""Summary writers behind a tiny interface; a `None` log dir writes nothing."""

import tensorflow as tf


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
