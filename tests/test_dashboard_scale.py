"""The Forgetting tab at scale (slow tier): a benchmark, not a timed assertion.

Real runs on noise data, as large as people make them: 50 runs; one run of 200
classes; one run of 10,000 phases (the blocked order, a class per batch). For each
logdir (and `logs/demo` when `TAPELOOP_DASHBOARD_LOGDIR` names it), a real TensorBoard
serves it and headless Chromium opens the tab at 1280x800. The test prints the `/data`
time per run (from Python, against the running TensorBoard) and the time from
navigation until every run is drawn, three page loads, with the page's size in DOM
nodes and pixels; `TAPELOOP_TAB_BENCH=FILE` appends them to FILE as table rows (`make bench-tab`).

Times are printed, never asserted: the machines swing. What is asserted is what makes
the tab usable at that size: every run drawn, the page a bounded number of nodes
(phases too narrow to draw one by one are pooled), no wider than the window, and with
many runs each run's charts folded, one click away.
"""

import datetime
import os
import statistics
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from tapeloop.trainers.run import controller
from tapeloop.trainers.records.config import Config
from helpers import get_json
from test_dashboard import _browser, all_drawn, serve

pytestmark = pytest.mark.slow

BASE = dict(dataset="noise", hidden_sizes=(32,), batch_size=10, probe_per_class=10,
            learning_rate=0.01, checkpoint_every_steps=0, validation_split=0.0)
# name: [(run name, its Config)]
CASES = {
    "50 runs": [(f"run{i:02d}", Config(**BASE, noise_examples=200, noise_classes=4, epochs=2,
                                       eval_every_steps=2, seed=i,
                                       order="sorted" if i % 2 else "shuffled"))
                for i in range(50)],
    "200 classes": [("sorted200", Config(**BASE, noise_examples=4000, noise_classes=200,
                                         epochs=2, eval_every_steps=5, order="sorted"))],
    "10,000 phases": [("blocked10k", Config(**BASE, noise_examples=10000, noise_classes=10,
                                            epochs=10, eval_every_steps=10, order="blocked",
                                            block_steps=1))],
}
MAX_NODES = 30_000  # the page's DOM nodes, whatever the logdir
LOADS = 3


def _logdirs(tmp_path_factory):
    """The logdirs to measure: each case's runs, made here (or kept in
    `TAPELOOP_TAB_BENCH_RUNS`, made there once), and `TAPELOOP_DASHBOARD_LOGDIR`."""
    kept = os.environ.get("TAPELOOP_TAB_BENCH_RUNS")
    root = Path(kept) if kept else tmp_path_factory.mktemp("scale")
    dirs = {}
    demo = os.environ.get("TAPELOOP_DASHBOARD_LOGDIR")
    if demo:
        dirs[f"`{demo}`"] = Path(demo)
    for case, runs in CASES.items():
        logdir = root / case.replace(",", "").replace(" ", "_")
        for name, config in runs:
            if not (logdir / name / "config.json").exists():
                controller.train_and_evaluate(config, logdir / name, verbose=False)
        dirs[case] = logdir
    return dirs


def _drawn(browser, runs: int) -> bool:
    return all_drawn(browser) and browser.execute_script(
        "return document.querySelectorAll('.card.run').length === arguments[0]", runs)


def test_the_tab_stays_usable_at_scale(tmp_path_factory):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    logdirs = _logdirs(tmp_path_factory)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip() or "?"
    rows, problems = [], []
    for case, logdir in logdirs.items():
        names = sorted(p.parent.name for p in logdir.glob("*/config.json"))
        with serve(logdir, runs=len(names), wait_s=300) as base:
            fetch = []
            for name in (names if len(names) > 1 else names * LOADS):
                url = f"{base}/data/plugin/forgetting/data?" + urllib.parse.urlencode({"run": name})
                start = time.perf_counter()
                view = get_json(url, timeout=120)
                fetch.append(time.perf_counter() - start)
                assert view["classes"], name
            browser = _browser()
            browser.set_window_size(1280, 800)
            loads = []
            try:
                for _ in range(LOADS):
                    browser.get("about:blank")  # each load a whole new page
                    start = time.perf_counter()
                    browser.get(f"{base}/?forceSVG=true#forgetting")
                    wait = WebDriverWait(browser, 300, poll_frequency=0.05)
                    frame = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "iframe"))[0]
                    browser.switch_to.frame(frame)
                    wait.until(lambda b: _drawn(b, len(names)))
                    loads.append(time.perf_counter() - start)
                    nodes, width, height, inner = browser.execute_script(
                        "return [document.getElementsByTagName('*').length, "
                        "document.documentElement.scrollWidth, "
                        "document.documentElement.scrollHeight, window.innerWidth]")
                    browser.switch_to.default_content()
                if len(names) > 8:  # each run's charts folded, one click away
                    browser.switch_to.frame(frame)
                    assert not browser.find_elements(By.CSS_SELECTOR, ".card.run svg.probe")
                    browser.find_element(By.CSS_SELECTOR, ".card.run a.fold").click()
                    wait.until(lambda b: len(b.find_elements(
                        By.CSS_SELECTOR, ".card.run svg.probe")) == 1)
            finally:
                browser.quit()
        print(f"{case}: {len(names)} runs, /data median {statistics.median(fetch):.3f} s "
              f"(max {max(fetch):.3f}); drawn after {', '.join(f'{t:.2f}' for t in loads)} s; "
              f"{nodes} DOM nodes, page {width}x{height} px in a {inner}-px frame")
        rows.append(f"| {datetime.date.today()} | {case} | {commit} | "
                    f"{statistics.median(fetch):.3f} s ({max(fetch):.3f}) | "
                    f"{', '.join(f'{t:.2f}' for t in loads)} s | {nodes:,} | {height:,} px |")
        if nodes > MAX_NODES:
            problems.append(f"{case}: {nodes} DOM nodes")
        if width > inner:
            problems.append(f"{case}: the page is {width} px wide in a {inner}-px frame")
    out = os.environ.get("TAPELOOP_TAB_BENCH")
    if out:
        with open(out, "a") as f:
            f.write("\n".join(rows) + "\n")
    assert not problems
