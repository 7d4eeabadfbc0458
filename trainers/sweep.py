"""Runs a grid of training runs and tabulates them: `python -m tapeloop.trainers.sweep`.

    python -m tapeloop.trainers.sweep --flagfile=trainers/configs/mnist_sorted.flags \
        --sweep=learning_rate=1e-4,1e-3,1e-2 --run_name=lr --parallel=2

Every training flag is accepted (and checked) here as the base of all points;
each `--sweep=NAME=V1,V2,...` adds an axis. Point runs go to LOGDIR/RUN_NAME/POINT
(each one a `trainers.train` process, its output in POINT.log), so
`tensorboard --logdir LOGDIR/RUN_NAME` compares them in the HParams dashboard.
Re-running the same command skips finished points and resumes interrupted ones.
At the end a table (test accuracy, average forgetting, BWT, per-class test
accuracy) is printed and saved as LOGDIR/RUN_NAME/results.csv.
"""

import ctypes
import datetime
import hashlib
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags

from tapeloop.trainers import cli
from tapeloop.trainers.records import config as config_lib, run_dirs, tables
from tapeloop.trainers import train  # Defines the training flags: the base of every point.

FLAGS = flags.FLAGS
_SWEEP = flags.DEFINE_multi_string(
    "sweep", None, "NAME=V1,V2,...: a training flag and the values to try; several --sweep "
    "flags make a grid (every combination).")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "Points trained at the same time, each in its "
                                 "own process.", lower_bound=1)
_SCRIPT = flags.DEFINE_string(
    "script", "tapeloop.trainers.train", "The script every point runs: a module "
    "(package.module, run as python -m) or a .py file; any script that takes tapeloop's flags "
    "(cli.define_flags()), e.g. one of examples/.")
_SCRIPT_ARGS = flags.DEFINE_string(
    "script_args", "", "More arguments for every point's script, as one string: the "
    "script's own flags, e.g. --script_args='--width=64'.")
MAX_POINT_NAME = 200  # characters of a point's directory name (a file name holds 255 bytes)
# Flags of this script, or owned by it, never passed on to a point's run.
_OWN = {"sweep", "parallel", "logdir", "run_name", "flagfile", "undefok", "script",
        "script_args"}


def parse_axes(specs: list[str]) -> list[tuple[str, list[str]]]:
    """`["lr=1,2", "order=a"]` -> [("lr", ["1", "2"]), ("order", ["a"])], checked.

    Raises:
      ValueError: a spec that is not NAME=V1,..., a name that is not a training flag
        or given twice, or a value its flag rejects.
    """
    axes, seen = [], set()
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().lstrip("-")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name or not items:
            raise ValueError(f"--sweep={spec}: expected NAME=V1,V2,... e.g. "
                             "--sweep=learning_rate=1e-4,1e-3")
        if name in _OWN or name not in FLAGS or name in {"help", "helpshort", "helpfull"}:
            raise ValueError(f"--sweep={spec}: {name!r} is not a training flag "
                             "(tapeloop-train --helpshort lists them)")
        if name in seen:
            raise ValueError(f"--sweep={spec}: {name} is swept twice")
        repeated = sorted({v for v in items if items.count(v) > 1})
        if repeated:
            raise ValueError(f"--sweep={spec}: {', '.join(repeated)} is given twice (two "
                             "processes would train one run directory)")
        seen.add(name)
        axes.append((name, items))
    return axes


def grid(axes: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
    """Every combination of the axes' values, first axis slowest."""
    names = [n for n, _ in axes]
    return [dict(zip(names, values)) for values in itertools.product(*(v for _, v in axes))]


def point_name(point: dict[str, str]) -> str:
    """A directory name for a point, e.g. `learning_rate=1e-4,order=sorted`.

    A value holding "/" (a path) has it replaced by "_", and a name longer than
    `MAX_POINT_NAME` is cut: such names end in a hash of the whole point, so that two
    points (`a/b` and `a_b`) never share a directory.
    """
    name = ",".join(f"{k}={v}" for k, v in point.items())
    if "/" not in name and len(name) <= MAX_POINT_NAME:
        return name or "base"
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name.replace('/', '_')[:MAX_POINT_NAME - 11]}-{digest}"


def point_config(point: dict[str, str]) -> config_lib.Config:
    """The `Config` the point's run will have: base flags with the point's values.

    Raises:
      ValueError: a value a flag or the config rejects.
    """
    # absl's Flag.parse() parses and counts the flag as given (its public `present`):
    # both are put back, so the point's values never count as the command line's.
    saved = {name: (FLAGS[name].value, FLAGS[name].present) for name in point}
    try:
        for name, value in point.items():
            try:
                FLAGS[name].parse(value)
            except flags.Error as e:
                raise ValueError(f"--{name}={value}: {e}") from None
        for name in point:
            for validator in FLAGS[name].validators:
                try:
                    validator.verify(FLAGS)
                except flags.ValidationError as e:
                    raise ValueError(f"--{name}={point[name]}: {e}") from None
        return train.config_from_flags(given=frozenset(point))
    finally:
        for name, (value, present) in saved.items():
            FLAGS[name].value, FLAGS[name].present = value, present


def script_command(script: str) -> list[str]:
    """`python -m MODULE` or `python FILE` for `--script`."""
    if script.endswith(".py"):
        return [sys.executable, script]
    return [sys.executable, "-m", script]


def base_args(point: dict[str, str]) -> list[str]:
    """The training flags given to this script (not swept), as command-line arguments."""
    module_flags = FLAGS.get_flags_for_module(train)
    return [f.serialize() for f in module_flags
            if f.present and f.name not in _OWN and f.name not in point]


def finished(run_dir: Path, config: config_lib.Config) -> bool:
    """True if `run_dir` holds this point's run, done to its last epoch."""
    try:
        results = json.loads((run_dir / "results.json").read_text())
        saved = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return not config.differences(saved) and results.get("epochs") == config.epochs


def seed_summary(rows: list[tuple[dict, dict]]) -> str | None:
    """Mean ± SEM over the `seed` axis of each other point: test accuracy, min-ACC,
    WC-ACC, and seconds per run (relative to `remedy=none`'s when there is one).
    None unless `seed` is swept."""
    if not rows or "seed" not in rows[0][0]:
        return None
    groups: dict[str, list[dict]] = {}
    for point, result in rows:
        key = ",".join(f"{k}={v}" for k, v in point.items() if k != "seed") or "base"
        groups.setdefault(key, []).append(result)

    def mean_sem(values):
        values = [v for v in values if v is not None and v == v]
        if not values:
            return "-"
        mean = sum(values) / len(values)
        if len(values) == 1:
            return f"{100 * mean:.2f}"
        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        return f"{100 * mean:.2f} ± {100 * (var / len(values)) ** 0.5:.2f}"

    seconds = {k: sum(sum(r.get("epoch_seconds") or [0]) for r in g) / len(g)
               for k, g in groups.items()}
    base = next((v for k, v in seconds.items() if "remedy=none" in k.split(",")), None)
    body = [[key, str(len(g)), mean_sem([r["test_accuracy"] for r in g]),
             mean_sem([r.get("min_acc") for r in g]), mean_sem([r.get("wc_acc") for r in g]),
             f"{seconds[key]:.0f}" + (f" ({seconds[key] / base:.2f}x)" if base else "")]
            for key, g in groups.items()]
    return tables.format_table(["point", "seeds", "test acc %", "min-ACC %", "WC-ACC %",
                                "s/run"], body)


def results_table(rows: list[tuple[str, dict]]) -> tuple[str, str]:
    """(text table, CSV) of the points' results: overall, forgetting, BWT, per class."""
    num_classes = max(len(r["test_class_accuracy"]) for _, r in rows)
    head = ["point", "test_accuracy", "average_forgetting", "bwt"] + [
        f"class_{c}" for c in range(num_classes)]

    cell = tables.number
    body = [[name, cell(r["test_accuracy"]), cell(r.get("average_forgetting")),
             cell(r.get("bwt"), signed=True)] + [cell(v) for v in r["test_class_accuracy"]]
            for name, r in rows]
    csv = "\n".join(",".join(x) for x in [head] + [[f'"{b[0]}"'] + b[1:] for b in body]) + "\n"
    short = ["point", "test acc", "avg forgetting", "BWT"] + [str(c) for c in range(num_classes)]
    return tables.format_table(short, body), csv


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]} (flags start with --)")
    try:
        axes = parse_axes(_SWEEP.value or [])
        points = grid(axes)
        configs = [point_config(p) for p in points]
    except ValueError as e:
        sys.exit(f"error: {e}")
    if not axes:
        sys.exit("error: give at least one --sweep=NAME=V1,V2,...")
    for i, config in enumerate(configs):
        same = [point_name(points[j]) for j in range(i) if configs[j] == config]
        if same:
            sys.exit(f"error: points {same[0]} and {point_name(points[i])} are the same run "
                     "(the same settings): give each value once")
    if _SCRIPT.value.endswith(".py") and not Path(_SCRIPT.value).is_file():
        sys.exit(f"error: --script={_SCRIPT.value}: no such file")
    try:
        script_args = shlex.split(_SCRIPT_ARGS.value)
    except ValueError as e:
        sys.exit(f"error: --script_args={_SCRIPT_ARGS.value}: {e} (quote it as a shell would)")
    try:
        sweep_dir = cli.run_dir_in(
            FLAGS.logdir, FLAGS.run_name or f"sweep_{datetime.datetime.now():%Y%m%d-%H%M%S}")
    except ValueError as e:
        sys.exit(f"error: {e}")
    if sweep_dir.exists() and not sweep_dir.is_dir():
        sys.exit(f"error: {sweep_dir} is a file, not a directory")
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        sys.exit(f"error: {sweep_dir} cannot be created: {e.strerror or e}")
    names = [point_name(p) for p in points]
    total = len(points)
    print(f"sweep of {total} points in {sweep_dir} ({_PARALLEL.value} at a time); "
          f"tensorboard --logdir {sweep_dir}", flush=True)
    todo = []
    for i, (point, name, config) in enumerate(zip(points, names, configs)):
        if finished(sweep_dir / name, config):
            print(f"[{i + 1}/{total}] {name}: finished before, skipped", flush=True)
        else:
            todo.append(i)
    try:
        failed = _run_points(todo, points, names, sweep_dir, script_args)
    except KeyboardInterrupt as stopped:
        lines = [f"  {names[i]}: " + (f"checkpoint at step {step}" if step is not None else
                                      "no checkpoint yet (it starts again)")
                 for i, step in stopped.args[0]] if stopped.args else []
        sys.exit("\ninterrupted; the points that were running:\n" + "\n".join(lines)
                 + "\nrun the same command again to continue them (finished points are "
                 "skipped)")
    done = [(n, json.loads((sweep_dir / n / "results.json").read_text()))
            for n in names if n not in failed and (sweep_dir / n / "results.json").is_file()]
    if done:
        text, csv = results_table(done)
        (sweep_dir / "results.csv").write_text(csv)
        print(f"\n{text}\n\nsaved {sweep_dir / 'results.csv'}")
        by_seed = seed_summary([(p, r) for p, n in zip(points, names) for m, r in done
                                if m == n])
        if by_seed:
            (sweep_dir / "summary.txt").write_text(by_seed + "\n")
            print(f"\nover seeds (mean ± SEM):\n{by_seed}\n\nsaved {sweep_dir / 'summary.txt'}")
    if failed:
        sys.exit(f"error: {len(failed)} of {total} points failed: {', '.join(failed)} (the "
                 f"reason is above and in {sweep_dir}/POINT.log; once it is fixed, the same "
                 "command retries them and skips the finished ones)")


def _run_points(todo: list[int], points, names, sweep_dir: Path,
                script_args: list[str]) -> list[str]:
    """Trains the points `todo`, `--parallel` at a time; returns the names that failed.

    On Ctrl-C the children (same process group) get the signal too and checkpoint;
    this waits for them before passing the KeyboardInterrupt on.
    """
    total = len(points)
    running, failed = {}, []
    try:
        while todo or running:
            while todo and len(running) < _PARALLEL.value:
                i = todo.pop(0)
                args = base_args(points[i]) + [f"--{k}={v}" for k, v in points[i].items()]
                command = [*script_command(_SCRIPT.value), *args,
                           *script_args,
                           f"--logdir={sweep_dir}", f"--run_name={names[i]}"]
                _wait_for_lock(sweep_dir / names[i])
                log = open(sweep_dir / f"{names[i]}.log", "a")
                running[i] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                               preexec_fn=_die_with_parent), log,
                              time.perf_counter())
                print(f"[{i + 1}/{total}] {names[i]}: started", flush=True)
            time.sleep(0.2)
            for i, (proc, log, start) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[i]
                seconds = time.perf_counter() - start
                results = sweep_dir / names[i] / "results.json"
                if proc.returncode == 0 and results.is_file():
                    r = json.loads(results.read_text())
                    print(f"[{i + 1}/{total}] {names[i]}: test accuracy {r['test_accuracy']:.4f}"
                          + (f", average forgetting {r['average_forgetting']:.4f}"
                             if r.get("average_forgetting") is not None else "")
                          + f" ({seconds:.0f} s)", flush=True)
                else:
                    lines = (sweep_dir / f"{names[i]}.log").read_text().strip().splitlines()
                    why = next((x for x in reversed(lines) if x.startswith("error")),
                               lines[-1] if lines else "no output")
                    failed.append(names[i])
                    print(f"[{i + 1}/{total}] {names[i]}: FAILED (exit {proc.returncode}): {why}",
                          flush=True)
    except KeyboardInterrupt:
        for proc, log, _ in running.values():
            proc.wait()
            log.close()
        raise KeyboardInterrupt([(i, run_dirs.latest_step(sweep_dir / names[i]))
                                 for i in running]) from None
    return failed


LOCK_WAIT_SECONDS = 300


def _wait_for_lock(run_dir: Path) -> None:
    """Waits while another process (a killed sweep's last child) still trains `run_dir`."""
    holder = run_dirs.lock_holder(run_dir)
    if holder is None:
        return
    print(f"{run_dir.name}: waiting for PID {holder}, still training it, to stop", flush=True)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while run_dirs.lock_holder(run_dir) is not None:
        if time.monotonic() > deadline:
            sys.exit(f"error: {run_dir} is still in use by PID {holder} after "
                     f"{LOCK_WAIT_SECONDS} s: stop it, then run the same command again")
        time.sleep(0.5)


def _die_with_parent() -> None:
    """In a point's process: get SIGTERM when the sweep dies, even by SIGKILL (Linux).

    SIGTERM makes the point save a checkpoint and stop, so no orphan keeps training
    while a rerun of the sweep starts the point again.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # The sweep died before prctl took effect.
            os.kill(os.getpid(), signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def run():
    """Entry point of the `tapeloop-sweep` console script."""
    cli.show_in_helpshort(__name__)
    app.run(main)


if __name__ == "__main__":
    run()
