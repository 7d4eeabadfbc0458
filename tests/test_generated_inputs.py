"""Generated bad inputs (Hypothesis): every one is either taken whole or refused in one line.

Each property draws inputs from a valid data set bent in one or more ways (dtypes,
shapes, counts, label values, NaN and Inf, missing arrays, damaged headers, tf.data
element specs) and asserts that tapeloop's data path either returns `Splits` whose
invariants hold or raises `DataError` with a one-line message; never another exception.
The last test sends generated refusals through the training script and checks that
nothing was created. the fault table, docs/reliability.md quotes the number of inputs tried.
"""

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from tapeloop.data import mnist, splits
from tapeloop.data.mnist import DataError
from helpers import run_train_here

EXAMPLES = 300  # inputs per property (the tf.data one: a fifth of that)
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DTYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
          np.float16, np.float32, np.float64, np.bool_, np.complex64]
LABELS = [0, 1, 2, 3, 7, -1, 255, 256, 2**31 - 1, 2**31, 2**32 + 2, 2**40, 2**63 - 1]


BENDS = ("x_dtype", "y_dtype", "example_shape", "count", "empty", "no_values", "non_finite",
         "label", "label_shape", "sparse")


@st.composite
def bent_arrays(draw):
    """x_train, y_train, x_test, y_test: three classes of 4x4 examples, bent 0-3 ways."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    n = {"train": draw(st.integers(6, 40)), "test": draw(st.integers(3, 20))}
    arrays = {}
    for split in ("train", "test"):
        arrays[f"x_{split}"] = rng.integers(0, 256, (n[split], 4, 4)).astype(np.uint8)
        arrays[f"y_{split}"] = np.arange(n[split]) % 3
    for bend in draw(st.lists(st.sampled_from(BENDS), max_size=3, unique=True)):
        split = draw(st.sampled_from(["train", "test"]))
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if not x.size or not len(y):  # emptied by an earlier bend
            continue
        if bend == "x_dtype":
            x = x.astype(draw(st.sampled_from(DTYPES)))
        elif bend == "y_dtype":
            y = y.astype(draw(st.sampled_from(DTYPES)))
        elif bend == "example_shape":
            x = x.reshape(len(x), *draw(st.sampled_from([(16,), (2, 8), (2, 2, 4)])))
            if draw(st.booleans()):
                x = x[:, :1]
        elif bend == "count":
            y = y[:-1] if draw(st.booleans()) else np.append(y, 0)
        elif bend == "empty":
            x, y = x[:0], y[:0]
        elif bend == "no_values":
            x = x[:, :0]
        elif bend == "non_finite":
            x = x.astype(np.float32)
            x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from(
                [np.nan, np.inf, -np.inf]))
        elif bend == "label":
            y = y.astype(draw(st.sampled_from([np.int64, np.uint64])))
            with np.errstate(over="ignore"):
                try:
                    y[draw(st.integers(0, len(y) - 1))] = draw(st.sampled_from(LABELS))
                except (OverflowError, ValueError):  # the label does not fit its dtype
                    pass
        elif bend == "label_shape":
            y = y.reshape(-1, 1) if draw(st.booleans()) else y[:, None].repeat(2, 1)
        elif bend == "sparse":
            y = np.where(y == 2, draw(st.sampled_from([3, 10, 10**6])), y)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    return arrays


def _check_taken_or_refused(make):
    try:
        s = make()
    except DataError as e:
        assert "\n" not in str(e) and str(e), repr(e)
        event("refused: " + _reason(str(e)))  # pytest --hypothesis-show-statistics
        return None
    event("taken")
    # Taken: the invariants every pipeline relies on. (A training split left empty by the
    # validation split is refused by train_and_evaluate, naming both: test_train_script.)
    assert s.y_train.dtype == np.int32 and s.y_test.dtype == np.int32
    assert not len(s.y_train) or set(np.unique(s.y_train).tolist()) == set(
        range(s.num_classes))
    assert s.y_test.min() >= 0 and s.y_test.max() < s.num_classes
    assert np.isfinite(s.x_train).all() and np.isfinite(s.x_test).all()
    assert s.x_train.shape[1] == s.x_test.shape[1] == int(np.prod(s.shape)) > 0
    return s


def _reason(message: str) -> str:
    """The kind of a refusal, without the file name and numbers (for the statistics)."""
    words = message.split(": ", 1)[-1].split()
    return " ".join(w for w in words[:6] if not any(c.isdigit() for c in w))


@SETTINGS
@given(bent_arrays(), st.sampled_from([None] * 7 + ["x_train", "y_train", "x_test", "y_test"]))
def test_npz_files_are_taken_or_refused_in_one_line(tmp_path_factory, arrays, dropped):
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    if dropped:
        del arrays[dropped]
    np.savez(path, **arrays)
    _check_taken_or_refused(lambda: splits.from_arrays(*mnist.load_user_copy(path),
                                                       validation_split=0.2))


@SETTINGS
@given(bent_arrays())
def test_arrays_are_taken_or_refused_in_one_line(arrays):
    _check_taken_or_refused(lambda: splits.from_arrays(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
        validation_split=0.2))


@st.composite
def idx_file(draw):
    ndim = draw(st.sampled_from([0, 1, 2, 3, 4, 17, 64, 255]))
    dims = draw(st.lists(st.sampled_from([0, 1, 2, 3, 4, 65536, 2**32 - 1]), min_size=ndim,
                         max_size=ndim))
    type_byte = draw(st.sampled_from([0x08, 0x08, 0x09, 0x0D]))
    header = struct.pack(">I", type_byte << 8 | ndim) + struct.pack(f">{ndim}I", *dims)
    size = int(np.prod(dims, dtype=object)) if dims else 0
    body = bytes(max(0, size + draw(st.sampled_from([0, 0, 1, -1]))) if size < 4096
                 else draw(st.integers(0, 64)))
    cut = draw(st.sampled_from([None, None, 0, 2, 5]))
    raw = header + body
    return raw if cut is None else raw[:cut], ndim, tuple(dims)


@SETTINGS
@given(idx_file())
def test_idx_files_are_read_or_refused_in_one_line(tmp_path_factory, file):
    raw, ndim, dims = file
    path = tmp_path_factory.mktemp("idx") / "train-images-idx3-ubyte"
    path.write_bytes(raw)
    try:
        array = mnist.read_idx(path)
    except DataError as e:
        assert "\n" not in str(e) and str(e)
        event("refused: " + _reason(str(e)))
        return
    event("read")
    assert array.shape == dims and array.dtype == np.uint8


@settings(max_examples=EXAMPLES // 5, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["int", "float", "one_hot", "ragged", "dict", "single", "string",
                        "shapes", "mismatch"]),
       st.booleans(), st.integers(1, 5))
def test_tf_data_is_taken_or_refused_in_one_line(kind, batched, batch):
    import tensorflow as tf

    n = 12
    x = tf.random.stateless_uniform([n, 4], seed=[1, 2])
    y = tf.constant(np.arange(n) % 3, tf.int32)
    if kind == "int":
        ds = tf.data.Dataset.from_tensor_slices((x, y))
    elif kind == "float":
        ds = tf.data.Dataset.from_tensor_slices((x, tf.cast(y, tf.float32)))
    elif kind == "one_hot":
        ds = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, 3)))
    elif kind == "ragged":
        ds = tf.data.Dataset.from_tensor_slices((tf.RaggedTensor.from_row_lengths(
            tf.range(2 * n, dtype=tf.float32), [2] * n), y))
    elif kind == "dict":
        ds = tf.data.Dataset.from_tensor_slices({"x": x, "y": y})
    elif kind == "single":
        ds = tf.data.Dataset.from_tensor_slices(x)
    elif kind == "string":
        ds = tf.data.Dataset.from_tensor_slices((x, tf.strings.as_string(y)))
    elif kind == "shapes":
        ds = tf.data.Dataset.from_generator(
            lambda: ((np.zeros(1 + i % 2, np.float32), i % 3) for i in range(n)),
            output_signature=(tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32)))
    else:  # a batch whose labels do not match its examples
        ds = tf.data.Dataset.from_tensors((x, y[:5]))
    if batched and kind not in ("mismatch", "shapes"):
        ds = ds.batch(batch)
    _check_taken_or_refused(lambda: splits.from_datasets(ds, ds, validation_split=0.0))


@pytest.mark.parametrize("seed", range(4))
def test_generated_refusals_through_the_script_create_nothing(tmp_path, seed):
    """A refused file ends in one line, exit 1, and leaves no trace in --logdir."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (30, 4, 4), dtype=np.uint8)
    y = np.arange(30) % 3
    bent = [dict(y_train=np.where(y == 2, 2**40, y)),
            dict(x_train=x.astype(np.float32) * np.where(rng.random((30, 4, 4)) < 0.01,
                                                         np.nan, 1.0)),
            dict(y_test=y[:-1]), dict(x_test=x[:, :3])][seed]
    arrays = dict(x_train=x, y_train=y, x_test=x, y_test=y) | bent
    np.savez(tmp_path / "bad.npz", **arrays)
    logdir = tmp_path / "logs"
    proc = run_train_here(f"--data_dir={tmp_path / 'bad.npz'}", f"--logdir={logdir}",
                          "--run_name=r", "--probe_per_class=5", "--epochs=1")
    errors = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 1 and len(errors) == 1 and errors[0].startswith("error: ")
    assert not logdir.exists()
