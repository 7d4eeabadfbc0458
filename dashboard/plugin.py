"""The Forgetting tab: a TensorBoard plugin that shows forgetting at a glance.

TensorBoard finds it through the `tensorboard_plugins` entry point (setup.cfg). The
backend reads the runs through TensorBoard's data provider (the same scalars the
Scalars tab reads: `probe/accuracy/class_C`, `train/phase`, `forgetting/*`,
`test/accuracy/class_C`) and serves one JSON view per run; the frontend is the
static `static/index.js`, served by the plugin itself (no build step, nothing
fetched from the network).

TensorBoard keeps at most 1,000 points per scalar tag unless it is started with
`--samples_per_plugin=scalars=1000000` (not `=0`: the Scalars and Time Series tabs of
TensorBoard 2.21 then draw nothing); the view says when a run's points were thinned.
"""

import bisect
import contextlib
import gc
import json
import math
import re
from pathlib import Path

from werkzeug import wrappers

from tensorboard import plugin_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin

from tapeloop.trainers.records import forgetting, tables

PLUGIN_NAME = "forgetting"
STATIC = Path(__file__).parent / "static"
_CLASS_TAG = re.compile(r"(probe/accuracy|forgetting/row|test/accuracy)/(class|task)_(\d+)$")
_STABILITY = ("result/min_acc", "result/wc_acc", "result/wf_100")  # a scenario's run
_TAGS = ("train/phase", "forgetting/average", "forgetting/bwt", "result/test_accuracy",
         "train/epoch_loss") + _STABILITY
_EVERY_POINT = 10 ** 9


class ForgettingPlugin(base_plugin.TBPlugin):
    """Per-class probe curves with the phases shaded, the accuracy matrix, forgetting, BWT."""

    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        self._provider = context.data_provider

    def get_plugin_apps(self):
        return {"/index.js": self._index_js, "/runs": self._runs, "/data": self._data}

    def is_active(self) -> bool:
        return False  # Superseded by data_plugin_names: active when there are scalars.

    def data_plugin_names(self):
        return ("scalars",)

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Forgetting")

    @wrappers.Request.application
    def _index_js(self, request):
        del request
        return _nosniff(wrappers.Response((STATIC / "index.js").read_bytes(),
                                          content_type="text/javascript"))

    def _list(self, request, run_tag_filter=None):
        return self._provider.list_scalars(
            plugin_util.context(request.environ),
            experiment_id=plugin_util.experiment_id(request.environ),
            plugin_name="scalars", run_tag_filter=run_tag_filter)

    @wrappers.Request.application
    def _runs(self, request):
        """The runs with a probe: `[{"run", "classes", "last_step"}]`, by name."""
        runs = []
        for run, tags in sorted(self._list(request).items()):
            classes = [t for t in tags if t.startswith(("probe/accuracy/class_",
                                                        "probe/accuracy/task_"))]
            if classes:
                runs.append({"run": run, "classes": len(classes),
                             "last_step": max(tags[t].max_step for t in classes)})
        return _json(runs)

    @wrappers.Request.application
    def _data(self, request):
        """One run's view (see `run_view`), every point TensorBoard holds."""
        run = request.args.get("run", "")
        listed = self._list(request, provider.RunTagFilter(runs=[run])).get(run, {})
        wanted = [t for t in listed if _CLASS_TAG.match(t) or t in _TAGS]
        if not wanted:
            return _json({"error": f"run {run!r} has no probe data"}, status=404)
        data = self._provider.read_scalars(
            plugin_util.context(request.environ),
            experiment_id=plugin_util.experiment_id(request.environ), plugin_name="scalars",
            downsample=_EVERY_POINT, run_tag_filter=provider.RunTagFilter(runs=[run],
                                                                          tags=wanted))
        series = {tag: [(p.step, p.value) for p in points]
                  for tag, points in data.get(run, {}).items()}
        with _no_cyclic_gc():
            view = run_view(series, self._text_json(request, run, "scenario"),
                            self._text_json(request, run, "class_names"))
        phase = listed.get("train/phase")
        view["thinned"] = bool(phase and len(series.get("train/phase", ())) < phase.max_step + 1)
        return _json(view)


    def _text_json(self, request, run: str, tag: str):
        """The JSON a run wrote as its text `tag` (None: none): its scenario's task table
        (`scenario`), its data's `class_names`."""
        try:
            data = self._provider.read_tensors(
                plugin_util.context(request.environ),
                experiment_id=plugin_util.experiment_id(request.environ), plugin_name="text",
                downsample=1, run_tag_filter=provider.RunTagFilter(runs=[run], tags=[tag]))
            points = data.get(run, {}).get(tag, [])
            text = points[-1].numpy.item() if points else None
            return json.loads(text.decode() if isinstance(text, bytes) else text) if text else None
        except (ValueError, KeyError, AttributeError, TypeError):
            return None


def run_view(series: dict[str, list[tuple[int, float]]], tasks: dict | None = None,
             class_names: list[str] | None = None) -> dict:
    """What the tab draws for one run, from its scalar series `{tag: [(step, value)]}`.

    Returns a dict with `classes`; `probe` (class -> [[step, accuracy]]); `phases`
    ([[first step, end step, label]], one per block of equal `train/phase`; label is
    the class trained, or the epoch where each epoch is one phase); `by_class`
    (whether phases are classes); `matrix` (rows after each phase end: `steps`,
    `labels`, `rows`); `forgetting` (`average`, `bwt`: [[step, value]]); `epoch_ends`;
    and `final` (`test_accuracy`, `class_accuracy`, `average_forgetting`, `bwt`, and a
    scenario's `min_acc`, `wc_acc`, `wf_100`). `unit`: what a column is, "class" or a
    scenario's "task"; `labels`: each column's name (`tables.column_labels`: a class by
    the name the data gives it, `class_names`; a task with its classes, from the task
    table `tasks` the run recorded).
    """
    phase_points = series.get("train/phase", [])
    # JSON has no NaN or infinity: None in their place, once, point by point.
    series = {tag: [(s, v if math.isfinite(v) else None) for s, v in points]
              for tag, points in series.items()}

    def last(tag):
        points = series.get(tag)
        return points[-1][1] if points else None

    by_kind, unit = {}, "class"
    for tag in series:
        match = _CLASS_TAG.match(tag)
        if match:
            by_kind.setdefault(match.group(1), {})[int(match.group(3))] = tag
            unit = match.group(2)
    probe_tags = by_kind.get("probe/accuracy", {})
    classes = sorted(probe_tags)
    epoch_ends = [s for s, _ in series.get("train/epoch_loss", [])]
    phases = forgetting.phase_blocks(phase_points)
    by_class = forgetting.phases_are_classes(phases, epoch_ends)
    row_tags = by_kind.get("forgetting/row", {})
    row_steps = sorted({s for tag in row_tags.values() for s, _ in series[tag]})
    # The matrix, a column per class, read a column at a time (a run may have tens of
    # thousands of rows), then turned into rows.
    cells = [dict(series[row_tags[c]]) if c in row_tags else {} for c in classes]
    columns = [[column.get(s) for s in row_steps] for column in cells]
    phase_at = _label_before(phases)
    test = by_kind.get("test/accuracy", {})
    table = (tasks or {}).get("tasks") or None if unit == "task" else None
    names = tables.column_labels(
        max(classes, default=-1) + 1, tasks=table, unit=unit,
        class_names=class_names if isinstance(class_names, list) else None)
    return {
        "classes": classes, "unit": unit, "labels": [names[c] for c in classes],
        "probe": {c: [[s, v] for s, v in series[probe_tags[c]]] for c in classes},
        "phases": phases, "by_class": by_class, "epoch_ends": epoch_ends,
        "matrix": {"steps": row_steps, "labels": [phase_at(s) for s in row_steps],
                   "rows": [list(row) for row in zip(*columns)] if classes else []},
        "forgetting": {"average": [[s, v] for s, v in series.get("forgetting/average", [])],
                       "bwt": [[s, v] for s, v in series.get("forgetting/bwt", [])]},
        "final": {"test_accuracy": last("result/test_accuracy"),
                  "class_accuracy": [last(test[c]) if c in test else None for c in classes],
                  "average_forgetting": last("forgetting/average"),
                  "bwt": last("forgetting/bwt"),
                  **{tag.split("/")[1]: last(tag) for tag in _STABILITY if tag in series}},
    }


def _label_before(phases):
    """`label(step)`: the phase trained by the update that led to `step` (a binary search:
    phases are in step order, and a run may have tens of thousands)."""
    ends = [end for _, end, _ in phases]

    def label(step):
        i = bisect.bisect_left(ends, step)
        if i < len(phases) and phases[i][0] < step <= phases[i][1]:
            return phases[i][2]
        return None
    return label


@contextlib.contextmanager
def _no_cyclic_gc():
    """Python's cycle collector paused: a view of tens of thousands of phases is hundreds
    of thousands of small lists, none in a cycle, and the collector's passes over them
    took most of the time spent building it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _json(value, status: int = 200):
    try:  # run_view's values are finite or None already: no second walk over them
        body = json.dumps(value, allow_nan=False)
    except ValueError:
        body = json.dumps(_finite(value), allow_nan=False)
    return _nosniff(wrappers.Response(body,
                                      status=status, content_type="application/json"))


def _nosniff(response):
    """The response, with the header TensorBoard asks of every plugin response (it warns
    on each one without it)."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _finite(value):
    """`value` with NaN and infinities as None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
