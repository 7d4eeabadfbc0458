"""The peers tapeloop's speed is measured against, each run as a whole process.

`python -m tapeloop.trainers.peers PEER --epochs=E` trains the tutorial's MLP
(784-150-100-10, dropout 0.5, Adam 1e-3, batch 100) on MNIST from tapeloop's cache,
preprocessed as the tutorial does (x / 255, minus the mean image), and exits:

  keras_fit      the tutorial's own call: `model.fit(x, y, batch_size=100,
                 validation_split=0.1)` on the 60,000 training images (54,000 trained,
                 6,000 evaluated after every epoch), `verbose=0`
  keras_fit_spe  the same, with `steps_per_execution` = the steps of one epoch
  jax_scan       JAX + optax: one jitted `lax.scan` per epoch over the 54,000 images
                 held as one array, the epoch's order a permutation, the per-step loss
                 and accuracy kept as scan outputs and copied to the host each epoch
                 (needs the `bench` extra: `pip install 'tapeloop[bench]'`)

`make bench` (`tapeloop.trainers.bench`) times these beside tapeloop's own runs. Each
peer prints one line: its last epoch's loss and accuracy.
"""

import importlib.util

import numpy as np
from absl import app, flags

PEERS = ("keras_fit", "keras_fit_spe", "jax_scan")
BATCH_SIZE, HIDDEN, VALIDATION_SPLIT = 100, (150, 100), 0.1

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This script's flags, defined when it runs (not on import: other scripts share names)."""
    flags.DEFINE_integer("epochs", 2, "Epochs to train.", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Initial weights, order and dropout.")


def has_jax() -> bool:
    """Whether the `jax_scan` peer can run here (JAX and optax installed)."""
    return all(importlib.util.find_spec(name) for name in ("jax", "optax"))


def _tutorial_arrays():
    """The 60,000 training images as the tutorial has them: flat float32, x / 255 minus
    the mean image; and their labels."""
    from tapeloop.data import mnist, splits

    m, _ = mnist.load_mnist(download=False)
    data = splits.mnist_splits(m, validation_split=0.0)
    return data.x_train.reshape(len(data.y_train), -1), data.y_train


def keras_fit(epochs: int, seed: int, steps_per_execution: int = 1) -> str:
    import tensorflow as tf

    x, y = _tutorial_arrays()
    tf.keras.utils.set_random_seed(seed)
    layers = [tf.keras.Input((x.shape[1],))]
    for width in HIDDEN:
        layers += [tf.keras.layers.Dense(width, activation="relu"), tf.keras.layers.Dropout(0.5)]
    model = tf.keras.Sequential(layers + [tf.keras.layers.Dense(10)])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], steps_per_execution=steps_per_execution)
    history = model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs,
                        validation_split=VALIDATION_SPLIT, verbose=0)
    return (f"loss {history.history['loss'][-1]:.4f} accuracy "
            f"{history.history['accuracy'][-1]:.4f}")


def jax_scan(epochs: int, seed: int) -> str:
    import jax
    import jax.numpy as jnp
    import optax

    x, y = _tutorial_arrays()
    n = int(len(y) * (1 - VALIDATION_SPLIT))
    steps = n // BATCH_SIZE
    x, y = jnp.asarray(x[:n]), jnp.asarray(y[:n].astype("int32"))
    widths = [x.shape[1], *HIDDEN, 10]
    keys = jax.random.split(jax.random.PRNGKey(seed), len(widths))
    params = []
    for key, fan_in, fan_out in zip(keys, widths[:-1], widths[1:]):
        limit = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform, as Keras's Dense
        params.append((jax.random.uniform(key, (fan_in, fan_out), minval=-limit, maxval=limit),
                       jnp.zeros(fan_out)))
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)

    def forward(p, images, key):
        h = images
        for i, (w, b) in enumerate(p):
            h = h @ w + b
            if i < len(p) - 1:
                key, drop = jax.random.split(key)
                h = jax.nn.relu(h) * jax.random.bernoulli(drop, 0.5, h.shape) * 2.0
        return h

    def loss_fn(p, images, labels, key):
        logits = forward(p, images, key)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

    @jax.jit
    def epoch(p, s, key):
        order_key, dropout_key = jax.random.split(key)
        order = jax.random.permutation(order_key, n)[:steps * BATCH_SIZE].reshape(steps, BATCH_SIZE)

        def step(carry, rows):
            p, s, key = carry
            key, sub = jax.random.split(key)
            (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                p, x[rows], y[rows], sub)
            updates, s = optimizer.update(grads, s, p)
            accuracy = (logits.argmax(-1) == y[rows]).mean()
            return (optax.apply_updates(p, updates), s, key), (loss, accuracy)

        (p, s, _), (losses, accuracies) = jax.lax.scan(step, (p, s, dropout_key), order)
        return p, s, losses, accuracies

    key = jax.random.PRNGKey(seed + 1)
    for _ in range(epochs):
        key, sub = jax.random.split(key)
        params, opt_state, losses, accuracies = epoch(params, opt_state, sub)
        rows = np.stack([np.asarray(losses), np.asarray(accuracies)], 1)  # every step, on the host
    return f"loss {rows[:, 0].mean():.4f} accuracy {rows[:, 1].mean():.4f}"


def main(argv):
    if len(argv) != 2 or argv[1] not in PEERS:
        raise app.UsageError(f"name one peer: {', '.join(PEERS)}")
    peer, epochs, seed = argv[1], FLAGS.epochs, FLAGS.seed
    if peer == "jax_scan":
        if not has_jax():
            raise SystemExit("error: jax_scan needs JAX and optax: pip install 'tapeloop[bench]'")
        print(f"{peer}: {jax_scan(epochs, seed)}")
    else:
        steps = -(-int(60_000 * (1 - VALIDATION_SPLIT)) // BATCH_SIZE)
        print(f"{peer}: {keras_fit(epochs, seed, steps if peer == 'keras_fit_spe' else 1)}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
