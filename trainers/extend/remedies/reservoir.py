"""Experience replay from a reservoir: the DQN answer the tutorial's `--order=replay` runs.

A memory of `capacity` examples is filled by reservoir sampling (Vitter's algorithm R),
which keeps every example seen so far with the same probability capacity / seen. Each
step trains on the stream's new examples (`stream_batch_size`: the batch less
`count`) with `count` examples drawn uniformly from the memory appended; then the new
examples are offered to the memory. Unlike `Replay` (class-balanced, filled at task
ends), it needs no task boundaries: it works on any order, one step at a time. In a
scenario, a remembered example keeps its task (its mask in task-IL). It takes its share
out of the stream's batch, so it mixes first (the controller puts it before the other
remedies): the others see its examples as part of the step's batch.

The memory's contents, the number of examples seen and its draws live in variables,
so they are checkpointed; draws are stateless functions of (seed, examples seen), so
a resumed run replays exactly what the uninterrupted run would have.
"""

import tensorflow as tf

from tapeloop.trainers.engine.distribute import replica_share
from tapeloop.trainers.extend.remedies.base import Remedy


class ReservoirReplay(Remedy):
    """`fraction` of every batch drawn from a `capacity`-example reservoir memory."""

    name = "reservoir"

    def __init__(self, capacity: int = 1000, fraction: float = 0.5):
        super().__init__()
        if capacity < 1:
            raise ValueError(f"replay capacity ({capacity}) must be a positive integer")
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"replay_fraction ({fraction}) must lie strictly between 0 and 1")
        self.capacity, self.fraction = capacity, fraction

    def hparams(self) -> dict:
        return {"capacity": self.capacity, "fraction": self.fraction}

    def count(self, batch_size: int) -> int:
        """Remembered examples per batch: `fraction` of it, at least 1 and at most B-1."""
        if batch_size < 2:
            raise ValueError(f"replay needs batch_size >= 2 (new and replayed examples share "
                             f"each batch), not {batch_size}")
        return min(batch_size - 1, max(1, round(batch_size * self.fraction)))

    def stream_batch_size(self, batch_size: int) -> int:
        return batch_size - self.count(batch_size)

    def build(self, model) -> None:
        context = self.context
        self._count = self.count(context.batch_size)
        self._new = context.batch_size - self._count
        self.memory = ReservoirMemory(self.capacity, context.scenario.input_dim,
                                      seed=context.seed)

    def checkpoint_items(self) -> dict:
        return {"memory": self.memory}

    def mix(self, batch: dict) -> dict:
        """The batch with remembered examples appended; its new examples then remembered
        (the draws were made first: the memory's reads come before its writes)."""
        keys = ("image", "label", "task") if "task" in batch else ("image", "label")
        remembered = replica_share(*self.memory.sample(self._count))
        self.memory.add(*_whole_batch([batch[k] for k in keys], self._new))
        return dict(batch, **{k: tf.concat([batch[k], old], axis=0)
                              for k, old in zip(keys, remembered)})


class ReservoirMemory(tf.Module):
    """A fixed-size memory of (image, label) pairs filled by reservoir sampling."""

    def __init__(self, capacity: int, input_dim: int, *, seed: int):
        super().__init__(name="reservoir_memory")
        self.capacity = capacity
        self.images = tf.Variable(tf.zeros([capacity, input_dim]), trainable=False,
                                  name="images")
        self.labels = tf.Variable(tf.zeros([capacity], tf.int32), trainable=False, name="labels")
        self.tasks = tf.Variable(tf.zeros([capacity], tf.int32), trainable=False, name="tasks")
        self.seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="seen")
        self._seed = seed

    def filled(self) -> tf.Tensor:
        """How many slots hold an example (int32)."""
        return tf.cast(tf.minimum(self.seen, self.capacity), tf.int32)

    def sample(self, count: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Up to `count` (images, labels, tasks) drawn uniformly with replacement (none
        while empty)."""
        filled = self.filled()
        idx = tf.random.stateless_uniform([count], seed=self._draw_seed(0), minval=0,
                                          maxval=tf.maximum(filled, 1), dtype=tf.int32)
        idx = idx[:tf.minimum(count, filled * count)]  # nothing at all while empty
        return tf.gather(self.images, idx), tf.gather(self.labels, idx), tf.gather(self.tasks, idx)

    def add(self, images: tf.Tensor, labels: tf.Tensor, tasks: tf.Tensor | None = None) -> None:
        """Offers a batch of new examples (of `tasks`: default 0), one after another, to the
        reservoir.

        Example i (the n-th seen overall, counting from 0) takes slot n while the
        memory is not full, else slot j drawn uniformly from [0, n] if j < capacity.
        When two examples of one batch draw the same slot, the later one wins, as if
        they had been added one at a time.
        """
        m = tf.shape(labels, out_type=tf.int64)[0]
        n = self.seen + tf.range(m, dtype=tf.int64)
        u = tf.random.stateless_uniform([m], seed=self._draw_seed(1), dtype=tf.float64)
        j = tf.cast(tf.floor(u * tf.cast(n + 1, tf.float64)), tf.int64)
        slot = tf.where(n < self.capacity, n, j)
        later_same = tf.logical_and(tf.equal(slot[:, None], slot[None, :]),
                                    tf.range(m)[:, None] < tf.range(m)[None, :])
        keep = tf.logical_and(slot < self.capacity,
                              tf.logical_not(tf.reduce_any(later_same, axis=1)))
        where = tf.boolean_mask(slot, keep)[:, None]
        pairs = [(self.images, images), (self.labels, labels)]
        if tasks is not None:
            pairs.append((self.tasks, tasks))
        for memory, values in pairs:
            if isinstance(memory, tf.distribute.DistributedValues):
                # Mirrored variables have no scatter update: assign the whole new value
                # (every replica computes the same one).
                memory.assign(tf.tensor_scatter_nd_update(memory, where,
                                                          tf.boolean_mask(values, keep)))
            else:
                memory.scatter_nd_update(where, tf.boolean_mask(values, keep))
        self.seen.assign_add(m)

    def _draw_seed(self, purpose: int) -> tf.Tensor:
        return tf.stack([tf.constant(self._seed, tf.int64) * 2 + purpose, self.seen])


def _whole_batch(tensors: list, max_rows: int) -> list:
    """The global batch's rows, in its order, on every replica (this replica's on one
    device): replica i holds rows i, i+n, ... of it (as the stream deals batches).

    Each replica pads to ceil(max_rows / n) rows so that the gather keeps one shape
    every step (a collective keeps the shape it first ran with).
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tensors
    n = context.num_replicas_in_sync
    rows = -(-max_rows // n)
    size = tf.shape(tensors[0])[0]
    valid = tf.cast(tf.range(rows) < size, tf.int32)  # no bool gathers
    padded = [tf.pad(x, [[0, rows - size]] + [[0, 0]] * (x.shape.rank - 1)) for x in tensors]
    gathered = [context.all_gather(x, axis=0) for x in padded + [valid]]

    def interleaved(x):  # (replica, row) -> (row, replica): the global batch's order
        x = tf.reshape(x, tf.concat([[n, rows], tf.shape(x)[1:]], axis=0))
        return tf.reshape(tf.transpose(x, [1, 0] + list(range(2, x.shape.rank))),
                          tf.concat([[n * rows], tf.shape(x)[2:]], axis=0))

    keep = interleaved(gathered[-1]) > 0
    return [tf.boolean_mask(interleaved(x), keep) for x in gathered[:-1]]
