"""A small CNN of your own on MNIST as 28x28x1 images, with every tapeloop instrument.

    python examples/cnn_mnist.py --order=shuffled --epochs=5 --run_name=cnn_shuffled
    python examples/cnn_mnist.py --order=sorted --epochs=5 --run_name=cnn_sorted

Every tapeloop flag works here (tapeloop.define_flags); the model is this file's.
"""

from absl import app

import tapeloop

tapeloop.define_flags()


def small_cnn(input_shape, num_classes):
    """Two Conv2D blocks on the 28x28 digits (one channel added), then logits."""
    import tensorflow as tf

    layers = tf.keras.layers
    return tf.keras.Sequential([
        layers.Input(input_shape),
        layers.Reshape((*input_shape, 1)),  # MNIST examples are (28, 28): one channel
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Flatten(), layers.Dropout(0.5), layers.Dense(num_classes),
    ], name="small_cnn")


def main(argv):
    tapeloop.run_from_flags(argv, model=small_cnn)


if __name__ == "__main__":
    app.run(main)
