"""End to end: a real TensorBoard server serves a finished run's per-class probe curves."""

import subprocess
import sys
import time
import urllib.parse

import pytest

from helpers import free_port, get_json, read_events


def test_tensorboard_serves_the_probe_curves(small_sorted_run):
    run_dir, _, _ = small_sorted_run
    port = free_port()
    base = f"http://127.0.0.1:{port}/data/plugin"
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run_dir.parent),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        tags, deadline = {}, time.monotonic() + 90
        while run_dir.name not in tags or "probe/accuracy/class_9" not in tags[run_dir.name]:
            if server.poll() is not None:
                pytest.fail(f"tensorboard exited: {server.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("tensorboard did not serve the run within 90 s")
            time.sleep(0.5)
            try:
                tags = get_json(f"{base}/scalars/tags")
            except OSError:
                continue
        served = set(tags[run_dir.name])
        assert {f"probe/accuracy/class_{c}" for c in range(10)} <= served
        assert {"weights/drift/from_phase_start/model", "forgetting/bwt", "train/loss"} <= served
        expected = read_events(run_dir)
        for c in (0, 9):
            tag = f"probe/accuracy/class_{c}"
            query = urllib.parse.urlencode({"run": run_dir.name, "tag": tag})
            points = get_json(f"{base}/scalars/scalars?{query}")  # [wall_time, step, value]
            assert {step: value for _, step, value in points} == pytest.approx(expected[tag])
        layout = get_json(f"{base}/custom_scalars/layout")
        titles = [c["title"] for cat in layout["category"] for c in cat["chart"]]
        assert "probe accuracy, every class" in titles
    finally:
        server.terminate()
        server.wait(timeout=30)
