"""The benchmark's arithmetic and a tiny real invocation (speed itself is never asserted)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tapeloop.trainers import bench


def test_training_flops_of_the_tutorial_mlp():
    # (784*150 + 150*100 + 100*10) multiply-adds = 133,600; x2 FLOPs; x3 forward+backward.
    assert bench.training_flops_per_example(784, (150, 100), 10) == 801_600


def test_summary_medians_ratios_and_memory():
    runs = [{"variant": "keras_fit", "epoch_seconds": [9.0, 2.0, 2.2], "samples": 100,
             "peak_rss_mb": 500.0},
            {"variant": "tapeloop", "epoch_seconds": [9.0, 0.5, 0.7], "samples": 100,
             "peak_rss_mb": 400.0},
            {"variant": "tapeloop", "epoch_seconds": [9.0, 0.6, 0.9], "samples": 100,
             "peak_rss_mb": 450.0}]
    s = bench.summarize(runs, flops_per_epoch=1e9, flop_rate=1e10)
    tape = s["variants"]["tapeloop"]
    assert tape["median"] == pytest.approx(0.65)  # warm-up epochs (9.0) are dropped
    assert (tape["min"], tape["max"], tape["epochs"]) == (0.5, 0.9, 4)
    assert tape["peak_rss_mb"] == 450.0
    assert tape["samples_per_second"] == pytest.approx(100 / 0.65)
    assert s["floor_seconds"] == pytest.approx(0.1)
    assert s["ratios"]["c/a"] == pytest.approx(0.65 / 2.1)
    assert s["ratios"]["c/floor"] == pytest.approx(6.5)
    assert "c/b" not in s["ratios"]


@pytest.mark.slow
def test_tiny_bench_run_reports_every_variant(tmp_path, real_mnist):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tapeloop.trainers.bench", "--rounds=1", "--epochs=2",
         "--train_examples=600", "--variants=keras_fit,tapeloop,tapeloop_full",
         f"--json={out}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [r["variant"] for r in result["runs"]] == ["keras_fit", "tapeloop", "tapeloop_full"]
    for r in result["runs"]:
        assert len(r["epoch_seconds"]) == 2 and r["samples"] == 600 and r["peak_rss_mb"] > 0
    assert set(result["summary"]["ratios"]) == {"c/a", "d/c", "c/floor", "d/a"}
    assert "ratios: c/a = " in proc.stdout and "FLOP floor" in proc.stdout


@pytest.mark.slow
def test_tiny_cnn_bench_times_the_same_cnn_in_keras_and_tapeloop(tmp_path, real_mnist):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tapeloop.trainers.bench", "--rounds=1", "--epochs=2",
         "--train_examples=600", "--model=cnn", "--variants=keras_fit,tapeloop_full",
         f"--json={out}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["summary"]["ratios"]) == {"d/a"}
    d_over_a = result["summary"]["ratios"]["d/a"]
    medians = {k: v["median"] for k, v in result["summary"]["variants"].items()}
    assert d_over_a == pytest.approx(medians["tapeloop_full"] / medians["keras_fit"])
    assert "FLOP floor" not in proc.stdout and "d/a = " in proc.stdout


@pytest.mark.slow
def test_profile_names_where_the_op_time_goes(real_mnist):
    proc = subprocess.run([sys.executable, "-m", "tapeloop.trainers.bench", "--profile",
                           "--train_examples=2000"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("one steady epoch of (c), profiled:")
    op_types = [line.split()[0] for line in lines[2:]]
    assert any("MatMul" in t for t in op_types) and "ResourceApplyAdam" in op_types
