"""A subclassed Keras model on tf.data input, class-sorted; kill it and resume bit-exactly.

    python examples/subclassed_tfdata.py --order=sorted --deterministic --run_name=sub
    (kill -9 it, run the same command again: it resumes from its last checkpoint)
"""

from absl import app

import tapeloop

tapeloop.define_flags()


def make_model(input_shape, num_classes):
    import tensorflow as tf

    class Classifier(tf.keras.Model):
        def __init__(self):
            super().__init__(name="classifier")
            self.flatten = tf.keras.layers.Flatten()
            self.hidden = tf.keras.layers.Dense(64, activation="relu")
            self.dropout = tf.keras.layers.Dropout(0.3, seed=1)
            self.out = tf.keras.layers.Dense(num_classes)

        def call(self, x, training=False):
            return self.out(self.dropout(self.hidden(self.flatten(x)), training=training))

    return Classifier()


def datasets():
    """MNIST as two tf.data.Datasets of (image, label) batches: the user's own pipeline."""
    import tensorflow as tf

    from tapeloop.data import mnist

    m, _ = mnist.load_mnist()
    config = tapeloop.config_from_flags()
    n = config.max_train_examples or len(m.y_train)

    def pipeline(x, y):
        return (tf.data.Dataset.from_tensor_slices((x, y.astype("int32"))).batch(500)
                .map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y)))

    return tapeloop.from_datasets(pipeline(m.x_train[:n], m.y_train[:n]),
                                  pipeline(m.x_test, m.y_test), name="mnist via tf.data",
                                  validation_split=config.validation_split)


def main(argv):
    tapeloop.run_from_flags(argv, model=make_model, data=datasets)


if __name__ == "__main__":
    app.run(main)
