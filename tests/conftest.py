"""Shared fixtures and the test tiers; the shared helpers are in helpers.py."""

import pytest

from helpers import SMALL_SORTED, fake_mnist  # noqa: F401
from tapeloop.data import mnist


@pytest.fixture(scope="session")
def real_mnist() -> mnist.Mnist:
    """The real MNIST from tapeloop's cache (`make data` fills it); skipped if absent."""
    cached = mnist.default_cache_dir() / mnist.CACHE_FILE
    if not cached.is_file() and mnist.hub_file() is None:
        pytest.skip("real MNIST not prepared: run `make data`")
    m, _ = mnist.load_mnist(download=False)
    return m


@pytest.fixture(scope="session")
def small_sorted_run(tmp_path_factory):
    """A finished 2-epoch class-sorted run on 200 fake MNIST images: 60 steps, probe every 3.

    Returns (run_dir, results, config).
    """
    from tapeloop.data import splits
    from tapeloop.trainers.run import controller
    from tapeloop.trainers.records.config import Config

    config = Config(**SMALL_SORTED)
    data = splits.mnist_splits(fake_mnist(n_train=200, n_test=60), validation_split=0.1)
    run_dir = tmp_path_factory.mktemp("runs") / "small_sorted"
    results = controller.train_and_evaluate(config, run_dir, data=data, verbose=False)
    return run_dir, results, config


TIERS = {
    "unit": ("test_config", "test_docs", "test_drift", "test_layout", "test_forgetting",
             "test_mnist", "test_model", "test_pipelines", "test_preprocess", "test_probe",
             "test_splits", "test_standard_actions", "test_step_dumps", "test_writers"),
    "end_to_end": ("test_dashboard", "test_dashboard_scale", "test_tensorboard_server",
                   "test_examples", "test_packaging", "test_faults", "test_reliability"),
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.path.stem
        tier = next((t for t, files in TIERS.items() if module in files), "integration")
        if item.get_closest_marker("slow") is not None:
            tier = "end_to_end"
        item.add_marker(getattr(pytest.mark, tier))
