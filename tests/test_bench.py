"""The benchmark's arithmetic and a tiny real invocation (speed itself is never asserted)."""

import json
import subprocess
import sys

import pytest

from helpers import REPO
from tapeloop.trainers import bench, bench_whole, peers


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
         "--train_examples=650", "--variants=keras_fit,tapeloop,tapeloop_full,tapeloop_xla",
         f"--json={out}"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [r["variant"] for r in result["runs"]] == ["keras_fit", "tapeloop", "tapeloop_full",
                                                      "tapeloop_xla"]
    for r in result["runs"]:  # 650 images: six full batches of 100 and one of 50
        assert len(r["epoch_seconds"]) == 2 and r["samples"] == 650 and r["peak_rss_mb"] > 0
    assert set(result["summary"]["ratios"]) == {"c/a", "d/c", "e/c", "c/floor", "d/a"}
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
    tables = proc.stdout.split("\n\n")
    assert len(tables) == 2, proc.stdout
    lines = tables[0].splitlines()
    assert lines[0].startswith("one steady epoch of (c), profiled:")
    op_types = [line.split()[0] for line in lines[2:]]
    assert any("MatMul" in t for t in op_types) and "ResourceApplyAdam" in op_types
    # The default run's second epoch (2,000 images, 1,800 trained on: 18 steps an epoch).
    lines = tables[1].splitlines()
    assert lines[0].startswith("the default run's second epoch (steps 18-36), profiled")
    op_types = [line.split()[0] for line in lines[2:]]
    assert "ResourceApplyAdam" in op_types and len(op_types) == 12


def test_whole_process_rows_per_epoch_startup_and_ratios_per_round():
    runs = []
    for r, (fit2, fit8, tape2, tape8) in enumerate(((20.0, 32.0, 10.0, 16.0),
                                                     (22.0, 40.0, 12.0, 24.0))):
        runs += [{"variant": "keras_fit", "epochs": 2, "wall": fit2, "cpu": 2 * fit2,
                  "first_logged_step": None, "round": r},
                 {"variant": "keras_fit", "epochs": 8, "wall": fit8, "cpu": 2 * fit8,
                  "first_logged_step": None, "round": r},
                 {"variant": "default", "epochs": 2, "wall": tape2, "cpu": tape2,
                  "first_logged_step": 3.0 + r, "round": r},
                 {"variant": "default", "epochs": 8, "wall": tape8, "cpu": tape8,
                  "first_logged_step": None, "round": r}]
    rounds = bench_whole.per_round(runs, 2, 8)
    fit, tape = rounds["keras_fit"], rounds["default"]
    assert [x["wall_per_epoch"] for x in fit] == [2.0, 3.0]  # (32-20)/6, (40-22)/6
    assert [x["startup"] for x in tape] == [8.0, 8.0]  # 10 - 2*1, 12 - 2*2
    assert [x["first_logged_step"] for x in tape] == [3.0, 4.0]  # from the short process
    s = bench_whole.summarize(rounds)
    assert s["variants"]["keras_fit"]["wall"] == {"median": 36.0, "min": 32.0, "max": 40.0}
    assert s["variants"]["keras_fit"]["first_logged_step"] is None
    # Ratios are taken round by round: 1/2 and 2/3 in CPU per epoch (fit's CPU is 2x wall).
    cpu = s["ratios"]["default / keras_fit, CPU per epoch"]
    assert (cpu["min"], cpu["max"]) == pytest.approx((1 / 4, 1 / 3))
    assert "logging_off / jax_scan, wall per epoch" not in s["ratios"]
    report = bench_whole.format_report(s, rounds=2, short=2, long=8)
    assert "| default | 20.00 (16.00-24.00) |" in report and "(2 rounds;" in report


def test_whole_process_commands_are_the_users_own():
    default = bench_whole.command("default", 3, "/tmp/x")
    assert default[1:3] == ["-m", "tapeloop.trainers.train"]
    assert default[3].endswith("mnist_shuffled.flags") and "--epochs=3" in default
    assert set(bench_whole.LOGGING_OFF) <= set(bench_whole.command("logging_off", 3, "/tmp/x"))
    assert bench_whole.command("keras_fit", 3, "/tmp/x")[-2:] == ["keras_fit", "--epochs=3"]
    assert bench_whole.command("default_xla", 3, "/tmp/x") == default + bench_whole.JIT
    assert "--jit_compile" not in default


@pytest.mark.slow
def test_tiny_whole_process_bench(tmp_path, real_mnist):
    out = tmp_path / "whole.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tapeloop.trainers.bench_whole", "--rounds=1",
         "--short_epochs=1", "--long_epochs=2", "--variants=default,keras_fit,jax_scan",
         f"--json={out}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    timed = {r["variant"] for r in result["runs"]}
    assert {"default", "keras_fit"} <= timed
    assert ("jax_scan" in timed) == peers.has_jax()
    if not peers.has_jax():
        assert "jax_scan: skipped, JAX is not installed" in proc.stdout
    for r in result["runs"]:
        assert r["wall"] > 0 and r["cpu"] > 0
    first = result["summary"]["variants"]["default"]["first_logged_step"]
    assert 0 < first["median"] < result["summary"]["variants"]["default"]["wall"]["max"]
    assert "default / keras_fit, CPU per epoch" in result["summary"]["ratios"]
