"""Epoch time of tapeloop next to Keras `model.fit`, measured in one invocation.

`python -m tapeloop.trainers.bench` (or `make bench`) runs every variant in its own process,
alternating them round by round (A B C D, A B C D, ...), on the same data (the
first 54,000 MNIST training images), the same model (784-150-100-10, dropout 0.5,
Adam 1e-3) and batch 100:

  keras_fit      (a) Keras `model.fit`, default settings
  keras_fit_spe  (b) Keras `model.fit`, steps_per_execution = the steps of one epoch
  tapeloop       (c) tapeloop with all logging off
  tapeloop_full  (d) tapeloop with per-step scalars, a 1,000-image probe and weight
                     drift every 10 steps, writing events to a temporary directory
                     (no mid-epoch checkpoints by default: (a)-(c) save nothing
                     either; --checkpoint_every_steps=500 adds tapeloop's default)
  tapeloop_xla   (e) not (yet) a way tapeloop trains: tapeloop's model, training step
                     and fused Adam, the epoch as ONE `jit_compile=True` call over the
                     data held as one tensor (the order from the shuffled pipeline's own
                     stateless shuffle, passed in as indices), dropout drawn with
                     "threefry", per-step loss, accuracy and gradient norm returned as
                     loop outputs and copied to the host; logging off. The bound the
                     fast path of issue 27 is after.

`--model=cnn` times tapeloop's built-in CNN instead (the same in every variant; no FLOP
floor, which counts dense layers only).

Like Keras's `fit` without validation data, (c) and (d) evaluate nothing between
epochs: the test split once, after the last (--test_every_epoch puts tapeloop's
default per-epoch evaluation back into the timed span).

Each process trains `--epochs` epochs; the first is warm-up (tracing, caches) and
is not counted. The report gives medians, min-max, ratios, samples per second,
each variant's peak resident memory, and the FLOP floor: the model's training
FLOPs per epoch divided by a dense-matmul rate measured in the same invocation.
Machines are noisy: compare the ratios, never one wall time.
"""

import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

VARIANTS = ("keras_fit", "keras_fit_spe", "tapeloop", "tapeloop_full", "tapeloop_xla")
TRAIN_EXAMPLES = 54_000
HIDDEN = (150, 100)

_VARIANTS = flags.DEFINE_list("variants", list(VARIANTS), f"Which of {VARIANTS} to time.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds; each round runs every variant once, "
                               "alternating.", lower_bound=1)
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Epochs per process; the first is warm-up and "
                               "not counted.", lower_bound=2)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 100, "Training batch size.", lower_bound=1)
_HIDDEN = flags.DEFINE_list("hidden_sizes", [str(h) for h in HIDDEN], "Hidden layer widths.")
_TRAIN_EXAMPLES = flags.DEFINE_integer("train_examples", TRAIN_EXAMPLES, "Training images per "
                                       "epoch (the first N of MNIST's training split).",
                                       lower_bound=100)
_CHECKPOINT_EVERY = flags.DEFINE_integer(
    "checkpoint_every_steps", 0, "tapeloop_full: also checkpoint every N steps (0: only at "
    "epoch ends, outside the timed span; tapeloop-train's default is 500).", lower_bound=0)
_TEST_EVERY_EPOCH = flags.DEFINE_boolean(
    "test_every_epoch", False, "tapeloop: also evaluate the 10,000 test images after every "
    "epoch, inside the timed span (Keras's fit in (a) and (b) evaluates nothing; off, (c) and "
    "(d) evaluate them once, after the last epoch).")
_EVAL_EVERY = flags.DEFINE_integer("eval_every_steps", 10, "tapeloop_full: probe and drift "
                                   "cadence.", lower_bound=1)
_STEPS_PER_LOOP = flags.DEFINE_integer("steps_per_loop", None, "tapeloop: steps per compiled "
                                       "call (default: tapeloop's default).", lower_bound=1)
_BATCH_SPLITS = flags.DEFINE_integer("batch_splits", None, "tapeloop: batch splits (default: "
                                     "tapeloop's default).", lower_bound=1)
_INTRA = flags.DEFINE_integer("intra_op_threads", None, "tapeloop: threads per op (default: "
                              "tapeloop's default; 0: TensorFlow's).", lower_bound=0)
_SCALING = flags.DEFINE_boolean("scaling", False, "Instead of the four-way comparison, time "
                                "(c) and (d) over batch sizes, widths, probe cadences, data "
                                "sizes and tapeloop's own settings; print Markdown tables.")
_PROFILE = flags.DEFINE_boolean("profile", False, "Instead, trace one steady epoch of (c), and "
                                "the second epoch of the default run (every instrument on), "
                                "with tf.profiler and print where their op time goes, by op "
                                "type.")
_JSON = flags.DEFINE_string("json", None, "Also write the raw measurements to this file.")
_MODEL = flags.DEFINE_enum("model", "mlp", ("mlp", "cnn"), "The model every variant trains: "
                           "the tutorial's MLP (--hidden_sizes) or tapeloop's built-in CNN.")
_WORKER = flags.DEFINE_enum("worker", None, VARIANTS, "Internal: time one variant in this "
                            "process and print one JSON line.")


def training_flops_per_example(input_dim: int, hidden: tuple[int, ...], classes: int) -> int:
    """Multiply-adds of the dense layers x 2 FLOPs, x 3 for forward + backward."""
    widths = [input_dim, *hidden, classes]
    macs = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    return 2 * macs * 3


def matmul_flops_per_second(size: int = 2048, repeats: int = 10) -> float:
    """The best rate of a square float32 matmul on this machine, in FLOP/s."""
    import tensorflow as tf

    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    matmul().numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul().numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def _load_arrays(train_examples: int):
    from tapeloop.data import mnist, splits

    m, _ = mnist.load_mnist(download=False)
    return splits.mnist_splits(m, validation_split=0.0, max_train_examples=train_examples)


def _time_keras(data, *, steps_per_execution: int, epochs: int, batch_size: int,
                hidden: tuple[int, ...]) -> list[float]:
    import tensorflow as tf

    from tapeloop.trainers.engine import model as model_lib

    tf.keras.utils.set_random_seed(0)
    model = model_lib.build(model_lib.builder(_MODEL.value, hidden_sizes=hidden, dropout=0.5,
                                              seed=0), data.shape, 10)
    x = data.x_train.reshape(-1, *model_lib.model_input_shape(model, data.shape))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], steps_per_execution=steps_per_execution)
    seconds = []

    class Timer(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    model.fit(x, data.y_train, batch_size=batch_size, epochs=epochs, shuffle=True,
              verbose=0, callbacks=[Timer()])
    return seconds


def _time_tapeloop(data, *, full: bool, epochs: int, batch_size: int, hidden: tuple[int, ...],
                   eval_every: int, steps_per_loop: int | None, batch_splits: int | None,
                   intra_op_threads: int | None, checkpoint_every: int = 0,
                   test_every_epoch: bool = False) -> list[float]:
    from tapeloop.trainers.run import controller
    from tapeloop.trainers.records.config import Config

    extra = {k: v for k, v in (("steps_per_loop", steps_per_loop),
                               ("batch_splits", batch_splits),
                               ("intra_op_threads", intra_op_threads)) if v is not None}
    config = Config(model=_MODEL.value, order="shuffled", epochs=epochs, batch_size=batch_size,
                    hidden_sizes=hidden,
                    validation_split=0.0, log_every_step=full,
                    eval_every_steps=eval_every if full else 0,
                    checkpoint_every_steps=checkpoint_every, test_every_epoch=test_every_epoch,
                    **extra)
    if config.intra_op_threads and controller.configure_threads(config.intra_op_threads):
        raise RuntimeError("TensorFlow started before the thread setting could be applied")
    with tempfile.TemporaryDirectory() as tmp:
        results = controller.train_and_evaluate(
            config, os.path.join(tmp, "run") if full else None, data=data, verbose=False)
    return results["epoch_seconds"]


def _time_tapeloop_xla(data, *, epochs: int, batch_size: int, hidden: tuple[int, ...],
                       seed: int = 0) -> list[float]:
    """(e): the epoch as one XLA call of tapeloop's step; see the module's docstring."""
    import tensorflow as tf

    from tapeloop.data import pipelines
    from tapeloop.trainers.engine import model as model_lib, steps

    if _MODEL.value != "mlp":
        raise ValueError("tapeloop_xla times the MLP only")
    n = len(data.y_train)
    full, rest = divmod(n, batch_size)
    model = model_lib.build_mlp(input_dim=data.x_train.shape[1], hidden_sizes=hidden,
                                num_classes=10, dropout=0.5, seed=seed, dropout_alg="threefry")
    step = steps.make_train_step(model, tf.keras.optimizers.Adam(1e-3))
    images = tf.Variable(data.x_train, trainable=False)
    labels = tf.Variable(data.y_train.astype(np.int32), trainable=False)

    @tf.function(jit_compile=True)
    def run(indices):  # (steps, batch) rows of the data -> (steps, 3) per-step rows
        rows = tf.TensorArray(tf.float32, size=tf.shape(indices)[0], element_shape=[3])
        for i in tf.range(tf.shape(indices)[0]):
            m = step({"image": tf.gather(images, indices[i]),
                      "label": tf.gather(labels, indices[i]), "phase": tf.constant(0)})
            rows = rows.write(i, tf.stack([m["loss"], m["accuracy"], m["grad_norm"]]))
        return rows.stack()

    seconds = []
    for epoch in range(epochs):
        start = time.perf_counter()
        order = pipelines.shuffled_order(n, seed=seed, epoch=epoch)
        rows = [run(tf.reshape(order[:full * batch_size], [full, batch_size])).numpy()]
        if rest:
            rows.append(run(tf.reshape(order[full * batch_size:], [1, rest])).numpy())
        if not np.isfinite(np.concatenate(rows)).all():
            raise RuntimeError("tapeloop_xla: a step's loss or gradient was not finite")
        seconds.append(time.perf_counter() - start)
    return seconds


def run_worker(variant: str) -> dict:
    """Times one variant in this process; returns epoch seconds and peak memory."""
    data = _load_arrays(_TRAIN_EXAMPLES.value)
    if variant.startswith("keras"):
        # Keras trains on the float arrays only: the uint8 copy tapeloop's pipeline
        # uses is dropped, so it does not count in Keras's peak memory.
        data = dataclasses.replace(data, train_pixels=None, pixel_mean=None)
    hidden = tuple(int(h) for h in _HIDDEN.value)
    steps = -(-len(data.y_train) // _BATCH_SIZE.value)
    common = dict(epochs=_EPOCHS.value, batch_size=_BATCH_SIZE.value, hidden=hidden)
    if variant.startswith("keras"):
        seconds = _time_keras(data, steps_per_execution=steps if variant == "keras_fit_spe"
                              else 1, **common)
    elif variant == "tapeloop_xla":
        seconds = _time_tapeloop_xla(data, **common)
    else:
        seconds = _time_tapeloop(data, full=variant == "tapeloop_full",
                                 eval_every=_EVAL_EVERY.value,
                                 steps_per_loop=_STEPS_PER_LOOP.value,
                                 batch_splits=_BATCH_SPLITS.value, intra_op_threads=_INTRA.value,
                                 checkpoint_every=_CHECKPOINT_EVERY.value,
                                 test_every_epoch=_TEST_EVERY_EPOCH.value, **common)
    return {"variant": variant, "epoch_seconds": seconds, "samples": len(data.y_train),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _worker_command(variant: str, **overrides) -> list[str]:
    settings = {"epochs": _EPOCHS.value, "batch_size": _BATCH_SIZE.value,
                "hidden_sizes": ",".join(_HIDDEN.value), "train_examples": _TRAIN_EXAMPLES.value,
                "eval_every_steps": _EVAL_EVERY.value, "steps_per_loop": _STEPS_PER_LOOP.value,
                "batch_splits": _BATCH_SPLITS.value, "intra_op_threads": _INTRA.value,
                "checkpoint_every_steps": _CHECKPOINT_EVERY.value,
                "test_every_epoch": _TEST_EVERY_EPOCH.value, "model": _MODEL.value}
    settings.update(overrides)
    return [sys.executable, "-m", "tapeloop.trainers.bench", f"--worker={variant}"] + [
        f"--{k}={v}" for k, v in settings.items() if v is not None]


def _run_worker_process(variant: str, **overrides) -> dict:
    proc = subprocess.run(_worker_command(variant, **overrides), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: {variant} {overrides} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# (table, row label, worker overrides) for `--scaling`.
SCALING = [
    *[("batch size", str(b), {"batch_size": b}) for b in (32, 100, 256, 1024)],
    *[("hidden widths", w, {"hidden_sizes": w}) for w in ("150,100", "1024,1024")],
    ("probe cadence", "off", {"eval_every_steps": 10 ** 9}),
    *[("probe cadence", f"every {k}", {"eval_every_steps": k}) for k in (100, 10, 1)],
    *[("training data", f"{f}%", {"train_examples": TRAIN_EXAMPLES * f // 100})
      for f in (10, 50, 100)],
    *[("steps per compiled call", str(k), {"steps_per_loop": k}) for k in (1, 10, 50, 200, 540)],
    *[("batch splits", str(s), {"batch_splits": s}) for s in (1, 2)],
    *[("threads per op", "TensorFlow default" if t == 0 else str(t), {"intra_op_threads": t})
      for t in (0, 1)],
]


def run_scaling(rounds: int) -> str:
    """Times (c) and (d) for every row of `SCALING`, alternating; returns Markdown tables."""
    rows = []
    for table, label, overrides in SCALING:
        runs = []
        for _ in range(rounds):
            for variant in ("tapeloop", "tapeloop_full"):
                runs.append(_run_worker_process(variant, **overrides))
        medians = {v: float(np.median([s for r in runs if r["variant"] == v
                                        for s in r["epoch_seconds"][1:]]))
                   for v in ("tapeloop", "tapeloop_full")}
        rows.append((table, label, medians, runs[0]["samples"]))
        print(f"{table:>24}: {label:<18} (c) {medians['tapeloop']:.3f} s  "
              f"(d) {medians['tapeloop_full']:.3f} s", flush=True)
    out, current = [], None
    for table, label, m, samples in rows:
        if table != current:
            out += ["", f"### {table}", "",
                    f"| {table} | (c) s/epoch | (d) s/epoch | d/c | (c) samples/s "
                    "| (d) samples/s |",
                    "| --- | --- | --- | --- | --- | --- |"]
            current = table
        c, d = m["tapeloop"], m["tapeloop_full"]
        out.append(f"| {label} | {c:.3f} | {d:.3f} | {d / c:.2f} | {samples / c:,.0f} | "
                   f"{samples / d:,.0f} |")
    return "\n".join(out)


def summarize(runs: list[dict], *, flops_per_epoch: float, flop_rate: float) -> dict:
    """Medians, ranges, samples/s and memory per variant, plus the ratios."""
    out = {"variants": {}, "floor_seconds": flops_per_epoch / flop_rate if flops_per_epoch else 0,
           "flop_rate": flop_rate, "flops_per_epoch": flops_per_epoch}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == variant]
        steady = [s for r in mine for s in r["epoch_seconds"][1:]]  # first epoch: warm-up
        median = float(np.median(steady))
        out["variants"][variant] = {
            "median": median, "min": min(steady), "max": max(steady), "epochs": len(steady),
            "samples_per_second": mine[0]["samples"] / median,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in mine)}
    v = {k: s["median"] for k, s in out["variants"].items()}
    ratios = {}
    if "tapeloop" in v:
        for other, name in (("keras_fit", "c/a"), ("keras_fit_spe", "c/b")):
            if other in v:
                ratios[name] = v["tapeloop"] / v[other]
        if "tapeloop_full" in v:
            ratios["d/c"] = v["tapeloop_full"] / v["tapeloop"]
        if "tapeloop_xla" in v:
            ratios["e/c"] = v["tapeloop_xla"] / v["tapeloop"]
        if out["floor_seconds"]:
            ratios["c/floor"] = v["tapeloop"] / out["floor_seconds"]
    if "tapeloop_full" in v and "keras_fit" in v:  # every step logged, probe on, vs fit
        ratios["d/a"] = v["tapeloop_full"] / v["keras_fit"]
    out["ratios"] = ratios
    return out


def format_report(summary: dict, *, rounds: int, epochs: int) -> str:
    letters = dict(zip(VARIANTS, "abcde"))
    lines = [f"{'variant':<18}{'median s/epoch':>15}{'min-max':>17}{'samples/s':>12}"
             f"{'peak RSS MB':>13}"]
    for variant, s in summary["variants"].items():
        lines.append(f"({letters[variant]}) {variant:<14}{s['median']:>15.3f}"
                     f"{s['min']:>8.3f}-{s['max']:<8.3f}{s['samples_per_second']:>12,.0f}"
                     f"{s['peak_rss_mb']:>13,.0f}")
    if summary["floor_seconds"]:
        lines.append(f"FLOP floor: {summary['flops_per_epoch'] / 1e9:.1f} GFLOP per epoch at "
                     f"{summary['flop_rate'] / 1e9:.0f} GFLOP/s (2048x2048 matmul) = "
                     f"{summary['floor_seconds']:.3f} s/epoch")
    lines.append("ratios: " + ", ".join(f"{k} = {r:.2f}" for k, r in summary["ratios"].items()))
    lines.append(f"({rounds} rounds x {epochs - 1} steady epochs per variant, "
                 f"{os.cpu_count()} cores)")
    return "\n".join(lines)


def profile_op_types(logdir: str) -> str:
    """Traces one steady epoch of (c) and tabulates op self-time by op type.

    Uses TensorFlow's profiler and its converter to the "framework_op_stats" table
    (the data behind TensorBoard's profile plugin), so no plugin is needed.
    """
    import tensorflow as tf

    from tapeloop.data import pipelines
    from tapeloop.trainers.engine import loop, model as model_lib, steps
    from tapeloop.trainers.run import controller
    from tapeloop.trainers.records.config import Config

    config = Config()
    controller.configure_threads(config.intra_op_threads)
    data = _load_arrays(_TRAIN_EXAMPLES.value)
    model = model_lib.build_mlp(input_dim=784, hidden_sizes=config.hidden_sizes, num_classes=10,
                                dropout=config.dropout, seed=0)
    train_loop = loop.make_train_loop(
        steps.make_train_step(model, tf.keras.optimizers.Adam(1e-3),
                              batch_splits=config.batch_splits),
        tf.Variable(0, dtype=tf.int64), log_every_step=False)
    stream = iter(pipelines.shuffled(data.x_train, data.y_train, batch_size=100, seed=0,
                                     epochs=2))
    per_epoch = -(-len(data.y_train) // 100)

    def epoch():
        for k in range(0, per_epoch, config.steps_per_loop):
            train_loop(stream, tf.constant(min(config.steps_per_loop, per_epoch - k), tf.int64))

    epoch()  # warm-up: tracing
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    epoch()
    seconds = time.perf_counter() - start
    tf.profiler.experimental.stop()
    return op_type_table(logdir, f"one steady epoch of (c), profiled: {seconds:.3f} s wall")


def profile_default_run(logdir: str, train_examples: int) -> str:
    """Traces the second epoch of `make demo`'s default run (`tapeloop-train
    --flagfile=trainers/configs/mnist_shuffled.flags --profile_steps=A,B`, every
    instrument on) and tabulates its op self-time by op type."""
    from tapeloop.data import mnist, splits

    labels = mnist.load_mnist(download=False)[0].y_train[:train_examples]
    steps = -(-len(splits.holdout(labels, 0.1)[0]) // 100)  # the flagfile's split and batch
    command = [sys.executable, "-m", "tapeloop.trainers.train", "--flagfile=" + os.path.join(
        os.path.dirname(__file__), "configs", "mnist_shuffled.flags"), "--epochs=2",
        f"--max_train_examples={train_examples}", f"--profile_steps={steps},{2 * steps}",
        f"--logdir={logdir}", "--run_name=default"]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: the default run failed:\n{proc.stderr[-3000:]}")
    return op_type_table(os.path.join(logdir, "default"),
                         f"the default run's second epoch (steps {steps}-{2 * steps}), profiled "
                         f"(its process took {time.perf_counter() - start:.1f} s)")


def op_type_table(logdir: str, title: str) -> str:
    """Op self-time by op type of the profiler traces under `logdir`.

    Uses TensorFlow's converter to the "framework_op_stats" table (the data behind
    TensorBoard's profile plugin), so no plugin is needed.
    """
    import glob

    from tapeloop.trainers.engine import internals
    converter = internals.profiler_converter()
    if converter is None:
        return f"{title}: no op-type table ({internals.why_off()}; internals.py)"
    planes = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    raw, ok = converter.xspace_to_tools_data(planes, "framework_op_stats", {})
    if not ok:
        return f"profiler conversion failed: {raw[:200]!r}"
    table = json.loads(raw)[0]
    cols = [c["id"] for c in table["cols"]]
    by_type = {}
    for row in table["rows"]:
        cell = dict(zip(cols, (c["v"] if c else None for c in row["c"])))
        if cell["type"] == "IDLE":
            continue
        entry = by_type.setdefault(cell["type"], [0.0, 0])
        entry[0] += cell["total_self_time"]
        entry[1] += int(cell["occurrences"])
    busy = sum(v[0] for v in by_type.values())
    lines = [f"{title}, {busy / 1e6:.3f} s of op time on {os.cpu_count()} cores",
             f"{'op type':<38}{'ms':>9}{'share':>8}{'calls':>8}"]
    for name, (us, calls) in sorted(by_type.items(), key=lambda kv: -kv[1][0])[:12]:
        lines.append(f"{name:<38}{us / 1e3:>9.1f}{100 * us / busy:>7.1f}%{calls:>8}")
    return "\n".join(lines)


def main(argv):
    del argv
    if _PROFILE.value:
        with tempfile.TemporaryDirectory() as tmp:
            print(profile_op_types(tmp))
        with tempfile.TemporaryDirectory() as tmp:
            print()
            print(profile_default_run(tmp, _TRAIN_EXAMPLES.value))
        return
    if _WORKER.value:
        print(json.dumps(run_worker(_WORKER.value)), flush=True)
        return
    unknown = [v for v in _VARIANTS.value if v not in VARIANTS]
    if unknown:
        sys.exit(f"error: unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if _SCALING.value:
        print(run_scaling(_ROUNDS.value))
        return
    runs = []
    for round_index in range(_ROUNDS.value):
        for variant in _VARIANTS.value:
            result = _run_worker_process(variant)
            runs.append(result)
            steady = result["epoch_seconds"][1:]
            print(f"round {round_index + 1}/{_ROUNDS.value} {variant:<14} "
                  + " ".join(f"{s:.3f}" for s in steady) + " s/epoch", flush=True)
    hidden = tuple(int(h) for h in _HIDDEN.value)
    flops = (training_flops_per_example(784, hidden, 10) * runs[0]["samples"]
             if _MODEL.value == "mlp" else 0)
    summary = summarize(runs, flops_per_epoch=flops, flop_rate=matmul_flops_per_second())
    print()
    print(format_report(summary, rounds=_ROUNDS.value, epochs=_EPOCHS.value))
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump({"runs": runs, "summary": summary}, f, indent=2)


if __name__ == "__main__":
    app.run(main)
