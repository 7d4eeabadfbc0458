"""The multilayer perceptron of the tutorial, on Keras layers, ending in logits."""

import numpy as np
import tensorflow as tf


def build_mlp(*, input_dim: int, hidden_sizes: tuple[int, ...], num_classes: int,
              activation: str = "relu", dropout: float = 0.0,
              seed: int | None = None) -> tf.keras.Model:
    """Builds input -> [Dense(h, activation) -> Dropout] * len(hidden_sizes) -> Dense(classes).

    The output layer is linear: the model returns logits, and the loss applies the
    softmax itself (numerically stable). Parameter counts equal the tutorial's
    softmax models: 10-100-100-3 has 11,503, 784-150-100-10 has 133,860.

    Args:
      input_dim: length of an input vector.
      hidden_sizes: widths of the hidden layers.
      num_classes: number of output logits.
      activation: activation of the hidden layers.
      dropout: rate of the Dropout layer after each hidden layer; 0 leaves them out.
      seed: seeds the weight initialisers and the dropout masks.

    Raises:
      ValueError: on a non-positive size or a dropout rate outside [0, 1).
    """
    if input_dim < 1 or num_classes < 1 or not hidden_sizes or min(hidden_sizes) < 1:
        raise ValueError(f"sizes must be positive: input_dim={input_dim}, "
                         f"hidden_sizes={hidden_sizes}, num_classes={num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout ({dropout}) must lie in [0, 1)")
    seeds = iter(range(0 if seed is None else seed * 1000, 10**9))

    def init():
        return tf.keras.initializers.GlorotUniform(seed=None if seed is None else next(seeds))

    layers = [tf.keras.layers.Input((input_dim,))]
    for i, width in enumerate(hidden_sizes):
        layers.append(tf.keras.layers.Dense(width, activation=activation,
                                            kernel_initializer=init(), name=f"dense_{i}"))
        if dropout > 0:
            layers.append(Dropout(dropout, seed=None if seed is None else next(seeds),
                                  name=f"dropout_{i}"))
    layers.append(tf.keras.layers.Dense(num_classes, kernel_initializer=init(), name="logits"))
    return tf.keras.Sequential(layers, name="mlp")


class Dropout(tf.keras.layers.Dropout):
    """Keras's `Dropout`, applied as one multiply by a mask of 0 and 1 / (1 - rate).

    The same draws and values as Keras's layer (a test checks its outputs are
    bit-identical from the same seed state), but Keras's select-based kernel and its
    gradient cost ~3-7% of the tutorial's training step on two cores
    (BENCHMARKS.md); a multiply's gradient is one multiply.
    """

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        # Keras's seed cast (int64 state -> int32 seed), so the draws are its own.
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max - 1), tf.int32)
        draw = tf.random.stateless_uniform(tf.shape(inputs), seed=seed)
        return inputs * (tf.cast(draw >= self.rate, inputs.dtype) * (1.0 / (1.0 - self.rate)))


def fold_constant_columns(model: tf.keras.Model, images: np.ndarray):
    """An inference forward pass for rows of a fixed set, cheaper by its constant columns.

    Columns that hold the same value in every row of `images` (MNIST's border pixels,
    184 of 784 in the 1,000-image probe) add the same vector to every row's first
    layer: that product is computed once per call and added to the bias, and the
    first matmul runs over the other columns only. The logits equal
    `model(images, training=False)` up to float rounding.

    Returns:
      `(forward, kept)`: `forward(x, training=False)` takes rows of `images[:, kept]`
      (any subset of the rows); or None when no column is constant or the model
      does not start with a Dense layer.
    """
    first = model.layers[0]
    constant = np.all(images == images[:1], axis=0)
    if not isinstance(first, tf.keras.layers.Dense) or not constant.any() or constant.all():
        return None
    kept, folded = np.flatnonzero(~constant), np.flatnonzero(constant)
    folded_row = images[:1, folded].astype(np.float32)

    def forward(x, training=False):
        del training  # inference only: Dropout layers pass their input through
        offset = tf.matmul(folded_row, tf.gather(first.kernel, folded))
        if first.bias is not None:
            offset += first.bias
        h = first.activation(tf.matmul(x, tf.gather(first.kernel, kept)) + offset)
        for layer in model.layers[1:]:
            h = layer(h, training=False)
        return h

    return forward, kept


def trainable_parameter_count(model: tf.keras.Model) -> int:
    """Number of trainable scalars (weights and biases)."""
    return int(sum(v.shape.num_elements() for v in model.trainable_variables))


def summary_lines(model: tf.keras.Model) -> list[str]:
    """A short, plain-text layer table with parameter counts."""
    lines = [f"{'layer':<12}{'output':>10}{'params':>10}"]
    for layer in model.layers:
        params = sum(w.shape.num_elements() for w in layer.trainable_weights)
        width = layer.units if hasattr(layer, "units") else "-"
        lines.append(f"{layer.name:<12}{width!s:>10}{params:>10,}")
    lines.append(f"{'trainable':<12}{'':>10}{trainable_parameter_count(model):>10,}")
    return lines
