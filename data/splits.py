"""Train / validation / test arrays, ready for the pipelines (float32 inputs, int32 labels).

Any data set becomes `Splits`: MNIST (`mnist_splits`), the noise set (`noise_splits`),
the user's own numpy arrays of any per-example shape (`from_arrays`), or finite
`tf.data.Dataset`s of `(x, y)` (`from_datasets`, read once into arrays). The arrays are
kept flat, one row of `input_dim` values per example, and `example_shape` records the
shape each row is viewed as when it is fed to a model (`trainers.engine.model.flat_forward`).
"""

import dataclasses
import functools
import hashlib
from typing import Callable

import numpy as np

from tapeloop.data import mnist, noise, preprocess
from tapeloop.data.mnist import DataError


@dataclasses.dataclass(frozen=True)
class Splits:
    """The three splits of one data set, preprocessed."""

    x_train: np.ndarray  # float32 (N, D): what the pipelines train on
    y_train: np.ndarray  # int32 (N,)
    x_val: np.ndarray  # float32 (V, D): held out from the training split
    y_val: np.ndarray  # int32 (V,)
    x_test: np.ndarray  # float32 (T, D): never trained on
    y_test: np.ndarray  # int32 (T,)
    num_classes: int  # labels lie in 0..num_classes-1
    source: str  # where the data came from, for the log
    # MNIST only: the training images as uint8 pixels (N, D) and the mean subtracted,
    # x_train == pixels / 255 - mean exactly; pipelines hold these 4x smaller arrays.
    train_pixels: np.ndarray | None = None
    pixel_mean: np.ndarray | None = None
    example_shape: tuple[int, ...] | None = None  # one example's shape; None: (input_dim,)
    name: str = ""  # the data set's name, for config.json and resume checks
    class_names: tuple[str, ...] | None = None  # each class's name (None: ids only)
    fingerprint: str = ""  # sha256 (16 hex digits) of the arrays as given, before any split
    # How the splits were cut from the arrays given: what config.json records of them.
    validation_split: float | None = None
    max_train_examples: int = 0  # 0: all
    max_test_examples: int = 0  # 0: all
    # remake(validation_split=, max_train_examples=, max_test_examples=) -> Splits: the
    # same arrays cut otherwise (None: they cannot be), for the flags of a script that
    # passes its own data.
    remake: Callable[..., "Splits"] | None = dataclasses.field(default=None, repr=False,
                                                               compare=False)

    @property
    def input_dim(self) -> int:
        return self.x_train.shape[1]

    @property
    def shape(self) -> tuple[int, ...]:
        """One example's shape (the data's own, before flattening)."""
        return self.example_shape or (self.input_dim,)

    def describe(self) -> dict:
        """What config.json records of the data: name, source, shapes, class counts, fingerprint."""
        return {"name": self.name, "source": self.source, "example_shape": list(self.shape),
                "num_classes": self.num_classes,
                "class_names": list(self.class_names) if self.class_names else None,
                "validation_split": self.validation_split,
                "max_train_examples": self.max_train_examples,
                "max_test_examples": self.max_test_examples,
                "train_examples": int(len(self.y_train)),
                "train_class_counts": np.bincount(self.y_train, minlength=self.num_classes)
                .tolist(),
                "validation_examples": int(len(self.y_val)),
                "test_class_counts": np.bincount(self.y_test, minlength=self.num_classes)
                .tolist(),
                "fingerprint": self.fingerprint}


def holdout(labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Splits indices into (train, validation), holding out the last `fraction` of each class.

    This is what `fit(x_c, y_c, validation_split=fraction)` holds out when called on
    one class at a time, as the tutorial's class loop does; over all classes it is a
    class-balanced version of Keras's "last `fraction` of the data".

    Raises:
      ValueError: if `fraction` is outside [0, 1).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_split ({fraction}) must lie in [0, 1)")
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        cut = int(len(idx) * (1.0 - fraction))  # Keras's own rounding.
        train.append(idx[:cut])
        val.append(idx[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def mnist_splits(m: mnist.Mnist, *, validation_split: float, max_train_examples: int = 0,
                 max_test_examples: int = 0, source: str = "") -> Splits:
    """Preprocesses MNIST as the tutorial and holds out the validation split.

    Args:
      m: the uint8 arrays.
      validation_split: fraction of each class held out from training.
      max_train_examples: if > 0, use only the first this many training images.
      max_test_examples: if > 0, use only the first this many test images.
      source: where `m` came from.
    """
    return from_arrays(*m, validation_split=validation_split, num_classes=10,
                       class_names=MNIST_CLASSES,
                       max_train_examples=max_train_examples,
                       max_test_examples=max_test_examples, name="mnist", source=source)


def from_arrays(x_train, y_train, x_test, y_test, *, validation_split: float = 0.1,
                num_classes: int | None = None, max_train_examples: int = 0,
                max_test_examples: int = 0, name: str = "arrays", source: str = "",
                class_names=None) -> Splits:
    """The user's own arrays as `Splits`: inputs of any per-example shape, integer labels.

    uint8 inputs are pixels and get the tutorial's preprocessing (scaled to [0, 1], the
    training split's mean image subtracted; the pipelines then hold the 4x smaller
    pixels). Other inputs are used as given, as float32.

    Args:
      x_train, x_test: (N, ...) inputs; both splits must have the same per-example shape.
      y_train, y_test: (N,) integer class ids, 0..num_classes-1.
      validation_split: fraction of each class held out from the training split.
      num_classes: default: the largest label + 1 of either split.
      max_train_examples, max_test_examples: > 0: use only the first this many.
      name: the data set's name (recorded in config.json and checked on resume).
      source: where the arrays came from, for the log.
      class_names: each class's name, in id order (e.g. `FASHION_MNIST_CLASSES`): recorded
        in config.json and shown in the Forgetting tab, the report and the plots.

    Raises:
      DataError: what `mnist.check_layout` refuses (ragged or mismatched shapes or
        lengths, non-integer or negative labels, an empty split, NaN or Inf, a class
        without training examples), a label past num_classes, or class_names that are not
        one distinct, non-empty string per class.
    """
    remake = functools.partial(from_arrays, x_train, y_train, x_test, y_test,
                               num_classes=num_classes, name=name, source=source,
                               class_names=class_names)
    x_train, y_train, x_test, y_test = (
        _array(a, f"{name}: {what}") for a, what in ((x_train, "x_train"), (y_train, "y_train"),
                                                      (x_test, "x_test"), (y_test, "y_test")))
    mnist.check_layout(mnist.Mnist(x_train, y_train, x_test, y_test), name)
    fingerprint = _fingerprint(x_train, y_train, x_test, y_test)
    if max_train_examples > 0:
        x_train, y_train = x_train[:max_train_examples], y_train[:max_train_examples]
    if max_test_examples > 0:
        x_test, y_test = x_test[:max_test_examples], y_test[:max_test_examples]
    largest = int(max(y_train.max(), y_test.max()))  # check_layout bounded it
    if num_classes is not None and largest >= num_classes:
        raise DataError(f"{name}: class id {largest} found, but num_classes is {num_classes}")
    num_classes = num_classes or largest + 1
    class_names = _class_names(class_names, num_classes, name)
    example_shape = tuple(int(d) for d in x_train.shape[1:])
    y_train, y_test = y_train.astype(np.int32), y_test.astype(np.int32)
    pixels = None
    if x_train.dtype == np.uint8:
        pixels = x_train.reshape(len(x_train), -1)
        x_train = preprocess.flatten_and_scale(x_train)
        x_test = preprocess.flatten_and_scale(x_test)
        mean = preprocess.mean_image(x_train)  # of the whole training split, as the tutorial
        x_train -= mean
        x_test -= mean
    else:
        x_train = np.asarray(x_train, np.float32).reshape(len(x_train), -1)
        x_test = np.asarray(x_test, np.float32).reshape(len(x_test), -1)
    s = _split(x_train, y_train, x_test, y_test, validation_split=validation_split,
               num_classes=num_classes, source=source or name)
    if len(s.y_train):  # (an empty training split is the caller's to name)
        cut = ", ".join(([f"its first {max_train_examples} training examples"]
                         if max_train_examples > 0 else [])
                        + ([f"{validation_split:g} of each class held out"]
                           if validation_split else []))
        mnist.check_classes(s.y_train, s.y_test, name + (f" ({cut})" if cut else ""),
                            num_classes)
    s = dataclasses.replace(s, example_shape=example_shape, name=name, fingerprint=fingerprint,
                            class_names=class_names,
                            validation_split=validation_split,
                            max_train_examples=max_train_examples,
                            max_test_examples=max_test_examples, remake=remake)
    if pixels is None:
        return s
    train, _ = holdout(y_train, validation_split)
    return dataclasses.replace(s, train_pixels=pixels[train], pixel_mean=mean)


# The classes' names of two data sets people bring (MNIST's are its digits).
MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


def _class_names(names, num_classes: int, data: str) -> tuple[str, ...] | None:
    """`names` as a tuple of one distinct, non-empty string per class (None: None)."""
    if names is None:
        return None
    if isinstance(names, str) or not all(isinstance(n, str) and n.strip() for n in names):
        raise DataError(f"{data}: class_names must be a list of non-empty strings, one per "
                        f"class; got {names!r:.80}")
    names = tuple(n.strip() for n in names)
    if len(names) != num_classes:
        raise DataError(f"{data}: class_names has {len(names)} names for {num_classes} classes")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"{data}: class_names names {', '.join(map(repr, twice))} twice")
    return names


# How many examples `from_datasets` reads of a data set whose size TensorFlow cannot tell
# (a filter, a generator) before it refuses it as possibly endless.
MAX_UNKNOWN_EXAMPLES = 200_000


def from_datasets(train, test, *, validation_split: float = 0.1, num_classes: int | None = None,
                  name: str = "tf.data", max_examples: int = MAX_UNKNOWN_EXAMPLES,
                  **kwargs) -> Splits:
    """Finite `tf.data.Dataset`s of `(x, y)` as `Splits`, read once into host arrays.

    Elements may be single examples (`y` a scalar) or batches (`y` a vector) of integer
    class ids. Reading the data once lets the class-sorted orders index it by class,
    and makes every order reproducible from (seed, epoch); it costs the data set's size
    in host memory, as numpy input does. A data set of unknown size (`filter`, a
    generator) is read up to `max_examples` examples and refused past that: bound it
    with `take(n)`. Other arguments as in `from_arrays`.

    Raises:
      DataError: an infinite data set, one of unknown size past `max_examples`, or
        elements that are not `(x, y)` with integer class ids.
    """
    arrays = []
    for split, dataset in (("train", train), ("test", test)):
        arrays.extend(_read_dataset(dataset, f"{name}: the {split} data set", max_examples))
    return from_arrays(*arrays, validation_split=validation_split, num_classes=num_classes,
                       name=name, **kwargs)


def _read_dataset(dataset, what: str, max_examples: int) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf  # Only here: numpy data must not pay for importing TF.

    cardinality = dataset.cardinality()
    if cardinality == tf.data.INFINITE_CARDINALITY:
        raise DataError(f"{what} is infinite (a repeat() without a count?): tapeloop needs "
                        "one pass over the data, and repeats it for every epoch itself")
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise DataError(f"{what} must yield (x, y) pairs, not {spec}")
    x_spec, y_spec = spec
    if not isinstance(y_spec, tf.TensorSpec) or not isinstance(x_spec, tf.TensorSpec):
        raise DataError(f"{what} must yield dense tensors (x, y), not ({type(x_spec).__name__}, "
                        f"{type(y_spec).__name__}): convert ragged or sparse tensors first")
    if not y_spec.dtype.is_integer or y_spec.shape.rank not in (0, 1, None):
        raise DataError(f"{what}: labels are {y_spec.dtype.name} of shape {y_spec.shape}; "
                        "tapeloop needs integer class ids, one per example (for one-hot "
                        "labels, map y to tf.argmax(y, -1))")
    bounded = cardinality != tf.data.UNKNOWN_CARDINALITY
    xs, ys, count = [], [], 0
    for x, y in dataset.as_numpy_iterator():
        batched = np.ndim(y) == 1
        xs.append(x if batched else x[None])
        ys.append(y if batched else np.reshape(y, (1,)))
        if batched and len(x) != len(y):
            raise DataError(f"{what}: a batch of {len(x)} inputs holds {len(y)} labels")
        count += len(ys[-1])
        if not bounded and count > max_examples:
            raise DataError(f"{what} has no known size and yields more than {max_examples:,} "
                            "examples (endless?): bound it with .take(N), or pass a larger "
                            "max_examples")
    if not ys:
        raise DataError(f"{what} is empty")
    shapes = {a.shape[1:] for a in xs}
    if len(shapes) > 1:
        raise DataError(f"{what}: examples of different shapes {sorted(shapes)[:2]}: tapeloop "
                        "needs one shape (pad or resize them)")
    return np.concatenate(xs), np.concatenate(ys)


def _array(a, what: str) -> np.ndarray:
    """`a` as a numpy array; a ragged list (rows of different lengths) is a DataError."""
    try:
        return np.asarray(a)
    except ValueError as e:
        raise DataError(f"{what} is not a rectangular array ({str(e).splitlines()[0]})") from None


def _fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(str((a.dtype.str, a.shape)).encode())
        digest.update(np.ascontiguousarray(a).data)
    return digest.hexdigest()[:16]


def noise_splits(*, num_examples: int, input_dim: int, num_classes: int,
                 validation_split: float, seed: int) -> Splits:
    """The noise data set; its test split is an independent draw of the same size."""
    x, y = noise.make_noise(num_examples, input_dim, num_classes, seed)
    x_test, y_test = noise.make_noise(num_examples, input_dim, num_classes, seed + 1)
    s = _split(x, y, x_test, y_test, validation_split=validation_split,
               num_classes=num_classes, source=f"noise (seed {seed})")
    return dataclasses.replace(s, name="noise", fingerprint=_fingerprint(x, y, x_test, y_test))


def _split(x, y, x_test, y_test, *, validation_split, num_classes, source) -> Splits:
    train, val = holdout(y, validation_split)
    return Splits(x_train=x[train], y_train=y[train], x_val=x[val], y_val=y[val],
                  x_test=x_test, y_test=y_test, num_classes=num_classes, source=source,
                  validation_split=validation_split)
