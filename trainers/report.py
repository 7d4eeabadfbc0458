"""Prints runs side by side from their event files:
`python -m tapeloop.trainers.report RUN_DIR ...`.

Everything is read back with TensorBoard's own reader (a step written twice keeps
its latest value), so the report shows exactly what the dashboards show.
"""

import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
from absl import app, flags, logging

from tapeloop.trainers.instruments import step_dumps
from tapeloop.trainers.records import events, forgetting, run_dirs, tables

_CSV = flags.DEFINE_string("csv", None, "Also write the per-class probe accuracy curves to "
                           "this CSV file: run, step, class_0, class_1, ...")
_INSPECT = flags.DEFINE_list("inspect", None, "Instead of runs, print these step dumps "
                             "(RUN/inspect/step_N.npz from tapeloop-train --inspect_steps).")
_PLOT = flags.DEFINE_string("plot", None, "Also draw the per-class probe curves of the runs, "
                            "one panel each with the phases shaded, as a PNG at this path.")
_DROP = flags.DEFINE_integer("drop", None, "Also print, for this class, where its probe "
                             "accuracy fell the most between two consecutive probes (the steps "
                             "to pass to --inspect_steps).", lower_bound=0)


@dataclasses.dataclass
class RunSummary:
    """What the report shows of one run."""

    name: str
    test_accuracy: float
    test_class_accuracy: np.ndarray
    class_forgetting: np.ndarray
    average_forgetting: float
    bwt: float
    drift_from_init: float  # whole model, at the last probe
    drift_relative: float  # whole model, at the last probe
    growth: dict | None  # forgetting.drift_growth of distance-from-phase-start
    last_epoch: dict | None  # forgetting.sawtooth over the last epoch
    class_blocks: bool  # the last epoch was made of several (class) blocks
    seconds_per_epoch: float  # median
    curves: dict  # {step: per-class probe accuracy}
    phases: list = dataclasses.field(default_factory=list)  # forgetting.phase_blocks
    epoch_ends: list = dataclasses.field(default_factory=list)  # steps
    by_class: bool = False  # several phases per epoch: the phases are classes (or tasks)
    lacks: list[str] = dataclasses.field(default_factory=list)  # what the events do not hold
    unit: str = "class"  # what a column is: a class, or a scenario's task
    labels: list[str] = dataclasses.field(default_factory=list)  # each column's name
    # min-ACC, WC-ACC, WF of a scenario's run, as the run computed them (result/* scalars)
    stability: dict = dataclasses.field(default_factory=dict)


# What the report reads, and how a run that lacks it is described.
_EXPECTED = {"result/test_accuracy": "a final result (unfinished: the numbers are the latest)",
             "test/accuracy": "test results (no epoch finished)",
             "train/epoch_loss": "epoch ends",
             "probe/accuracy": "probe curves (the probe was off)",
             "forgetting/average": "forgetting (no phase end probed)",
             "weights/drift/from_init/model": "weight drift"}


def summarize(run_dir: Path) -> RunSummary:
    """Reads one run's events and derives the report's numbers.

    Any run written through tapeloop's writers is read: what it lacks (test results,
    the probe, forgetting, drift, epoch ends) shows as "-" and is named in `lacks`.

    Raises:
      FileNotFoundError: no event files.
      ValueError: event files without a scalar (empty, or not event files).
    """
    scalars = events.read_scalars(run_dir)
    if not scalars:
        raise ValueError(f"{run_dir}: its event files hold no scalars (empty or damaged)")
    lacks = [what for tag, what in _EXPECTED.items() if tag not in scalars]
    recorded = _recorded(run_dir)
    table = recorded.get("scenario")
    table = table if isinstance(table, dict) and table.get("tasks") else None
    class_names = (recorded.get("data") or {}).get("class_names")
    unit = "task" if table else "class"
    num_classes = len(table["tasks"]) if table else _num_classes(run_dir, scalars)
    labels = tables.column_labels(num_classes, class_names=class_names,
                                  tasks=table["tasks"] if table else None)

    def last(tag):
        values = scalars.get(tag)
        return values[max(values)] if values else float("nan")

    def per_class(prefix):
        return np.array([last(f"{prefix}/{unit}_{c}") for c in range(num_classes)])

    curves = _curves(scalars, num_classes, unit)
    phase_of_step = {s: int(v) for s, v in scalars.get("train/phase", {}).items()}
    logged_ends = sorted(scalars.get("train/epoch_loss", {}))
    epoch_ends = logged_ends or [max(curves, default=0)]
    start = epoch_ends[-2] if len(epoch_ends) > 1 else 0
    last_epoch = None
    if curves and any(start < s <= epoch_ends[-1] for s in curves):
        last_epoch = forgetting.sawtooth(curves, phase_of_step, start=start, end=epoch_ends[-1])
    growth = None
    if "weights/drift/from_phase_start/model" in scalars and phase_of_step:
        growth = forgetting.drift_growth(scalars["weights/drift/from_phase_start/model"],
                                         phase_of_step)
    last_phases = {p for s, p in phase_of_step.items() if start <= s < epoch_ends[-1]}
    seconds = sorted(scalars.get("workings/epoch_seconds", {}).values())
    phases = forgetting.phase_blocks(sorted(phase_of_step.items()))
    return RunSummary(
        name=Path(run_dir).name, test_accuracy=last("test/accuracy"),
        test_class_accuracy=per_class("test/accuracy"),
        class_forgetting=per_class("forgetting"),
        average_forgetting=last("forgetting/average"), bwt=last("forgetting/bwt"),
        drift_from_init=last("weights/drift/from_init/model"),
        drift_relative=last("weights/drift/relative/model"), growth=growth, last_epoch=last_epoch,
        class_blocks=len(last_phases) > 1,
        seconds_per_epoch=seconds[len(seconds) // 2] if seconds else float("nan"),
        curves=curves, lacks=lacks, phases=phases, epoch_ends=logged_ends,
        by_class=bool(table) or forgetting.phases_are_classes(phases, logged_ends), unit=unit,
        labels=labels, stability={k: last(f"result/{k}") for k in forgetting.STABILITY_METRICS
                                  if f"result/{k}" in scalars})


def _recorded(run_dir: Path) -> dict:
    """What the run's config.json recorded of what it built (empty: no config.json)."""
    try:
        return run_dirs.read_json(Path(run_dir) / "config.json").get("recorded") or {}
    except run_dirs.RunDirError:
        return {}


def comparison(runs: list[RunSummary]) -> str:
    """The side-by-side text: overall numbers, the sawtooth, drift, then per-class tables."""
    names = [r.name for r in runs]
    rows = [
        ("test accuracy", [tables.number(r.test_accuracy) for r in runs]),
        ("average forgetting (probe)", [tables.number(r.average_forgetting) for r in runs]),
        ("backward transfer, BWT", [tables.number(r.bwt, signed=True) for r in runs]),
        # Out of the classes probed (a class without test examples has no curve).
        ("last epoch: classes peaking in own block",
         [f"{int(np.sum(r.last_epoch['peak_in_own_block']))}/{_probed(r)}"
          if r.last_epoch and r.class_blocks else "-" for r in runs]),
        # Probe accuracies are multiples of 1/100: 0.99 - 0.79 = 0.1999999... counts.
        ("last epoch: classes with spread >= 0.20",
         [f"{int(np.sum(r.last_epoch['spread'] >= 0.20 - 1e-6))}/{_probed(r)}"
          if r.last_epoch else "-" for r in runs]),
        ("last epoch: largest spread",
         [tables.number(float(np.nanmax(r.last_epoch["spread"]))) if r.last_epoch else "-"
          for r in runs]),
        ("drift from initial weights (L2)", [tables.number(r.drift_from_init) for r in runs]),
        ("relative drift (over initial norm)", [tables.number(r.drift_relative) for r in runs]),
        ("drift from phase start: rising steps",
         [f"{r.growth['rising_pairs']}/{r.growth['pairs']}" if r.growth else "-" for r in runs]),
        ("drift from phase start: rising blocks",
         [f"{r.growth['rising_blocks']}/{r.growth['blocks']}" if r.growth else "-"
          for r in runs]),
        ("seconds per epoch (median)", [tables.number(r.seconds_per_epoch) for r in runs]),
    ]
    if any(r.stability for r in runs):  # continual evaluation (De Lange et al. 2023)
        window = forgetting.WINDOW_STEPS
        rows += [("min-ACC (worst accuracy after a task)",
                  [tables.number(r.stability.get("min_acc")) for r in runs]),
                 ("WC-ACC (worst-case accuracy)",
                  [tables.number(r.stability.get("wc_acc")) for r in runs]),
                 (f"WF{window} (largest drop within {window} steps)",
                  [tables.number(r.stability.get(f"wf_{window}")) for r in runs])]
    unit = "task" if any(r.unit == "task" for r in runs) else "class"
    if unit == "task":  # a scenario's columns are its tasks
        rows = [(label.replace("classes", "tasks").replace("class", "task"), cells)
                for label, cells in rows]
    parts = [tables.side_by_side(names, rows)]
    parts += [f"{r.name} lacks: {', '.join(r.lacks)}" for r in runs if r.lacks]
    per_class = [
        (f"test accuracy per {unit}", lambda r: r.test_class_accuracy, False),
        (f"forgetting per {unit} (best probe accuracy so far - final)",
         lambda r: r.class_forgetting, False),
        ("last epoch: spread of probe accuracy (max - min)",
         lambda r: r.last_epoch["spread"] if r.last_epoch else None, False),
        (f"last epoch: phase of the batch at each {unit}'s probe peak",
         lambda r: r.last_epoch["peak_phase"] if r.last_epoch and r.class_blocks else None,
         True),
    ]
    num_classes = max(len(r.test_class_accuracy) for r in runs)  # runs may differ
    names_of = [next((r.labels[c] for r in runs if c < len(r.labels)), str(c))
                .removeprefix("class ") for c in range(num_classes)]  # "3", "6 Shirt"
    for title, get, integer in per_class:
        columns = [get(r) for r in runs]
        rows = [(names_of[c], ["-" if col is None or c >= len(col) else
                          (str(int(col[c])) if integer else tables.number(col[c]))
                          for col in columns]) for c in range(num_classes)]
        parts.append(f"{title}:\n" + tables.side_by_side(names, rows, label_width=7))
    return "\n\n".join(parts)


def _probed(run: RunSummary) -> int:
    """How many classes the run's probe measured in its last epoch."""
    return int(np.sum(~np.isnan(run.last_epoch["spread"])))


def largest_drop(summary: RunSummary, cls: int) -> str:
    """Where class `cls`'s probe accuracy fell the most between two consecutive probes.

    The fall between probes at steps a < b was made by the batches of steps a..b-1
    (a value logged at step s describes the model after s updates).
    """
    steps = sorted(summary.curves)
    if len(steps) < 2:
        return f"{summary.name}: fewer than two probes of class {cls}"
    acc = np.array([summary.curves[s][cls] for s in steps])
    i = int(np.argmax(acc[:-1] - acc[1:]))
    a, b = steps[i], steps[i + 1]
    peak = int(np.argmax(acc))
    batches = f"{a}-{b - 1}" if b - 1 > a else f"{a}"
    return (f"{summary.name}: class {cls} probe accuracy peaked at {acc[peak]:.4f} (step "
            f"{steps[peak]}); its largest fall between two probes is {acc[i]:.4f} -> "
            f"{acc[i + 1]:.4f}, from step {a} to {b}, made by the batches of steps {batches}: "
            f"--inspect_steps={batches}")


def plot(runs: list[RunSummary]) -> bytes:
    """A PNG of each run's per-class probe curves with its phases shaded (`plots`)."""
    from tapeloop.trainers.records import plots

    panels = []
    for r in runs:
        steps = sorted(r.curves)
        accuracy = np.array([r.curves[s] for s in steps]).reshape(len(steps), -1)
        ends = r.epoch_ends
        zoom = ((ends[-2] if len(ends) > 1 else 0, ends[-1])
                if r.by_class and ends and len(r.phases) > 12 else None)
        if r.unit == "task":
            zoom = None  # one pass over the tasks: the whole run is the story
        panels.append({"name": r.name, "steps": steps, "accuracy": accuracy,
                       "classes": list(range(accuracy.shape[1])), "phases": r.phases,
                       "by_class": r.by_class, "zoom": zoom, "unit": r.unit,
                       "labels": r.labels or None})
    return plots.probe_curves_png(panels)


def curves_csv(runs: list[RunSummary]) -> str:
    """`run,step,class_0,...`: every run's per-class probe accuracy at every probe step."""
    num_classes = max(len(r.test_class_accuracy) for r in runs)
    lines = [",".join(["run", "step"] + [f"class_{c}" for c in range(num_classes)])]
    for r in runs:
        for step in sorted(r.curves):
            values = [f"{v:.6f}" for v in r.curves[step]]
            lines.append(",".join([r.name, str(step)] + values
                                  + [""] * (num_classes - len(values))))
    return "\n".join(lines) + "\n"


# Without a config.json to say how many classes a run has, class tags past this id
# are not trusted (a tag such as class_50000000 would make the tables that long).
MAX_UNRECORDED_CLASSES = 10_000


def _num_classes(run_dir: Path, scalars: dict) -> int:
    """The run's number of classes: its record's, else 1 + the largest class id tagged."""
    try:
        recorded = run_dirs.read_json(Path(run_dir) / "config.json").get("recorded") or {}
        return int(recorded["data"]["num_classes"])
    except (run_dirs.RunDirError, KeyError, TypeError, ValueError):
        pass
    class_ids = [int(m.group(1)) for tag in scalars
                 if (m := re.fullmatch(r"(?:test|probe)/accuracy/class_(\d+)", tag))]
    return 1 + max((c for c in class_ids if c < MAX_UNRECORDED_CLASSES), default=-1)


def _curves(scalars: dict, num_classes: int, unit: str = "class") -> dict[int, np.ndarray]:
    """{step: per-class (or per-task) probe accuracy}; NaN for a class not probed (no test
    examples)."""
    tags = [f"probe/accuracy/{unit}_{c}" for c in range(num_classes)]
    present = [t for t in tags if t in scalars]
    if not present:
        return {}
    steps = sorted(set.intersection(*(set(scalars[t]) for t in present)))
    return {s: np.array([scalars[t][s] if t in scalars else np.nan for t in tags])
            for s in steps}


def main(argv):
    logging.set_verbosity(logging.WARNING)  # TensorBoard's reader logs every file it opens.
    if _INSPECT.value:
        if len(argv) > 1:
            sys.exit("error: --inspect prints step dumps; give no run directories with it")
        for i, path in enumerate(_INSPECT.value):
            try:
                dump = step_dumps.load(Path(path))
            except (FileNotFoundError, ValueError) as e:
                sys.exit(f"error: {e}")
            print(("\n" if i else "") + f"{path}\n" + step_dumps.describe(dump))
        return
    if len(argv) < 2:
        sys.exit("usage: python -m tapeloop.trainers.report RUN_DIR [RUN_DIR ...] [--csv PATH] "
                 "[--plot PNG] [--drop CLASS], or --inspect STEP_DUMP.npz[,...]")
    try:
        runs = [summarize(Path(d)) for d in argv[1:]]
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(comparison(runs))
    if _DROP.value is not None:
        if any(_DROP.value >= len(r.test_class_accuracy) for r in runs):
            fewest = min(len(r.test_class_accuracy) for r in runs)
            sys.exit(f"error: --drop {_DROP.value}: the runs have classes 0..{fewest - 1}")
        print()
        for r in runs:
            print(largest_drop(r, _DROP.value))
    for flag, payload, done in ((_PLOT, lambda: plot(runs), "drawn in"),
                                (_CSV, lambda: curves_csv(runs).encode(), "written to")):
        if flag.value:
            try:
                Path(flag.value).write_bytes(payload())
            except OSError as e:
                sys.exit(f"error: --{flag.name} {flag.value} cannot be written: "
                         f"{e.strerror or e}")
            print(f"\nprobe curves {done} {flag.value}")


def run():
    """Entry point of the `tapeloop-report` console script."""
    from tapeloop.trainers import cli

    cli.show_in_helpshort(__name__)
    app.run(main)


if __name__ == "__main__":
    run()
