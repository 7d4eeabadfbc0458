"""Experience replay: a reservoir-sampled memory of past examples mixed into every batch.

The stream (class-sorted order, `replay_count` fewer new examples per batch) gives
the current class; `ReplayMemory.wrap(train_step)` returns a step that, in the
graph, appends `replay_count` examples drawn uniformly from the memory to each
batch, trains on the mix, then offers the batch's new examples to the memory.

Reservoir sampling (Vitter's algorithm R) keeps every example seen so far in the
memory with the same probability capacity / seen. The memory's contents, the
number of examples seen and its random draws live in variables: they are part of
the checkpoint, and draws are stateless functions of (seed, examples seen), so a
resumed run replays exactly what the uninterrupted run would have.
"""

import tensorflow as tf


class ReplayMemory(tf.Module):
    """A fixed-size memory of (image, label) pairs filled by reservoir sampling."""

    def __init__(self, capacity: int, input_dim: int, *, seed: int):
        super().__init__(name="replay_memory")
        if capacity < 1:
            raise ValueError(f"replay capacity ({capacity}) must be a positive integer")
        self.capacity = capacity
        self.images = tf.Variable(tf.zeros([capacity, input_dim]), trainable=False,
                                  name="images")
        self.labels = tf.Variable(tf.zeros([capacity], tf.int32), trainable=False, name="labels")
        self.seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="seen")
        self._seed = seed

    def filled(self) -> tf.Tensor:
        """How many slots hold an example (int32)."""
        return tf.cast(tf.minimum(self.seen, self.capacity), tf.int32)

    def sample(self, count: int) -> tuple[tf.Tensor, tf.Tensor]:
        """Up to `count` examples drawn uniformly with replacement (none while empty)."""
        filled = self.filled()
        idx = tf.random.stateless_uniform([count], seed=self._draw_seed(0), minval=0,
                                          maxval=tf.maximum(filled, 1), dtype=tf.int32)
        idx = idx[:tf.minimum(count, filled * count)]  # nothing at all while empty
        return tf.gather(self.images, idx), tf.gather(self.labels, idx)

    def add(self, images: tf.Tensor, labels: tf.Tensor) -> None:
        """Offers a batch of new examples, one after another, to the reservoir.

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
        for memory, values in ((self.images, images), (self.labels, labels)):
            if isinstance(memory, tf.distribute.DistributedValues):
                # Mirrored variables have no scatter update: assign the whole new value.
                memory.assign(tf.tensor_scatter_nd_update(memory, where,
                                                          tf.boolean_mask(values, keep)))
            else:
                memory.scatter_nd_update(where, tf.boolean_mask(values, keep))
        self.seen.assign_add(m)

    def wrap(self, train_step, replay_count: int):
        """`train_step` on each batch plus `replay_count` remembered examples; then remember."""
        if replay_count < 1:
            raise ValueError(f"replay_count ({replay_count}) must be a positive integer")

        def replay_step(batch):
            metrics = train_step(mix(batch, *self.sample(replay_count)))
            self.add(batch["image"], batch["label"])
            return metrics

        return replay_step

    def _draw_seed(self, purpose: int) -> tf.Tensor:
        return tf.stack([tf.constant(self._seed, tf.int64) * 2 + purpose, self.seen])


def mix(batch: dict, images: tf.Tensor, labels: tf.Tensor) -> dict:
    """`batch` with remembered `images` and `labels` appended after its own examples."""
    return dict(batch, image=tf.concat([batch["image"], images], axis=0),
                label=tf.concat([batch["label"], labels], axis=0))


def replay_count(batch_size: int, fraction: float) -> int:
    """Remembered examples per batch: `fraction` of `batch_size`, at least 1 and at most B-1.

    Raises:
      ValueError: `fraction` outside (0, 1).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"replay_fraction ({fraction}) must lie strictly between 0 and 1")
    return min(batch_size - 1, max(1, round(batch_size * fraction)))
