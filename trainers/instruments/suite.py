"""The forgetting instruments of a run: held-out probe, weight drift, accuracy matrix.

One object owns them so the controller only says *when* (phase start, phase end,
epoch end, end of run); what is measured and written lives here.

- In the compiled loop, every `eval_every_steps` steps: `periodic(metrics)` returns
  the probe's per-class accuracy and loss and the drift scalars, written in-graph.
- At every phase end (host): the probe again, exactly at the boundary; it becomes a
  row of the accuracy matrix, from which forgetting and BWT are written.
- At every epoch end: weight histograms and the accuracy matrix as CSV; at the end
  of the run, the matrix as a labelled picture.
"""

import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from tapeloop.trainers.instruments import drift, probe
from tapeloop.trainers.records import config as config_lib, forgetting, plots, run_dirs, writers

HEATMAP_ROWS = 400
# What HParams shows of a run with no sibling to differ from.
KEY_HPARAMS = ("order", "scenario", "remedies", "model", "optimizer", "learning_rate", "epochs",
               "seed")
FINAL_METRICS = ("result/test_accuracy", "result/average_forgetting", "result/bwt")


class Instruments:
    """Probe + drift + accuracy matrix for one model, writing to one writer."""

    def __init__(self, model: tf.keras.Model, probe_set: tuple[np.ndarray, np.ndarray] | None,
                 *, num_classes: int, writer: writers.MetricWriter, run_dir: Path | None,
                 batch_splits: int = 1, strategy=None, forward=None, objective=None,
                 every_n_steps: int = 0, task_probe=None, num_tasks: int = 0):
        # The matrix's columns: classes, or a scenario's tasks (`task_probe`, `continual`).
        self.unit = "task" if task_probe is not None else "class"
        self.num_classes = num_tasks if task_probe is not None else num_classes
        self.probed = (frozenset(range(num_tasks)) if task_probe is not None else
                       frozenset(int(c) for c in probe_set[1]))  # classes with test examples
        self._every = every_n_steps  # the cadence at which `periodic` runs in the loop
        self.drift = drift.WeightDrift(model)
        self.matrix = forgetting.AccuracyMatrix(self.num_classes)
        self._writer = writer
        self._run_dir = run_dir
        self._probe = task_probe or probe.make_probe(
            model, *probe_set, num_classes=num_classes, batch_splits=batch_splits,
            strategy=strategy, forward=forward, objective=objective)
        self._probe_now = tf.function(self._probe, autograph=False)
        self._write_histograms = writer.histogram_writer({
            f"weights/{name}": v for name, v in zip(self.drift.names, model.trainable_variables)})

    def periodic(self, metrics: dict) -> dict[str, tf.Tensor]:
        """The in-graph scalars at a cadence step: probe and drift (see `loop.make_train_loop`)."""
        return {**self._probe(), **self.drift.metrics(metrics["grad_norms"])}

    def before_periodic(self) -> None:
        """In-graph, right before a measured step: snapshot the weights it will change."""
        self.drift.mark_previous()

    def phase_start(self) -> None:
        self.drift.mark_phase_start()

    def phase_end(self, *, step: int, epoch: int, phase: int, task: tuple[int, ...]) -> None:
        """Probes at the boundary, adds the matrix row, writes it and the forgetting metrics.

        The probe curves also get this exact phase-end point, where a class's accuracy
        peaks in sorted order, whatever the cadence; a phase end on the cadence was
        probed by the loop already, on the same weights, and is not written twice.
        """
        values = {tag: float(v) for tag, v in self._probe_now().items()}
        if not (self._every and step % self._every == 0):
            self._writer.write_scalars(step, values)
        # A class without test examples is trained but never measured: a phase of
        # such classes alone adds no row, and no metric counts them.
        task = tuple(c for c in task if c in self.probed)
        if not task:
            return
        unit = self.unit
        row = [values.get(f"probe/accuracy/{unit}_{c}", np.nan) for c in range(self.num_classes)]
        self.matrix.add(row, task=task, step=step, epoch=epoch, phase=phase)
        summary = self.matrix.summary()
        probed = sorted(self.probed)
        scalars = {f"forgetting/row/{unit}_{c}": row[c] for c in probed}
        scalars.update({f"forgetting/{unit}_{c}": summary["class_forgetting"][c]
                        for c in probed})
        scalars["forgetting/average"] = summary["average_forgetting"]
        self._writer.write_scalars(step, scalars)
        if not np.isnan(summary["bwt"]):  # Apart: one tag set per call keeps one trace each.
            self._writer.write_scalars(step, {"forgetting/bwt": summary["bwt"]})

    def epoch_end(self, step: int) -> None:
        """Weight histograms, and the accuracy matrix so far as `RUN/accuracy_matrix.csv`."""
        self._write_histograms(step)
        if self._run_dir is not None:
            _write_atomic(self._run_dir / "accuracy_matrix.csv", self.matrix.to_csv().encode())

    def end(self, step: int, *, title: str) -> None:
        """The accuracy matrix as a labelled picture: Images tab and `RUN/accuracy_matrix.png`.

        Drawn once, at the end (matplotlib is slow to start; the CSV is kept every epoch).
        The picture shows the last `HEATMAP_ROWS` rows (short class blocks make many).
        """
        if not self.matrix.rows:
            return
        first = max(0, len(self.matrix.rows) - HEATMAP_ROWS)
        labels = [f"{i + 1}: " + ",".join(map(str, task)) if len(task) <= 3 else
                  f"{i + 1}: epoch {epoch + 1}" for i, (task, epoch) in
                  enumerate(zip(self.matrix.tasks, self.matrix.epochs))][first:]
        png = plots.accuracy_matrix_png(self.matrix.matrix[first:], row_labels=labels,
                                        title=title, unit=self.unit)
        width, height = _png_size(png)
        self._writer.write_png(step, "forgetting/accuracy_matrix", png, width=width,
                               height=height)
        if self._run_dir is not None:
            _write_atomic(self._run_dir / "accuracy_matrix.png", png)

    def probe_tracing_count(self) -> int:
        """Traces of the phase-end probe (the cadence probe is traced with the loop)."""
        return self._probe_now.experimental_get_tracing_count()

    def summary(self) -> dict:
        """Forgetting after the last phase: per class, average, BWT."""
        return self.matrix.summary()


def describe_run(writer: writers.MetricWriter, config, *, instrumented: bool,
                 recorded: dict | None = None, run_dir: Path | None = None) -> None:
    """Config (and what was built: model, data) as text and HParams; the per-class layouts.

    HParams names the run by its directory, and the experiment beside the runs
    (`writers.write_experiment`) covers this run and every run next to it.
    """
    record = config.to_json(recorded=recorded)
    writer.write_text(0, "config", f"```\n{record}\n```")
    if recorded and recorded.get("scenario"):  # the Forgetting tab labels tasks with it
        writer.write_text(0, "scenario", json.dumps(recorded["scenario"]))
    names = ((recorded or {}).get("data") or {}).get("class_names")
    if names:  # and classes with these
        writer.write_text(0, "class_names", json.dumps(names))
    mine = hparams_of(json.loads(record))
    writer.write_hparams(mine, trial_id=run_dir.name if run_dir is not None else "run")
    if run_dir is not None:
        writers.write_experiment(run_dir.parent, [mine, *sibling_configs(run_dir)],
                                 list(FINAL_METRICS), fallback=KEY_HPARAMS)
    if not instrumented:
        return
    writer.write_layout({
        "forgetting": {
            "probe accuracy, every class": [r"probe/accuracy/(class|task)_\d+"],
            "probe loss, every class": [r"probe/loss/(class|task)_\d+"],
            "accuracy-matrix rows (after each phase)": [r"forgetting/row/(class|task)_\d+"],
            "forgetting per class (after each phase)": [r"forgetting/(class|task)_\d+"],
        },
        "drift": {
            "distance from phase start": [r"weights/drift/from_phase_start/.*"],
            "distance from initial weights": [r"weights/drift/from_init/.*"],
            "relative drift": [r"weights/drift/relative/.*"],
            "update and gradient norms (model)": [r"weights/drift/(update|grad)_norm/model"],
        }})


def hparams_of(saved: dict) -> dict:
    """A run's HParams from its config.json: the settings that applied (a built-in
    remedy's only when the flags chose it), and what the script passed in: its data's and
    model's names (for settings recorded as None), its own flags, and each remedy's
    settings as `name.setting`."""
    recorded = saved.get("recorded") or {}
    chosen = set(saved.get("remedy") or ()) | ({"reservoir"} if saved.get("order") == "replay"
                                               else set())
    unused = {k for k, users in config_lib.REMEDY_SETTINGS.items() if not chosen & set(users)}
    out = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()
           if k != "recorded" and v is not None and k not in unused}
    if saved.get("dataset", "") is None and "data" in recorded:
        out["data"] = recorded["data"].get("name")
    if saved.get("model", "") is None and "model" in recorded:
        out["model"] = recorded["model"].get("builder")
    if saved.get("scenario", "") is None and "scenario" in recorded:  # an object passed in
        out["scenario"] = recorded["scenario"].get("name")
    for name, value in (recorded.get("script_flags") or {}).items():
        out[name] = tuple(value) if isinstance(value, list) else value
    remedies = recorded.get("remedies")
    if remedies is not None:  # a scenario's run: its remedies, and each one's settings
        out["remedies"] = "+".join(r["name"] for r in remedies) or "none"
        for r in remedies:
            out.update({f"{r['name']}.{k}": v for k, v in r["hparams"].items()})
    return out


def sibling_configs(run_dir: Path) -> list[dict]:
    """The HParams of the other runs beside `run_dir` (from their `config.json`)."""
    configs = []
    for other in sorted(Path(run_dir).parent.iterdir()):
        if other != run_dir and (other / "config.json").is_file():
            try:
                saved = run_dirs.read_json(other / "config.json")
            except run_dirs.RunDirError:  # a damaged neighbour: not part of the experiment
                continue
            configs.append(hparams_of(saved))
    return configs


def save_weights(path: Path, model: tf.keras.Model) -> None:
    """Saves the model's trainable variables as npz, keyed by their short names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: v.numpy() for name, v in zip(drift.variable_names(model),
                                                 model.trainable_variables)}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _write_atomic(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
