"""Step-level debugging flags, each exercised end to end on small data."""

import numpy as np

from tests.conftest import run_train

NOISE = ["--dataset=noise", "--noise_examples=300", "--hidden_sizes=16", "--dropout=0.2",
         "--batch_size=30", "--probe_per_class=20", "--eval_every_steps=3"]


def _train(tmp_path, name, *extra):
    return run_train(*NOISE, f"--logdir={tmp_path}", f"--run_name={name}", *extra)


def _weights(tmp_path, name):
    return np.load(tmp_path / name / "weights" / "final.npz")


def test_run_eagerly_gives_the_compiled_weights(tmp_path):
    for name, extra in (("compiled", []), ("eager", ["--run_eagerly"])):
        proc = _train(tmp_path, name, "--epochs=2", "--deterministic", *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = _weights(tmp_path, "compiled"), _weights(tmp_path, "eager")
    for key in a.files:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-7)


def test_stop_after_steps_checkpoints_and_the_rerun_continues_exactly(tmp_path):
    straight = _train(tmp_path, "straight", "--epochs=3", "--deterministic")
    assert straight.returncode == 0, straight.stderr[-2000:]
    stopped = _train(tmp_path, "stopped", "--epochs=3", "--deterministic",
                     "--stop_after_steps=13")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert "stopped after step 13 as asked (checkpoint saved)" in stopped.stdout
    assert not (tmp_path / "stopped" / "results.json").exists()
    resumed = _train(tmp_path, "stopped", "--epochs=3", "--deterministic")
    assert resumed.returncode == 0 and "from its checkpoint at step 13" in resumed.stdout
    a, b = _weights(tmp_path, "straight"), _weights(tmp_path, "stopped")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])


def test_check_numerics_names_the_op_that_made_the_nan(tmp_path):
    proc = _train(tmp_path, "nan", "--epochs=1", "--check_numerics", "--learning_rate=1e30")
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error: check_numerics:")]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-2000:]
    assert "Infinity or NaN" in errors[0] or "Detected at node" in errors[0]
    assert any(op in errors[0] for op in ("MatMul", "Relu", "BiasAdd", "dense", "logits"))


def test_profile_steps_write_a_profiler_trace(tmp_path):
    proc = _train(tmp_path, "prof", "--epochs=2", "--profile_steps=3,9")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "profiler trace of steps 3-9 written to" in proc.stdout
    assert list((tmp_path / "prof" / "plugins" / "profile").glob("*/*.xplane.pb"))
    bad = _train(tmp_path, "bad", "--profile_steps=9,3")
    assert bad.returncode != 0 and "--profile_steps must be two steps A,B" in bad.stderr
