"""The Forgetting tab: its data view (unit), its routes on a real TensorBoard (logging),
and what a person sees in headless Chromium (end to end).

The browser tier needs Chromium and its driver (Debian: `apt-get install chromium
chromium-driver`; `.ci/run` installs them) and selenium (the test extra); without
them it is skipped, saying why. `make screenshots` runs it on `logs/demo` and keeps
the pictures README and docs/ show (`TAPELOOP_DASHBOARD_LOGDIR`, `TAPELOOP_SCREENSHOTS`).
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tapeloop.dashboard import plugin
from tapeloop.trainers.run import controller
from tapeloop.trainers.records.config import Config
from helpers import free_port, get_json, read_events


def test_the_view_has_phases_matrix_rows_and_the_final_table():
    series = {
        "probe/accuracy/class_0": [(0, 0.1), (2, 0.9), (3, 0.8), (4, 0.2)],
        "probe/accuracy/class_1": [(0, 0.2), (2, 0.1), (3, 0.1), (4, 0.9)],
        "train/phase": [(0, 0), (1, 0), (2, 1), (3, 1)],
        "forgetting/row/class_0": [(2, 0.9), (4, 0.2)],
        "forgetting/row/class_1": [(2, 0.1), (4, 0.9)],
        "forgetting/average": [(2, float("nan")), (4, 0.7)],
        "forgetting/bwt": [(4, -0.7)],
        "test/accuracy/class_0": [(4, 0.25)], "test/accuracy/class_1": [(4, 0.95)],
        "result/test_accuracy": [(4, 0.6)], "train/epoch_loss": [(4, 1.0)],
    }
    view = plugin.run_view(series)
    assert view["classes"] == [0, 1] and view["probe"][1][-1] == [4, 0.9]
    assert view["phases"] == [[0, 2, 0], [2, 4, 1]] and view["by_class"]
    assert view["matrix"] == {"steps": [2, 4], "labels": [0, 1],
                              "rows": [[0.9, 0.1], [0.2, 0.9]]}
    assert view["final"] == {"test_accuracy": 0.6, "class_accuracy": [0.25, 0.95],
                             "average_forgetting": 0.7, "bwt": -0.7}
    assert plugin._finite(view)["forgetting"]["average"][0] == [2, None]  # JSON has no NaN


def test_columns_carry_the_names_the_data_gives_its_classes():
    series = {f"probe/accuracy/class_{c}": [(0, 0.5)] for c in range(3)}
    assert plugin.run_view(series)["labels"] == ["class 0", "class 1", "class 2"]
    named = plugin.run_view(series, None, ["T-shirt/top", "Trouser", "Pullover"])
    assert named["labels"] == ["0 T-shirt/top", "1 Trouser", "2 Pullover"]
    assert plugin.run_view(series, None, ["0", "1", "2"])["labels"][0] == "class 0"  # digits
    tasks = {f"probe/accuracy/task_{t}": [(0, 0.5)] for t in range(2)}
    table = {"tasks": [{"classes": [0, 1]}, {"classes": [2, 3]}]}
    assert plugin.run_view(tasks, table, ["a", "b", "c", "d"])["labels"] == [
        "task 0 (a,b)", "task 1 (c,d)"]
    assert plugin.run_view(tasks)["labels"] == ["task 0", "task 1"]


NOISE = dict(dataset="noise", noise_examples=400, noise_classes=4, hidden_sizes=(32,),
             batch_size=10, epochs=3, probe_per_class=10, eval_every_steps=3,
             learning_rate=0.01)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """Runs to look at: `TAPELOOP_DASHBOARD_LOGDIR`, or a sorted and a shuffled run made here."""
    given = os.environ.get("TAPELOOP_DASHBOARD_LOGDIR")
    if given:
        return Path(given)
    root = tmp_path_factory.mktemp("tb")
    for order in ("sorted", "shuffled"):
        controller.train_and_evaluate(Config(**NOISE, order=order), root / order, verbose=False)
    return root


@contextlib.contextmanager
def serve(logdir: Path, runs: int = 2, wait_s: float = 120):
    """A real TensorBoard on `logdir`, keeping every point, once it lists `runs` runs
    with a probe; yields its base URL."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host",
         "127.0.0.1", "--port", str(port), "--samples_per_plugin=scalars=1000000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    try:
        while True:
            if server.poll() is not None:
                pytest.fail(f"tensorboard exited: {server.stderr.read()[-2000:]}")
            try:
                if len(get_json(f"{base}/data/plugin/forgetting/runs")) >= runs:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (
                f"tensorboard did not serve {runs} runs in {wait_s:.0f} s")
            time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def tensorboard(logdir):
    """A real TensorBoard on `logdir`; yields its base URL."""
    with serve(logdir) as base:
        yield base


def test_tensorboard_lists_the_tab_and_serves_every_probe_point(tensorboard, logdir):
    plugins = get_json(f"{tensorboard}/data/plugins_listing")
    assert plugins["forgetting"]["enabled"] and plugins["forgetting"]["tab_name"] == "Forgetting"
    runs = {r["run"]: r for r in get_json(f"{tensorboard}/data/plugin/forgetting/runs")}
    for name, listed in runs.items():
        view = get_json(f"{tensorboard}/data/plugin/forgetting/data?"
                    + urllib.parse.urlencode({"run": name}))
        events = read_events(logdir / name)
        assert listed["classes"] == len(view["classes"])
        for c in view["classes"]:
            expected = events[f"probe/accuracy/class_{c}"]
            assert {s: v for s, v in view["probe"][str(c)]} == pytest.approx(expected)
        assert not view["thinned"]
        assert len(view["matrix"]["rows"]) == len(events["forgetting/row/class_0"])


def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("no Chromium and chromedriver here (Debian: apt-get install chromium "
                    "chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1800",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def _shots(tmp_path) -> Path:
    """Where screenshots go: `TAPELOOP_SCREENSHOTS`, or the test's temporary directory."""
    shots = Path(os.environ.get("TAPELOOP_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def _open_tab(browser, tensorboard):
    """Opens the Forgetting tab; returns a 60-second wait and the tab's iframe.

    The waits retry an element that the tab redrew while it was being read (stale).
    """
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{tensorboard}/?forceSVG=true#forgetting")
    wait = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))
    return wait, wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "iframe"))[0]


def all_drawn(browser) -> bool:
    """Inside the tab's frame: whether every run's view has arrived and been drawn (runs
    draw one by one as their views arrive; the tab counts those still to come in the
    body's `data-loading`)."""
    return browser.execute_script(
        "return document.body.dataset.loading === '0' && !!document.querySelector('table.final')")


def test_a_person_sees_forgetting_at_a_glance(tensorboard, logdir, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser, shots = _browser(), _shots(tmp_path)
    try:
        wait, frame = _open_tab(browser, tensorboard)
        browser.switch_to.frame(frame)
        wait.until(all_drawn)
        cards = browser.find_elements(By.CSS_SELECTOR, ".card.run")
        runs = get_json(f"{tensorboard}/data/plugin/forgetting/runs")
        assert [c.get_attribute("data-run") for c in cards] == [r["run"] for r in runs]
        for card, listed in zip(cards, runs):
            view = get_json(f"{tensorboard}/data/plugin/forgetting/data?"
                        + urllib.parse.urlencode({"run": listed["run"]}))
            curves = card.find_elements(By.CSS_SELECTOR, "svg.probe path.curve")
            # One line per class, each its own colour, every probe point drawn.
            assert len(curves) == len(view["classes"])
            assert len({c.get_attribute("stroke") for c in curves}) == len(curves)
            assert [int(c.get_attribute("data-points")) for c in curves] == [
                len(view["probe"][str(k)]) for k in view["classes"]]
            legend = card.find_elements(By.CSS_SELECTOR, ".legend.classes > span")
            assert [x.text for x in legend] == [f"class {k}" for k in view["classes"]]
            assert len(card.find_elements(By.CSS_SELECTOR, "rect.phase")) == len(view["phases"])
            strips = card.find_elements(By.CSS_SELECTOR, "svg.strip")
            if view["by_class"]:  # each class alone, its own blocks shaded
                assert [int(x.get_attribute("data-class")) for x in strips] == view["classes"]
                own = strips[0].find_elements(By.CSS_SELECTOR, "rect.own-block")
                assert len(own) == sum(1 for *_, label in view["phases"]
                                       if label == view["classes"][0])
            first_class = view["classes"][0]
            in_events = read_events(logdir / listed["run"])[f"probe/accuracy/class_{first_class}"]
            print(f"{listed['run']}: class {first_class}: {curves[0].get_attribute('data-points')}"
                  f" points drawn, {len(in_events)} in the event file")
            cells = card.find_elements(By.CSS_SELECTOR, "svg.heatmap rect.cell")
            rows = len(view["matrix"]["rows"])  # over 40 phases: a row per epoch
            shown = rows if rows <= 40 or len(view["epoch_ends"]) < 2 else len(view["epoch_ends"])
            assert len(cells) == shown * len(view["classes"])
            # Its axes: a column label per class, the axis titles, the first row's label.
            texts = [x.text for x in card.find_elements(By.CSS_SELECTOR, "svg.heatmap text")]
            assert [str(k) for k in view["classes"]] == texts[:len(view["classes"])]
            assert "class measured" in texts and {"phase (class)", "phase", "epoch"} & set(texts)
            assert any(x.startswith("0 (") or x == "epoch 1" for x in texts)  # phases from 0
        # The hover names the step, the phase, the class and its value.
        first = cards[0].find_element(By.CSS_SELECTOR, "svg.probe")
        ActionChains(browser).move_to_element_with_offset(first, 100, 0).perform()
        tip = wait.until(lambda b: b.find_element(By.ID, "tooltip").is_displayed()
                         and b.find_element(By.ID, "tooltip"))
        assert tip.text.startswith("step ") and "phase:" in tip.text
        # The hovered value is the event file's value at that step, for that class.
        step = int(re.match(r"step (\d+)", tip.text).group(1))
        main = browser.find_element(By.ID, "tooltip-main").text
        c, value = re.fullmatch(r"class (\d+): accuracy ([\d.]+)", main).groups()
        expected = read_events(logdir / runs[0]["run"])[f"probe/accuracy/class_{c}"][step]
        print(f"hover: {tip.text.splitlines()[0]}; {main}; event file {expected:.6f}")
        assert float(value) == pytest.approx(expected, abs=5e-5)
        browser.save_screenshot(str(shots / "dashboard_runs.png"))
        matrix = f".card.run[data-run='{runs[-1]['run']}'] .matrix"  # the last run: sorted
        browser.find_element(By.CSS_SELECTOR, matrix).screenshot(str(shots / "matrix_by_epoch.png"))
        strip = browser.find_elements(By.CSS_SELECTOR, "svg.strip")
        if strip:  # a class alone: its value at the nearest probe point
            ActionChains(browser).move_to_element(strip[0]).perform()
            assert len(browser.find_elements(By.CSS_SELECTOR, "#tooltip .hover-value")) == 1
        # On the epoch axis (the default: each run's own epochs), the last epoch is that
        # epoch of every run: each run's curves keep exactly its own last epoch's points.
        assert Select(browser.find_element(By.ID, "axis")).first_selected_option.get_attribute(
            "value") == "epoch"
        epochs = Select(browser.find_element(By.ID, "epoch"))
        epochs.select_by_index(len(epochs.options) - 1)
        wait.until(lambda b: b.find_element(By.ID, "to").get_attribute("value"))
        last = len(epochs.options) - 1
        assert [browser.find_element(By.ID, x).get_attribute("value") for x in ("from", "to")] == [
            str(last - 1), str(last)]
        for card, listed in zip(browser.find_elements(By.CSS_SELECTOR, ".card.run"), runs):
            view = get_json(f"{tensorboard}/data/plugin/forgetting/data?"
                            + urllib.parse.urlencode({"run": listed["run"]}))
            start, end = ([0] + view["epoch_ends"])[-2:]
            curve = card.find_element(By.CSS_SELECTOR, "svg.probe path.curve")
            assert int(curve.get_attribute("data-points")) == len(
                [s for s, _ in view["probe"][str(view["classes"][0])] if start <= s <= end])
        browser.save_screenshot(str(shots / "dashboard_epoch.png"))
        browser.find_element(By.CSS_SELECTOR, matrix).screenshot(
            str(shots / "matrix_last_epoch.png"))
        # The zoom and the axis are kept in TensorBoard's URL: a reload opens the same view.
        browser.switch_to.default_content()
        assert f"p.forgetting.zoom={last - 1}%2C{last}" in browser.current_url.replace(",", "%2C")
        browser.refresh()
        browser.switch_to.frame(wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "iframe"))[0])
        wait.until(all_drawn)
        assert [browser.find_element(By.ID, x).get_attribute("value") for x in ("from", "to")] == [
            str(last - 1), str(last)]
        # On steps the zoom is in steps; the rest of this test reads steps.
        Select(browser.find_element(By.ID, "axis")).select_by_value("step")
        wait.until(lambda b: b.find_element(By.ID, "to").get_attribute("value") == "")
        # "only": one click shows one class alone in that run; the other runs keep theirs.
        first_card = browser.find_elements(By.CSS_SELECTOR, ".card.run")[0]
        first_card.find_elements(By.CSS_SELECTOR, ".legend.classes a.only")[1].click()
        cards = browser.find_elements(By.CSS_SELECTOR, ".card.run")
        shown = [[x.get_attribute("data-class") for x in card.find_elements(
            By.CSS_SELECTOR, "svg.probe path.curve")] for card in cards]
        assert shown[0] == [str(get_json(f"{tensorboard}/data/plugin/forgetting/data?"
                                         + urllib.parse.urlencode({"run": runs[0]["run"]}))
                                ["classes"][1])]
        assert all(len(x) == r["classes"] for x, r in zip(shown[1:], runs[1:]))
        browser.find_element(By.ID, "all-classes").click()
        # The heatmap's hover names the row, the phase and the class.
        cell = browser.find_elements(By.CSS_SELECTOR, "svg.heatmap rect.cell")[0]
        ActionChains(browser).move_to_element(cell).perform()
        text = browser.find_element(By.ID, "tooltip").text
        assert text.startswith("phase ") and ", after " in text
        row_step, c, value = re.search(r"\(step (\d+)\) · class (\d+): ([\d.]+)$", text).groups()
        row = read_events(logdir / runs[0]["run"])[f"forgetting/row/class_{c}"][int(row_step)]
        assert float(value) == pytest.approx(row, abs=5e-5)  # the event file's matrix row
        # A click zooms to that phase and shows that class alone, in every run.
        phase = int(cell.get_attribute("data-row"))
        steps = get_json(f"{tensorboard}/data/plugin/forgetting/data?" + urllib.parse.urlencode(
            {"run": runs[0]["run"]}))["matrix"]["steps"]
        cell.click()
        wait.until(lambda b: b.find_element(By.ID, "to").get_attribute("value")
                   == str(steps[phase]))
        assert browser.find_element(By.ID, "from").get_attribute("value") == str(
            steps[phase - 1] if phase else 0)
        for card in browser.find_elements(By.CSS_SELECTOR, ".card.run"):
            curves = card.find_elements(By.CSS_SELECTOR, "svg.probe path.curve")
            assert [x.get_attribute("data-class") for x in curves] == [c]
        browser.find_element(By.ID, "all-classes").click()
        # A typed range given backwards is taken the right way round; "Whole run" clears
        # the epoch menu, so the same epoch can be chosen again.
        for box, value in (("from", "50"), ("to", "10")):
            browser.find_element(By.ID, box).clear()
            browser.find_element(By.ID, box).send_keys(value)
        browser.find_element(By.ID, "apply").click()
        assert [browser.find_element(By.ID, x).get_attribute("value") for x in ("from", "to")] == [
            "10", "50"]
        browser.find_element(By.ID, "reset").click()
        assert Select(browser.find_element(By.ID, "epoch")).first_selected_option.get_attribute(
            "value") == ""
        # The forgetting chart names its two series, defines them, and its hover gives both.
        chart = browser.find_elements(By.CSS_SELECTOR, "svg.forgetting-chart")[0]
        legend = chart.find_element(By.XPATH, "..").find_elements(By.CSS_SELECTOR, ".legend > span")
        assert [x.text for x in legend] == ["average forgetting", "BWT"]
        ActionChains(browser).move_to_element(chart).perform()
        text = browser.find_element(By.ID, "tooltip").text
        assert re.fullmatch(r"step \d+ · average forgetting [-\d.]+ · BWT [-+\d.]+", text), text
        table = browser.find_element(By.CSS_SELECTOR, "table.final")
        assert len(table.find_elements(By.CSS_SELECTOR, "tr")) == 2 + max(
            r["classes"] for r in runs)
    finally:
        browser.quit()


def test_two_runs_side_by_side_and_every_export(tensorboard, logdir, tmp_path):
    """The difference view holds each run's probe at its own epoch ends (or phase ends)
    and the final test accuracies; a run's curves and matrix export as CSV, its charts as
    SVG and PNG files."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    runs = get_json(f"{tensorboard}/data/plugin/forgetting/runs")
    views = [get_json(f"{tensorboard}/data/plugin/forgetting/data?"
                      + urllib.parse.urlencode({"run": r["run"]})) for r in runs[:2]]
    browser, downloads = _browser(), tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior",
                            {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        wait, frame = _open_tab(browser, tensorboard)
        browser.switch_to.frame(frame)
        wait.until(all_drawn)
        cells = browser.find_elements(By.CSS_SELECTOR, "svg.difference rect.diff-cell")
        a, b = views
        classes = sorted(set(a["classes"]) | set(b["classes"]))
        same = a["matrix"]["steps"] == b["matrix"]["steps"] and len(a["matrix"]["steps"]) <= 40
        rows = (len(a["matrix"]["steps"]) if same
                else min(len(a["epoch_ends"]), len(b["epoch_ends"])))
        assert len(cells) == (rows + 1) * len(classes)

        def probe_at(view, c, step):  # the probe point nearest the step, as the tab takes it
            return min(view["probe"][str(c)], key=lambda p: (abs(p[0] - step), -p[0]))[1]

        for cell in cells[:len(classes)] + cells[-len(classes):]:
            r, c = int(cell.get_attribute("data-row")), int(cell.get_attribute("data-class"))
            got = [float(cell.get_attribute(x)) for x in ("data-a", "data-b")]
            if r == rows:  # the final test accuracies
                want = [v["final"]["class_accuracy"][v["classes"].index(c)] for v in views]
            elif same:
                want = [v["matrix"]["rows"][r][v["classes"].index(c)] for v in views]
            else:
                want = [probe_at(v, c, v["epoch_ends"][r]) for v in views]
            assert got == pytest.approx(want, abs=1e-6), (r, c)
        ActionChains(browser).move_to_element(cells[0]).perform()
        tip = browser.find_element(By.ID, "tooltip").text
        assert re.fullmatch(rf"\S+ \d+ · class \d+: {re.escape(runs[0]['run'])} [\d.]+ − "
                            rf"{re.escape(runs[1]['run'])} [\d.]+ = [-+][\d.]+", tip), tip
        # Exports of the first run.
        card = browser.find_elements(By.CSS_SELECTOR, ".card.run")[0]
        for what in ("curves", "matrix", "probe-svg", "probe-png"):
            card.find_element(By.CSS_SELECTOR, f"a.export-link[data-what='{what}']").click()
        run = runs[0]["run"]
        files = [downloads / f"{run}_{x}"
                 for x in ("curves.csv", "matrix.csv", "probe.svg", "probe.png")]
        deadline = time.monotonic() + 30
        while not all(f.exists() and f.stat().st_size for f in files):
            assert time.monotonic() < deadline, sorted(p.name for p in downloads.iterdir())
            time.sleep(0.2)
        events = read_events(logdir / run)
        lines = files[0].read_text().splitlines()
        assert lines[0].split(",")[:3] == ["step", "epoch", "phase"]
        c0 = a["classes"][0]
        col = lines[0].split(",").index(f"class {c0}")
        exported = {int(x.split(",")[0]): float(x.split(",")[col]) for x in lines[1:]
                    if x.split(",")[col]}
        assert exported == pytest.approx(events[f"probe/accuracy/class_{c0}"])
        matrix = [x.split(",") for x in files[1].read_text().splitlines()]
        assert len(matrix) == 1 + len(a["matrix"]["rows"])
        assert [float(v) for v in matrix[1][3:]] == pytest.approx(a["matrix"]["rows"][0])
        import xml.etree.ElementTree as ElementTree
        svg = ElementTree.parse(files[2]).getroot()
        assert svg.tag.endswith("svg") and len(svg.findall(".//{*}path[@class='curve']")) == len(
            a["classes"])
        assert files[3].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print("exported:", ", ".join(f"{f.name} ({f.stat().st_size} bytes)" for f in files))
        # The run filter (a regular expression, as TensorBoard's): only the runs it matches.
        box = browser.find_element(By.ID, "run-filter")
        box.send_keys(f"^{re.escape(runs[1]['run'])}$\n")
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".card.run")) == 1)
        assert browser.find_element(By.CSS_SELECTOR, ".card.run").get_attribute(
            "data-run") == runs[1]["run"]
        assert not browser.find_elements(By.CSS_SELECTOR, "svg.difference")
        assert {x.get_attribute("data-run") for x in browser.find_elements(
            By.CSS_SELECTOR, "path.compare-curve")} == {runs[1]["run"]}
    finally:
        browser.quit()


# What `make demo` prints after the Time Series address (Makefile): no smoothing, the
# per-class probe cards.
PROBE_CARDS_QUERY = "smoothing=0&tagFilter=probe%2Faccuracy%2Fclass_"
# Time Series in the browser: each tag group's name, whether it is open, and the number
# of points in each line of one card (its paths: "M x,y L x,y ...").
_GROUPS = """return Array.from(document.querySelectorAll('.card-group')).map(g => ({
  name: g.querySelector('.group-title').innerText,
  open: g.querySelector('.expand-group-icon mat-icon').getAttribute('svgicon')
        === 'expand_less_24px'}));"""
_LINE_POINTS = """const card = Array.from(document.querySelectorAll('scalar-card')).find(
  c => c.innerText.replace(/\\n/g, '').startsWith(arguments[0]));
return card ? Array.from(card.querySelectorAll('path')).map(
  p => (p.getAttribute('d') || '').split(/[ML]/).length - 1) : null;"""


def test_time_series_opens_on_forgetting_and_every_point_is_drawn(tensorboard, logdir,
                                                                   tmp_path):
    """The standard Time Series tab, started as `make demo` says: forgetting comes first."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser()
    shots = Path(os.environ.get("TAPELOOP_SCREENSHOTS") or tmp_path)
    try:
        browser.get(f"{tensorboard}/?forceSVG=true#timeseries")
        wait = WebDriverWait(browser, 60)
        groups = wait.until(lambda b: len(b.execute_script(_GROUPS)) > 2
                            and b.execute_script(_GROUPS))
        names = [g["name"] for g in groups]
        print("Time Series groups:", ", ".join(f"{g['name']} ({'open' if g['open'] else 'closed'})"
                                               for g in groups))
        # TensorBoard opens the first two groups: forgetting and the per-class probe.
        assert names[:2] == ["forgetting", "probe"] and names[-1] == "workings"
        assert [g["open"] for g in groups] == [True, True] + [False] * (len(groups) - 2)
        # Every phase end of each run is drawn (smoothing draws a second line of as many).
        drawn = wait.until(lambda b: (b.execute_script(_LINE_POINTS, "forgetting/average")
                                      or [0])[-1] > 0 and b.execute_script(
                                          _LINE_POINTS, "forgetting/average"))
        for run in get_json(f"{tensorboard}/data/plugin/forgetting/runs"):
            values = read_events(logdir / run["run"])["forgetting/average"].values()
            assert drawn.count(sum(1 for v in values if v == v)) >= 2, (run["run"], drawn)
        browser.save_screenshot(str(shots / "time_series.png"))
        # The link `make demo` prints: the per-class probe cards, unsmoothed, every point.
        browser.get(f"{tensorboard}/?forceSVG=true&{PROBE_CARDS_QUERY}#timeseries")
        wait.until(lambda b: b.execute_script(
            "return document.querySelectorAll('scalar-card').length") >= 2)
        drawn = wait.until(lambda b: (b.execute_script(_LINE_POINTS, "probe/accuracy/class_0")
                                      or [0])[-1] > 0 and b.execute_script(
                                          _LINE_POINTS, "probe/accuracy/class_0"))
        for run in get_json(f"{tensorboard}/data/plugin/forgetting/runs"):
            points = len(read_events(logdir / run["run"])["probe/accuracy/class_0"])
            print(f"Time Series, {run['run']}: probe/accuracy/class_0: {points} points in the "
                  f"event file, lines of {sorted(set(drawn) & {points})} drawn")
            assert points in drawn, (run["run"], points, drawn)
        smoothing = browser.execute_script(
            "return Array.from(document.querySelectorAll('input[type=number]'))"
            ".map(i => i.value)")
        assert "0" in smoothing and "0.6" not in smoothing
        browser.save_screenshot(str(shots / "time_series_probe.png"))
    finally:
        browser.quit()


def _post(url: str, body: dict):
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_hparams_names_the_runs_and_puts_what_differs_first(tensorboard, logdir, tmp_path):
    experiment = _post(f"{tensorboard}/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = experiment["hparamInfos"]
    # The hparams that differ, and only those: the metrics fit on the screen.
    assert [i["name"] for i in infos] == ["order"] and infos[0]["differs"]
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == [
        "result/test_accuracy", "result/average_forgetting", "result/bwt"]
    groups = _post(f"{tensorboard}/data/plugin/hparams/session_groups",
                   {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN"],
                    "colParams": [], "startIndex": 0, "sliceSize": 100})
    names = sorted(g["name"] for g in groups["sessionGroups"])
    assert names == sorted(r["run"] for r in get_json(f"{tensorboard}/data/plugin/forgetting/runs"))
    browser = _browser()
    shots = Path(os.environ.get("TAPELOOP_SCREENSHOTS") or tmp_path)
    try:
        browser.get(f"{tensorboard}/?forceSVG=true#hparams")
        time.sleep(5)  # The HParams tab renders in steps; there is no single element to wait on.
        text = browser.find_element("tag name", "body").text
        for name in names:
            assert name in text
        browser.save_screenshot(str(shots / "hparams.png"))
    finally:
        browser.quit()


def test_the_first_screen_compares_the_runs_and_follows_training(tensorboard, logdir, tmp_path):
    """At 1280x800 a row per class and a line per run fit on the first screen; a point
    appended to a run's events appears without reloading the page. (Last in the module:
    it adds points to a run.)"""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with urllib.request.urlopen(f"{tensorboard}/data/plugin/forgetting/runs") as response:
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    runs = get_json(f"{tensorboard}/data/plugin/forgetting/runs")
    views = {r["run"]: get_json(f"{tensorboard}/data/plugin/forgetting/data?"
                                + urllib.parse.urlencode({"run": r["run"]})) for r in runs}
    classes = sorted({c for v in views.values() for c in v["classes"]})
    browser, shots = _browser(), _shots(tmp_path)
    browser.set_window_size(1280, 800)
    try:
        wait, frame = _open_tab(browser, tensorboard)
        frame_top, frame_height = frame.rect["y"], frame.rect["height"]
        viewport = browser.execute_script("return window.innerHeight")
        browser.switch_to.frame(frame)
        wait.until(all_drawn)
        rows = browser.find_elements(By.CSS_SELECTOR, "svg.compare-row")
        assert [int(r.get_attribute("data-class")) for r in rows] == classes
        for row in rows:  # a line per run, every probe point of the run's class drawn
            lines = row.find_elements(By.CSS_SELECTOR, "path.compare-curve")
            assert [x.get_attribute("data-run") for x in lines] == [r["run"] for r in runs]
            c = row.get_attribute("data-class")
            assert [int(x.get_attribute("data-points")) for x in lines] == [
                len(views[r["run"]]["probe"].get(c, [])) for r in runs]
        for i, r in enumerate(runs):  # a class-sorted run shades the first class's own blocks
            own = rows[0].find_elements(By.CSS_SELECTOR, f"rect.compare-own[data-run='{r['run']}']")
            view = views[r["run"]]
            assert len(own) == (sum(1 for *_, label in view["phases"] if label == classes[0])
                                if view["by_class"] else 0)
        # The hover gives every run's value at the nearest probe point, as its events hold it.
        ActionChains(browser).move_to_element(rows[0]).perform()
        values = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#tooltip .hover-value"))
        assert len(values) == len(runs)
        for r, line in zip(runs, values):
            run, value, step = re.fullmatch(r"(.+): ([\d.]+) \(step (\d+)\)", line.text).groups()
            assert run == r["run"]
            expected = read_events(logdir / run)[f"probe/accuracy/class_{classes[0]}"][int(step)]
            assert float(value) == pytest.approx(expected, abs=5e-5)
        ActionChains(browser).move_to_element(browser.find_element(By.TAG_NAME, "h2")).perform()
        bottom = browser.execute_script(
            "return document.querySelector('.compare-axis').getBoundingClientRect().bottom")
        inner = browser.execute_script("return window.innerHeight")
        print(f"first screen: {len(rows)} rows x {len(runs)} runs end at {frame_top + bottom:.0f}"
              f" px of {viewport} (frame at {frame_top:.0f}, {frame_height:.0f} px high, "
              f"inner {inner})")
        assert frame_top + bottom <= viewport  # the whole comparison without scrolling
        browser.switch_to.default_content()
        browser.save_screenshot(str(shots / "dashboard_first_screen.png"))
        # Any width from 1024 to 2560 px: the charts follow the window, never past it.
        for width, height in ((1024, 768), (2560, 1440), (1280, 800)):
            browser.set_window_size(width, height)
            browser.switch_to.frame(frame)
            wait.until(lambda b: abs(b.execute_script(
                "return document.querySelector('svg.compare-row').width.baseVal.value - "
                "Math.max(880, Math.min(2400, document.body.clientWidth - 28))")) < 1)
            page, inner, chart = browser.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth, "
                "document.querySelector('svg.compare-row').width.baseVal.value]")
            print(f"window {width}: the tab is {page} px wide in {inner} px; charts {chart} px")
            assert page <= inner and chart >= min(880, inner - 60)
            browser.switch_to.default_content()
        # TensorBoard's dark theme (its page's body gets "dark-mode"): the tab follows it.
        browser.execute_script("document.body.classList.add('dark-mode')")
        browser.switch_to.frame(frame)
        wait.until(lambda b: "dark" in b.find_element(By.TAG_NAME, "body").get_attribute("class"))
        background = browser.execute_script(
            "return getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(32, 33, 36)", background
        browser.switch_to.default_content()
        browser.save_screenshot(str(shots / "dashboard_dark.png"))
        browser.execute_script("document.body.classList.remove('dark-mode')")
        if os.environ.get("TAPELOOP_DASHBOARD_LOGDIR"):
            return  # the live check writes into the runs: only into those made here
        browser.switch_to.frame(frame)
        run, view = runs[0]["run"], views[runs[0]["run"]]
        c = view["classes"][0]
        import tensorflow as tf
        writer = tf.summary.create_file_writer(str(logdir / run))
        with writer.as_default():
            for k in range(1, 4):
                tf.summary.scalar(f"probe/accuracy/class_{c}", 0.5, step=runs[0]["last_step"] + k)
        writer.close()
        # TensorBoard's reload button tells the tab (its plugin messages), which reads again.
        browser.switch_to.default_content()
        browser.find_element(By.CSS_SELECTOR, "button.reload-button").click()
        browser.switch_to.frame(frame)
        wait.until(lambda b: int(b.find_element(By.TAG_NAME, "body").get_attribute(
            "data-reloads") or 0) >= 1)
        line = f"svg.compare-row[data-class='{c}'] path.compare-curve[data-run='{run}']"
        before = len(view["probe"][str(c)])
        WebDriverWait(browser, 90, poll_frequency=1,
                      ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda b: int(b.find_element(By.CSS_SELECTOR, line).get_attribute("data-points"))
            == before + 3)
    finally:
        browser.quit()
