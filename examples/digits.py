"""Your own arrays: scikit-learn's bundled 8x8 digits (offline), sorted vs shuffled.

    pip install 'tapeloop[examples]'   # scikit-learn, for load_digits only
    python examples/digits.py --order=sorted --run_name=digits_sorted
    python examples/digits.py --order=shuffled --run_name=digits_shuffled

1,797 images of 8x8 pixels (values 0..16), the last 20% of them the test split. The
test split has about 36 images per class, so the probe takes 15 of each.
"""

from absl import app, flags

import tapeloop

tapeloop.define_flags()
flags.FLAGS.set_default("probe_per_class", 15)
flags.FLAGS.set_default("batch_size", 32)
flags.FLAGS.set_default("epochs", 10)
flags.FLAGS.set_default("hidden_sizes", ["64"])
flags.FLAGS.set_default("dropout", 0.2)


def digits():
    """The digits as tapeloop `Splits`: inputs scaled to [0, 1], shape (8, 8)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("error: examples/digits.py needs scikit-learn: "
                         "pip install 'tapeloop[examples]'") from None

    d = load_digits()
    x, y = d.images / 16.0, d.target
    cut = int(len(y) * 0.8)
    config = tapeloop.config_from_flags()
    return tapeloop.from_arrays(x[:cut], y[:cut], x[cut:], y[cut:], name="sklearn digits",
                                validation_split=config.validation_split,
                                max_train_examples=config.max_train_examples)


def main(argv):
    tapeloop.run_from_flags(argv, data=digits)


if __name__ == "__main__":
    app.run(main)
