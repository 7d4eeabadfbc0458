"""tf.data pipelines that decide the order in which training examples arrive.

Every pipeline yields, for all epochs in one stream, dicts of
  image (float32, (B, D)), label (int32, (B,)), phase (int32, scalar),
where `phase` names the block the batch belongs to: the class in `class_sorted`
and `blocked`, the epoch in `shuffled`. Each epoch presents every training example
exactly once. (The `replay` order is `class_sorted` with smaller batches: the
replayed examples are mixed in by the reservoir remedy, `trainers.extend.remedies.reservoir`,
in the training step.) The tutorial's orders reach the controller as scenarios
(`trainers.extend.scenarios.orders`).

The order is a pure function of (seed, epoch): epochs are shuffled with stateless
random ops, so a run is reproducible, and epoch e's order does not depend on how
many epochs came before it. Batches are gathered by index from arrays held in
memory, in one map stage, which keeps the input side cheap.

Each pipeline has a matching *plan*: the (phase, number of batches) blocks of one
epoch, computed on the host from the labels alone. The trainer uses it to know
where phases and epochs end without reading anything back from the stream.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tapeloop.data import ORDERS


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """The blocks of one epoch, in order: `phases[i]` lasts `steps[i]` batches."""

    phases: tuple[int, ...]
    steps: tuple[int, ...]

    @property
    def total_steps(self) -> int:
        return sum(self.steps)


def plan_epoch(labels: np.ndarray, *, order: str, batch_size: int, epoch: int = 0,
               class_order: tuple[int, ...] | None = None,
               block_steps: int = 0) -> EpochPlan:
    """Returns the phase blocks of epoch `epoch` of the pipeline `make_pipeline` builds.

    `batch_size` is the stream's batch size (for `replay`, the new examples per batch).

    Raises:
      ValueError: on an unknown order or a bad batch size / class order / block length.
    """
    _check_batch_size(batch_size)
    n = len(labels)
    if order == "shuffled":
        return EpochPlan(phases=(epoch,), steps=(-(-n // batch_size),))
    if order in ("sorted", "replay", "blocked"):
        class_order = _check_class_order(labels, class_order)
        counts = [-(-int(np.sum(labels == c)) // batch_size) for c in class_order]
        if order != "blocked":
            return EpochPlan(phases=tuple(class_order), steps=tuple(counts))
        blocks = _blocks(counts, _check_block_steps(block_steps))
        return EpochPlan(phases=tuple(class_order[i] for i, _, _ in blocks),
                         steps=tuple(k for _, _, k in blocks))
    raise ValueError(f"order ({order!r}) must be one of {ORDERS}")


def _blocks(batches_per_class: list[int], block_steps: int) -> list[tuple[int, int, int]]:
    """Round-robin blocks: (class position, first batch within the class, batches).

    Classes take turns in their order, `block_steps` batches at a time; a class whose
    batches run out leaves the rotation. A block as long as the largest class gives
    the class-sorted order.
    """
    blocks, taken = [], [0] * len(batches_per_class)
    while any(t < n for t, n in zip(taken, batches_per_class)):
        for i, n in enumerate(batches_per_class):
            if taken[i] < n:
                k = min(block_steps, n - taken[i])
                blocks.append((i, taken[i], k))
                taken[i] += k
    return blocks


def shuffled(images: np.ndarray, labels: np.ndarray, *, batch_size: int, seed: int,
             epochs: int, start_step: int = 0, pixel_mean: np.ndarray | None = None,
             shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
    """i.i.d. minibatches, reshuffled every epoch; phase = epoch index.

    The last batch of an epoch holds the remainder (N mod batch_size) when there is one.
    """
    _check_batch_size(batch_size)
    n = len(labels)
    starts = np.arange(0, n, batch_size)

    def epoch_order(epoch):
        return shuffled_order(n, seed=seed, epoch=epoch)

    return _stream(images, labels, epochs=epochs, start_step=start_step, pixel_mean=pixel_mean,
                   shard=shard, epoch_order=epoch_order, starts=starts,
                   ends=np.minimum(starts + batch_size, n),
                   batch_phase=lambda epoch, b: tf.cast(epoch, tf.int32))


def shuffled_order(n: int, *, seed: int, epoch) -> tf.Tensor:
    """The order (int32, (n,)) in which `shuffled` presents `n` examples in epoch `epoch`."""
    return tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int32),
                                                    seed=_epoch_seed(seed, epoch))


def class_sorted(images: np.ndarray, labels: np.ndarray, *, batch_size: int, seed: int,
                 epochs: int, class_order: tuple[int, ...] | None = None,
                 start_step: int = 0, pixel_mean: np.ndarray | None = None,
                 shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
    """Every epoch presents all examples of one class, then the next; phase = class id.

    Within a class the examples are reshuffled every epoch. A batch never mixes two
    classes: a class whose size is not a multiple of `batch_size` ends with one
    smaller batch (nothing is dropped or carried over into the next class).

    Args:
      images, labels: the training arrays.
      batch_size: examples per batch.
      seed: reproduces the within-class order.
      epochs: how many epochs the stream holds.
      class_order: the order of the class blocks; default ascending class ids.
      start_step: begin the stream at this batch of the run (to resume).
      pixel_mean: when given, `images` are uint8 pixels and every batch becomes
        pixels / 255 - pixel_mean (the tutorial's preprocessing, bit for bit).
      shard: (i, n): yield only part i of n of every batch (its examples i, i+n, ...),
        for replica i of n under tf.distribute.
    """
    return class_blocks(images, labels, batch_size=batch_size, seed=seed, epochs=epochs,
                        class_order=class_order, start_step=start_step, pixel_mean=pixel_mean,
                        shard=shard)


def class_blocks(images: np.ndarray, labels: np.ndarray, *, batch_size: int, seed: int,
                 epochs: int, block_steps: int = 0, class_order: tuple[int, ...] | None = None,
                 start_step: int = 0, pixel_mean: np.ndarray | None = None,
                 shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
    """Single-class batches, classes taking turns `block_steps` batches at a time.

    `block_steps` = 1 alternates classes at every batch (nearly interleaved, though
    each batch still holds one class); 0, or a block at least as long as the largest
    class, is `class_sorted`. Within a class the examples are reshuffled every epoch,
    and a class's last batch may be smaller. Phase = the block's class. Other
    arguments as in `class_sorted`.
    """
    _check_batch_size(batch_size)
    class_order = _check_class_order(labels, class_order)
    members = [tf.constant(np.flatnonzero(labels == c), tf.int32) for c in class_order]
    sizes = [int(np.sum(labels == c)) for c in class_order]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    counts = [-(-size // batch_size) for size in sizes]
    starts, ends, phases = [], [], []
    # The batch table is the same every epoch: only the order within each class moves.
    for i, first, k in _blocks(counts, _check_block_steps(block_steps) if block_steps
                               else max(counts)):
        block = offsets[i] + np.arange(first, first + k) * batch_size
        starts.append(block)
        ends.append(np.minimum(block + batch_size, offsets[i + 1]))
        phases.append(np.full(k, class_order[i]))
    phases = tf.constant(np.concatenate(phases), tf.int32)

    def epoch_order(epoch):
        epoch_seed = _epoch_seed(seed, epoch)
        return tf.concat([
            tf.random.experimental.stateless_shuffle(
                idx, seed=tf.random.experimental.stateless_fold_in(epoch_seed, position))
            for position, idx in enumerate(members)], axis=0)

    return _stream(images, labels, epochs=epochs, start_step=start_step, pixel_mean=pixel_mean,
                   shard=shard, epoch_order=epoch_order,
                   starts=np.concatenate(starts), ends=np.concatenate(ends),
                   batch_phase=lambda epoch, b: phases[b])


def make_pipeline(order: str, images: np.ndarray, labels: np.ndarray, *, batch_size: int,
                  seed: int, epochs: int, class_order: tuple[int, ...] | None = None,
                  start_step: int = 0, pixel_mean: np.ndarray | None = None,
                  block_steps: int = 0, shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
    """Dispatches to the pipeline named by `order` (one of `ORDERS`).

    `replay` streams the class-sorted order (pass the new examples per batch as
    `batch_size`); `blocked` takes `block_steps`. `shard` = (i, n) keeps part i of n
    of every batch (see `class_sorted`).

    `start_step` > 0 starts the stream at that batch of the run, exactly as the
    uninterrupted stream would have continued: how a resumed run restores its
    input position. With `pixel_mean`, `images` are uint8 pixels normalised per batch
    (a quarter of the memory of float32 images, the same values).
    """
    if order == "shuffled":
        return shuffled(images, labels, batch_size=batch_size, seed=seed, epochs=epochs,
                        start_step=start_step, pixel_mean=pixel_mean, shard=shard)
    if order in ("sorted", "replay"):
        return class_sorted(images, labels, batch_size=batch_size, seed=seed, epochs=epochs,
                            class_order=class_order, start_step=start_step,
                            pixel_mean=pixel_mean, shard=shard)
    if order == "blocked":
        return class_blocks(images, labels, batch_size=batch_size, seed=seed, epochs=epochs,
                            block_steps=_check_block_steps(block_steps),
                            class_order=class_order, start_step=start_step,
                            pixel_mean=pixel_mean, shard=shard)
    raise ValueError(f"order ({order!r}) must be one of {ORDERS}")


def _stream(images: np.ndarray, labels: np.ndarray, *, epochs: int, start_step: int,
            pixel_mean: np.ndarray | None, epoch_order, shard: tuple[int, int],
            starts: np.ndarray, ends: np.ndarray, batch_phase) -> tf.data.Dataset:
    """All epochs as one stream of batch dicts.

    Epoch e visits the examples in `epoch_order(e)` (int32 indices); its batch b is
    `order[starts[b]:ends[b]]`, gathered from the arrays held in memory, with phase
    `batch_phase(e, b)`. The stream starts at batch `start_step` of the run: the
    order being a function of (seed, epoch), this is where the uninterrupted stream
    would be, without replaying anything before it. One map stage per batch and a
    one-thread private pool keep the input side off the training step's cores.
    """
    num_batches = len(starts)
    shard_index, num_shards = shard
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard ({shard}) must be (i, n) with 0 <= i < n")
    # The arrays enter as a dataset input, held by reference: captured by the map
    # function instead, they would be copied into its graph (twice).
    if pixel_mean is None:
        images = tf.constant(images, tf.float32)

        def normalise(x):
            return x
    else:
        if images.dtype != np.uint8:
            raise ValueError(f"with pixel_mean, images must be uint8 pixels, not {images.dtype}")
        images, mean = tf.constant(images), tf.constant(pixel_mean, tf.float32)

        def normalise(x):  # float32(x) / 255 - mean: the same IEEE steps as numpy's.
            return tf.cast(x, tf.float32) / tf.constant(255.0) - mean
    arrays = tf.data.Dataset.from_tensors((images, tf.constant(labels, tf.int32))).repeat()
    starts = tf.constant(starts, tf.int64)
    ends = tf.constant(ends, tf.int64)

    if not 0 <= start_step <= epochs * num_batches:
        raise ValueError(f"start_step ({start_step}) must lie in [0, {epochs * num_batches}]")
    first_epoch, first_batch = divmod(start_step, num_batches)

    def one_epoch(epoch):
        order = epoch_order(epoch)
        # Only the first epoch of a resumed stream starts past its beginning.
        first = tf.where(epoch == first_epoch, tf.constant(first_batch, tf.int64), 0)

        def batch(b, data):
            idx = order[starts[b]:ends[b]]
            if num_shards > 1:
                idx = idx[shard_index::num_shards]
            return {"image": normalise(tf.gather(data[0], idx)),
                    "label": tf.gather(data[1], idx),
                    "phase": batch_phase(epoch, b)}

        return tf.data.Dataset.zip(tf.data.Dataset.range(first, num_batches), arrays).map(batch)

    options = tf.data.Options()
    options.threading.private_threadpool_size = 1  # Leave the cores to the training step.
    options.deterministic = True
    return (tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
            .prefetch(2).with_options(options))


def _epoch_seed(seed: int, epoch) -> tf.Tensor:
    return tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size ({batch_size}) must be a positive integer")


def _check_block_steps(block_steps: int) -> int:
    if not isinstance(block_steps, (int, np.integer)) or block_steps < 1:
        raise ValueError(f"block_steps ({block_steps}) must be a positive integer "
                         "(batches per class block)")
    return block_steps


def _check_class_order(labels: np.ndarray, class_order) -> tuple[int, ...]:
    present = sorted(int(c) for c in np.unique(labels))
    if class_order is None:
        return tuple(present)
    class_order = tuple(int(c) for c in class_order)
    if sorted(class_order) != present:
        raise ValueError(
            f"class_order {class_order} must list each class of the data exactly once "
            f"(classes present: {present})")
    return class_order
