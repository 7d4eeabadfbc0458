"""Step dumps: what `save` returns is what `load` reads back."""

import numpy as np

from tapeloop.trainers.instruments import step_dumps


def test_save_returns_the_dump_that_load_reads_back(tmp_path):
    rng = np.random.default_rng(0)
    out = {"phase": 3, "image": rng.random((4, 5), np.float32),
           "label": np.array([0, 1, 2, 1], np.int32), "logits": rng.random((4, 3), np.float32),
           "example_loss": rng.random(4, np.float32), "grad_norms": rng.random(2, np.float32),
           "update": [rng.random((5, 3), np.float32), rng.random(3, np.float32)]}
    path = step_dumps.dump_path(tmp_path, 7)
    saved = step_dumps.save(path, 7, out, ["w", "b"])
    loaded = step_dumps.load(path)
    assert saved.keys() == loaded.keys() and saved["variable_names"] == ["w", "b"]
    assert int(loaded["step"]) == 7 and int(loaded["phase"]) == 3
    for key in ("image", "label", "logits", "example_loss", "grad_norms"):
        np.testing.assert_array_equal(saved[key], loaded[key])
        np.testing.assert_array_equal(loaded[key], out[key])
    for name, update in zip(["w", "b"], out["update"]):
        np.testing.assert_array_equal(loaded["update"][name], update)
    assert step_dumps.summary_line(saved) == step_dumps.summary_line(loaded)
