"""What a user times: whole processes, start to exit, wall and CPU time.

`python -m tapeloop.trainers.bench_whole` (the headline of `make bench`) starts each
variant as its own process, alternating them round by round, each once with
`--short_epochs` and once with `--long_epochs`:

  default      `tapeloop-train --flagfile=trainers/configs/mnist_shuffled.flags`, as
               `make demo` runs it: every step logged, the probe and drift every 10
               steps, validation and test evaluated every epoch, checkpoints
  logging_off  the same with `--validation_split=0 --max_train_examples=54000
               --nolog_every_step --eval_every_steps=0 --notest_every_epoch
               --checkpoint_every_steps=0` (the same 54,000 training images, nothing else)
  default_xla, logging_off_xla  the two above with `--jit_compile --intra_op_threads=0`:
               full batches trained in XLA programs, which use the cores through
               TensorFlow's intra-op threads (the plain graph uses them through
               `--batch_splits`)
  keras_fit    the tutorial's `model.fit(validation_split=0.1)` (`trainers/peers.py`)
  keras_fit_spe  the same with `steps_per_execution` = an epoch's steps
  jax_scan     a JAX + optax `lax.scan` loop of the same model (skipped, saying so, when
               JAX is not installed: `pip install 'tapeloop[bench]'`)

Per variant it reports the whole process at `--long_epochs` (wall and CPU seconds:
what `time` prints), the time per epoch ((T(long) - T(short)) / (long - short): start-up
and tracing cancel), the start-up (T(short) minus its epochs), and for `default` the
time from the process's start to its first logged steps (the first compiled call's
rows in the event file). Medians over rounds, with min-max; ratios between variants
are per round, then their median. Machines are noisy: read the ratios.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags, logging

from tapeloop.trainers import peers
from tapeloop.trainers.records import events

CONFIGS = Path(__file__).parent / "configs"
TRAIN = [sys.executable, "-m", "tapeloop.trainers.train",
         f"--flagfile={CONFIGS / 'mnist_shuffled.flags'}"]
# No validation split, and the same 54,000 training images as the others train on.
LOGGING_OFF = ["--validation_split=0", "--max_train_examples=54000", "--nolog_every_step",
               "--eval_every_steps=0", "--notest_every_epoch", "--checkpoint_every_steps=0"]
JIT = ["--jit_compile", "--intra_op_threads=0"]
PEER = [sys.executable, "-m", "tapeloop.trainers.peers"]
VARIANTS = ("default", "logging_off", "default_xla", "logging_off_xla", "keras_fit",
            "keras_fit_spe", "jax_scan")
# (ratio name, numerator, denominator, measure)
RATIOS = (("default / keras_fit, CPU per epoch", "default", "keras_fit", "cpu_per_epoch"),
          ("default / keras_fit, wall per epoch", "default", "keras_fit", "wall_per_epoch"),
          ("default / keras_fit, whole process wall", "default", "keras_fit", "wall"),
          ("logging_off / jax_scan, wall per epoch", "logging_off", "jax_scan", "wall_per_epoch"),
          ("default / jax_scan, wall per epoch", "default", "jax_scan", "wall_per_epoch"),
          ("default / jax_scan, whole process wall", "default", "jax_scan", "wall"),
          ("default_xla / keras_fit, CPU per epoch", "default_xla", "keras_fit", "cpu_per_epoch"),
          ("logging_off_xla / jax_scan, wall per epoch", "logging_off_xla", "jax_scan",
           "wall_per_epoch"),
          ("default_xla / jax_scan, wall per epoch", "default_xla", "jax_scan", "wall_per_epoch"),
          ("default_xla / default, wall per epoch", "default_xla", "default", "wall_per_epoch"),
          ("logging_off_xla / logging_off, wall per epoch", "logging_off_xla", "logging_off",
           "wall_per_epoch"))

FLAGS = flags.FLAGS


def define_flags() -> None:
    """This script's flags, defined when it runs (not on import: `bench` shares names)."""
    flags.DEFINE_list("variants", list(VARIANTS), f"Which of {VARIANTS} to time.")
    flags.DEFINE_integer("rounds", 5, "Rounds; each runs every variant twice (short and long), "
                         "alternating.", lower_bound=1)
    flags.DEFINE_integer("short_epochs", 2, "Epochs of the short process.", lower_bound=1)
    flags.DEFINE_integer("long_epochs", 8, "Epochs of the long process (the whole-process row).",
                         lower_bound=2)
    flags.DEFINE_string("json", None, "Also write every measurement to this file.")


def command(variant: str, epochs: int, logdir: str) -> list[str]:
    """The command line of `variant` training `epochs` epochs (tapeloop's into `logdir`)."""
    base, xla = variant.removesuffix("_xla"), variant.endswith("_xla")
    if base in ("default", "logging_off"):
        return TRAIN + [f"--epochs={epochs}", f"--logdir={logdir}", "--run_name=run",
                        "--overwrite"] + (LOGGING_OFF if base == "logging_off" else []) + (
                            JIT if xla else [])
    return PEER + [variant, f"--epochs={epochs}"]


def time_process(variant: str, epochs: int) -> dict:
    """Runs `variant` for `epochs` epochs as a process: wall and CPU seconds."""
    with tempfile.TemporaryDirectory() as logdir:
        cmd = command(variant, epochs, logdir)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started, start = time.time(), time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode:
            sys.exit(f"error: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
        first = (events.wall_time(Path(logdir) / "run", "train/loss", 0)
                 if variant.startswith("default") else None)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"variant": variant, "epochs": epochs, "wall": wall, "cpu": cpu,
            "first_logged_step": None if first is None else first - started}


def per_round(runs: list[dict], short: int, long: int) -> dict:
    """`{variant: [{measure: value}, one per round]}`: the long process's wall and CPU,
    per-epoch wall and CPU from the two processes of the round, start-up, first step."""
    out = {}
    for r in runs:
        if r["epochs"] != long:
            continue
        pair = next(s for s in runs if s["variant"] == r["variant"] and s["epochs"] == short
                    and s["round"] == r["round"])
        wall_epoch = (r["wall"] - pair["wall"]) / (long - short)
        out.setdefault(r["variant"], []).append({
            "wall": r["wall"], "cpu": r["cpu"], "wall_per_epoch": wall_epoch,
            "cpu_per_epoch": (r["cpu"] - pair["cpu"]) / (long - short),
            "startup": pair["wall"] - short * wall_epoch,
            "first_logged_step": pair["first_logged_step"]})
    return out


def summarize(rounds: dict) -> dict:
    """Median, min and max of every measure per variant, and the ratios (per round, then
    their median, min and max)."""
    def stats(values):
        values = [v for v in values if v is not None]
        return ({"median": float(np.median(values)), "min": min(values), "max": max(values)}
                if values else None)

    table = {v: {m: stats([r[m] for r in rs]) for m in rs[0]} for v, rs in rounds.items()}
    ratios = {}
    for name, a, b, measure in RATIOS:
        if a in rounds and b in rounds:
            ratios[name] = stats([x[measure] / y[measure] for x, y in zip(rounds[a], rounds[b])])
    return {"variants": table, "ratios": ratios}


def format_report(summary: dict, *, rounds: int, short: int, long: int) -> str:
    def cell(s, digits=3):
        return "-" if s is None else (f"{s['median']:.{digits}f} "
                                      f"({s['min']:.{digits}f}-{s['max']:.{digits}f})")

    lines = [f"| variant | whole process, {long} epochs: wall s | CPU s | wall s/epoch | "
             "CPU s/epoch | start-up s | to first logged steps s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for variant, s in summary["variants"].items():
        lines.append(f"| {variant} | {cell(s['wall'], 2)} | {cell(s['cpu'], 2)} | "
                     f"{cell(s['wall_per_epoch'])} | {cell(s['cpu_per_epoch'])} | "
                     f"{cell(s['startup'], 2)} | {cell(s['first_logged_step'], 2)} |")
    lines += ["", "| ratio | median (min-max over rounds) |", "| --- | --- |"]
    lines += [f"| {name} | {cell(s, 2)} |" for name, s in summary["ratios"].items()]
    lines.append(f"\n({rounds} rounds; per epoch = (T({long} epochs) - T({short} epochs)) / "
                 f"{long - short}; {os.cpu_count()} cores)")
    return "\n".join(lines)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # TensorBoard's reader logs every file it opens.
    unknown = [v for v in FLAGS.variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"error: unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    short, long, rounds = FLAGS.short_epochs, FLAGS.long_epochs, FLAGS.rounds
    if long <= short:
        sys.exit(f"error: --long_epochs ({long}) must be more than --short_epochs ({short})")
    variants = list(FLAGS.variants)
    if "jax_scan" in variants and not peers.has_jax():
        print("jax_scan: skipped, JAX is not installed (pip install 'tapeloop[bench]')")
        variants.remove("jax_scan")
    runs = []
    for round_index in range(rounds):
        for variant in variants:
            for epochs in (short, long):
                result = dict(time_process(variant, epochs), round=round_index)
                runs.append(result)
                print(f"round {round_index + 1}/{rounds} {variant:<14} {epochs:>2} epochs: "
                      f"wall {result['wall']:.2f} s, CPU {result['cpu']:.2f} s", flush=True)
    summary = summarize(per_round(runs, short, long))
    print()
    print(format_report(summary, rounds=rounds, short=short, long=long))
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"runs": runs, "summary": summary}, f, indent=2)


if __name__ == "__main__":
    define_flags()
    app.run(main)
