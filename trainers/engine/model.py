"""Models: the built-in ones (the tutorial's MLP, a small CNN), the user's, and what
tapeloop reads of any.

A model is any Keras model (Sequential, functional or subclassed) that maps a batch of
examples to one output per class: logits, or probabilities when it ends in a softmax
(`outputs_probabilities`). tapeloop holds every data set as flat rows and feeds a
model its own input shape (`flat_forward`).
"""

import hashlib
import importlib
import json
import math

import numpy as np
import tensorflow as tf

BUILTIN_MODELS = ("mlp", "cnn")


def build_mlp(*, input_dim: int, hidden_sizes: tuple[int, ...], num_classes: int,
              activation: str = "relu", dropout: float = 0.0,
              seed: int | None = None, dropout_alg: str | None = None) -> tf.keras.Model:
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
      dropout_alg: the masks' random-number algorithm (`Dropout`); None: Keras's.

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
                                  name=f"dropout_{i}", alg=dropout_alg))
    layers.append(tf.keras.layers.Dense(num_classes, kernel_initializer=init(), name="logits"))
    return tf.keras.Sequential(layers, name="mlp")


class Dropout(tf.keras.layers.Dropout):
    """Keras's `Dropout`, applied as one multiply by a mask of 0 and 1 / (1 - rate).

    The same draws and values as Keras's layer (a test checks its outputs are
    bit-identical from the same seed state), but Keras's select-based kernel and its
    gradient cost a few percent of the tutorial's training step on two cores
    (BENCHMARKS.md); a multiply's gradient is one multiply.

    `alg`: the stateless random-number algorithm of the masks (None: TensorFlow's
    default, `auto_select`, Keras's draws). Under XLA on a CPU the default is several
    times slower than "threefry" (BENCHMARKS.md); TensorFlow's plain-graph CPU kernels
    take "philox" and the default only.
    """

    def __init__(self, rate, *, alg: str | None = None, **kwargs):
        super().__init__(rate, **kwargs)
        self.alg = alg

    def get_config(self):
        return {**super().get_config(), "alg": self.alg}

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        # Keras's seed cast (int64 state -> int32 seed), so the draws are its own.
        seed = tf.cast(tf.math.floormod(self.seed_generator.next(), tf.int32.max - 1), tf.int32)
        draw = tf.random.stateless_uniform(tf.shape(inputs), seed=seed,
                                           **({"alg": self.alg} if self.alg else {}))
        return inputs * (tf.cast(draw >= self.rate, inputs.dtype) * (1.0 / (1.0 - self.rate)))


def build_cnn(*, input_shape: tuple[int, ...], num_classes: int, dropout: float = 0.0,
              seed: int | None = None, dropout_alg: str | None = None) -> tf.keras.Model:
    """A small CNN: two 3x3 Conv2D + max-pool blocks (32, 64 filters), then logits.

    `dropout_alg`: the masks' random-number algorithm (`Dropout`); None: Keras's.

    `input_shape`: (H, W, C), (H, W) (one channel is added), or (D,) with D a square
    number (viewed as a D**0.5 x D**0.5 image: flat MNIST rows).

    Raises:
      ValueError: an input shape that is not an image.
    """
    shape = tuple(input_shape)
    if len(shape) == 1 and math.isqrt(shape[0]) ** 2 == shape[0]:
        shape = (math.isqrt(shape[0]),) * 2
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3 or min(shape[:2]) < 10:
        raise ValueError(f"needs images of at least 10x10 pixels, (H, W) or "
                         f"(H, W, C); the data's examples have shape {tuple(input_shape)}")
    seeds = iter(range(0 if seed is None else seed * 1000, 10**9))

    def init():
        return tf.keras.initializers.GlorotUniform(seed=None if seed is None else next(seeds))

    layers = [tf.keras.layers.Input(tuple(input_shape))]
    if shape != tuple(input_shape):
        layers.append(tf.keras.layers.Reshape(shape, name="image"))
    for i, filters in enumerate((32, 64)):
        layers += [tf.keras.layers.Conv2D(filters, 3, activation="relu",
                                          kernel_initializer=init(), name=f"conv_{i}"),
                   tf.keras.layers.MaxPooling2D(2, name=f"pool_{i}")]
    layers.append(tf.keras.layers.Flatten(name="flatten"))
    if dropout > 0:
        layers.append(Dropout(dropout, seed=None if seed is None else next(seeds),
                              name="dropout", alg=dropout_alg))
    layers.append(tf.keras.layers.Dense(num_classes, kernel_initializer=init(), name="logits"))
    return tf.keras.Sequential(layers, name="cnn")


def builder(name: str, *, hidden_sizes: tuple[int, ...] = (150, 100), activation: str = "relu",
            dropout: float = 0.0, seed: int | None = None, dropout_alg: str | None = None):
    """Returns `build(input_shape, num_classes) -> model` for a model name.

    `name`: "mlp" (the tutorial's; `hidden_sizes`, `activation`, `dropout`), "cnn"
    (`dropout`), or "package.module:function", the user's own builder, called with the
    input shape (a tuple) and the number of classes.

    Raises:
      ValueError: an unknown name, or a function that cannot be imported.
    """
    if name == "mlp":
        return lambda input_shape, num_classes: build_mlp(
            input_dim=int(np.prod(input_shape)), hidden_sizes=hidden_sizes,
            num_classes=num_classes, activation=activation, dropout=dropout, seed=seed,
            dropout_alg=dropout_alg)
    if name == "cnn":
        return lambda input_shape, num_classes: build_cnn(
            input_shape=input_shape, num_classes=num_classes, dropout=dropout, seed=seed,
            dropout_alg=dropout_alg)
    module, sep, function = name.partition(":")
    if not sep or not module or not function:
        raise ValueError(f"model ({name!r}) must be one of {', '.join(BUILTIN_MODELS)}, or "
                         "package.module:function naming your own builder")
    try:
        found = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot be loaded: {e}") from None
    if not callable(found):
        raise ValueError(f"{function} in {module} is not a function")
    return found


def build(make, input_shape: tuple[int, ...], num_classes: int) -> tf.keras.Model:
    """Calls a builder and checks what it returns; builds a model that is not built yet.

    Raises:
      ValueError: the builder did not return a Keras model, or its outputs do not have
        one value per class.
    """
    model = make(tuple(input_shape), num_classes)
    if not isinstance(model, tf.keras.Model):
        raise ValueError(f"the model builder returned {type(model).__name__}, not a Keras model")
    return checked(model, input_shape, num_classes)


def checked(model: tf.keras.Model, input_shape: tuple[int, ...], num_classes: int):
    """`model`, built on `input_shape` if it is not yet, with one output per class checked.

    Raises:
      ValueError: the model does not take such examples or has another number of outputs.
    """
    shape = model_input_shape(model, input_shape)
    try:
        out = model(tf.zeros((1, *shape)), training=False) if not model.built else None
        out_shape = tuple(out.shape) if out is not None else tuple(model.output_shape)
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
        raise ValueError(f"the model cannot take examples of shape {tuple(shape)}: "
                         f"{str(e).splitlines()[0]}") from None
    if len(out_shape) != 2 or out_shape[-1] != num_classes:
        raise ValueError(f"the model's output has shape {out_shape}; tapeloop needs one value "
                         f"per class, (batch, {num_classes})")
    return model


def model_input_shape(model: tf.keras.Model, example_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape one example is fed to `model` in: its declared input shape, else the data's.

    Raises:
      ValueError: the declared shape holds another number of values than the examples.
    """
    try:
        declared = model.input_shape
    except (AttributeError, ValueError):
        declared = None
    if not isinstance(declared, tuple) or any(d is None for d in declared[1:]):
        return tuple(example_shape)
    shape = tuple(int(d) for d in declared[1:])
    if int(np.prod(shape)) != int(np.prod(example_shape)):
        raise ValueError(f"the model takes examples of shape {shape} "
                         f"({int(np.prod(shape))} values), the data's have shape "
                         f"{tuple(example_shape)} ({int(np.prod(example_shape))} values)")
    return shape


def flat_forward(model: tf.keras.Model, input_shape: tuple[int, ...]):
    """`forward(rows, training) -> outputs` for flat rows; `model` itself when it takes rows.

    The pipelines, the probe, the evaluator and the replay memory hold examples as
    flat rows; a model of another input shape gets them reshaped (a view, in-graph).
    """
    if len(input_shape) == 1:
        return model
    shape = [-1, *input_shape]

    def forward(rows, training=False):
        return model(tf.reshape(rows, shape), training=training)

    return forward


def outputs_probabilities(model: tf.keras.Model) -> bool:
    """True when the model's last layer ends in a softmax (its outputs are probabilities).

    Sequential and functional models are read; a subclassed model's outputs are taken
    to be logits unless its last tracked layer ends in a softmax.
    """
    layers = all_layers(model)
    last = layers[-1] if layers else None
    activation = getattr(last, "activation", None)
    if isinstance(last, tf.keras.layers.Softmax):
        return True
    return activation is not None and getattr(activation, "__name__", "") == "softmax"


def all_layers(model: tf.keras.Model) -> list:
    """Every layer inside `model`, nested models' layers included, in order."""
    out = []
    for layer in model.layers:
        if isinstance(layer, tf.keras.Model):
            out.extend(all_layers(layer))
        else:
            out.append(layer)
    return out


def has_batch_statistics(model: tf.keras.Model) -> bool:
    """True when a layer computes statistics across a batch's examples (BatchNormalization).

    Such a model's step cannot be cut into parts whose gradients are summed: each part
    would normalise by its own statistics and update the moving averages twice.
    """
    return any(isinstance(layer, tf.keras.layers.BatchNormalization)
               for layer in all_layers(model))


def describe(model: tf.keras.Model, builder_name: str) -> dict:
    """What config.json records of a model: builder, layer table, parameter count, fingerprint.

    The fingerprint is a sha256 of the layer classes and their weights' shapes, in order:
    equal for the same architecture, whatever its weights and names.
    """
    table = [{"name": layer.name, "class": type(layer).__name__,
              "params": int(sum(w.shape.num_elements() for w in layer.trainable_weights))}
             for layer in all_layers(model)]
    # Classes and weight shapes, not names: Keras numbers auto-named layers per process.
    structure = [(type(layer).__name__, [list(w.shape) for w in layer.weights])
                 for layer in all_layers(model)]
    digest = hashlib.sha256(json.dumps(structure, sort_keys=True).encode()).hexdigest()[:16]
    return {"builder": builder_name, "class": type(model).__name__, "layers": table,
            "trainable_parameters": trainable_parameter_count(model),
            "outputs": "probabilities" if outputs_probabilities(model) else "logits",
            "architecture_fingerprint": digest}


def fold_constant_columns(model: tf.keras.Model, images: np.ndarray):
    """An inference forward pass for rows of a fixed set, cheaper by its constant columns.

    Columns that hold the same value in every row of `images` (MNIST's border pixels,
    184 of 784 in the 1,000-image probe) add the same vector to every row's first
    layer: that product is computed once per call and added to the bias, and the
    first matmul runs over the other columns only. The logits equal
    `model(images, training=False)` up to float rounding.

    Returns:
      `(forward, kept)`: `forward(x, training=False)` takes rows of `images[:, kept]`
      (any subset of the rows); or None when no column is constant or the model is
      not a Sequential chain whose first layer is a Dense layer on the flat rows.
    """
    if not isinstance(model, tf.keras.Sequential) or not model.layers:
        return None
    first = model.layers[0]
    try:
        takes_rows = tuple(model.input_shape[1:]) == (images.shape[1],)
    except (AttributeError, ValueError):
        takes_rows = False
    constant = np.all(images == images[:1], axis=0)
    if (not isinstance(first, tf.keras.layers.Dense) or not takes_rows or not constant.any()
            or constant.all()):
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
    """A short, plain-text layer table with parameter counts; the name column fits the
    longest layer name."""
    rows = []
    for layer in all_layers(model):
        params = sum(w.shape.num_elements() for w in layer.trainable_weights)
        width = (layer.units if hasattr(layer, "units")
                 else layer.filters if hasattr(layer, "filters") else "-")
        rows.append((layer.name, str(width), f"{params:,}"))
    rows.append(("trainable", "", f"{trainable_parameter_count(model):,}"))
    name = max(12, *(len(r[0]) + 2 for r in rows))
    return [f"{a:<{name}}{b:>10}{c:>12}" for a, b, c in [("layer", "output", "params")] + rows]
