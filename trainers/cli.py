"""absl flags for tapeloop, generated from the settings' one definition, and the run they drive.

Every `Config` field and every `RunControl` field (`config.setting`: default, help,
bounds, choices) becomes one flag. A script of the user's gets all of them, run
control included, with one call beside its own flags:

    from absl import app, flags
    import tapeloop

    tapeloop.define_flags()
    _WIDTH = flags.DEFINE_integer("width", 64, "My model's width.")

    def main(argv):
        tapeloop.run_from_flags(argv, model=lambda shape, classes: my_model(shape, classes,
                                                                             _WIDTH.value))

    if __name__ == "__main__":
        app.run(main)

`main` turns the flags into a `Config` and a `RunControl`, sets up devices, eager mode
and the debuggers, calls `controller.train_and_evaluate` and turns every expected
failure into one `error: ...` line and a non-zero exit.
"""

import dataclasses
import datetime
import errno
import json
import os
import re
import sys
import types
from pathlib import Path

from absl import flags

from tapeloop.trainers.records import config as config_lib, run_dirs
from tapeloop.trainers.records.config import setting

FLAGS = flags.FLAGS
MAX_INSPECT_STEPS = 1000  # Each dump is about 1 MB for the tutorial's MLP.


@dataclasses.dataclass(frozen=True)
class RunControl:
    """How one run is driven: where it writes, resuming, stopping, inspecting, debugging."""

    logdir: str = setting("logs", "TensorBoard root: runs go to LOGDIR/RUN_NAME.")
    run_name: str | None = setting(None, "Run directory under --logdir (default: "
                                   "DATASET_ORDER_TIMESTAMP).")
    overwrite: bool = setting(False, "Replace an existing run directory.")
    resume: bool = setting(
        True, "If the run directory holds a checkpointed run with the same settings, model "
        "and data, continue it from its latest checkpoint (--noresume refuses to touch it).")
    stop_after_steps: int = setting(
        0, "Run until the global step reaches N, save a checkpoint and stop (exit 0); the "
        "same command without this flag continues from N. 0: off.", lower=0)
    profile_steps: tuple[int, ...] | None = setting(
        None, "A,B: record a TensorFlow profiler trace of steps A to B into the run directory "
        "(view it in TensorBoard's Profile tab; pip install 'tapeloop[profile]').", items=int)
    inspect_steps: tuple[str, ...] | None = setting(
        None, "Steps to dump, e.g. 3412 or 100,200-205: each step's batch, logits, "
        "per-example losses, per-layer gradient norms and applied update go to "
        "RUN/inspect/step_N.npz (read it with tapeloop-report --inspect FILE). Step N is the "
        "batch whose train/loss TensorBoard shows at step N. Other steps stay compiled.",
        items=str)
    run_eagerly: bool = setting(
        False, "Run the very same step functions without tf.function, so print(), pdb "
        "breakpoints and Python asserts work inside a step (slow).")
    debugger_dump_dir: str | None = setting(
        None, "Write TensorBoard Debugger V2 dumps here "
        "(tf.debugging.experimental.enable_dump_debug_info, FULL_HEALTH mode, the last 1000 "
        "executions and graph ops kept): view with tensorboard --logdir DIR, Debugger V2 "
        "tab. Slow: combine with --stop_after_steps.")
    check_numerics: bool = setting(
        False, "tf.debugging.enable_check_numerics(): stop at the first op that produces a "
        "NaN or Inf, naming it (slow).")
    cpu_devices: int = setting(
        0, "Split this machine's CPU into N logical devices (for --strategy=mirrored on a "
        "machine without accelerators; 0: leave it whole).", lower=0)
    worker_hosts: tuple[str, ...] | None = setting(
        None, "multi_worker: host:port of every worker, in the same order on all of them "
        "(builds TF_CONFIG; without it TF_CONFIG is read).", items=str)
    task_index: int | None = setting(None, "multi_worker with --worker_hosts: this worker's "
                                     "index (0 is the chief).", lower=0)
    collective_timeout_seconds: float = setting(
        60.0, "multi_worker: a collective op waiting longer than this (e.g. on a dead "
        "worker) fails with an error instead of hanging (0: wait forever).", lower=0.0)


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


# Checks of single flags beyond bounds and choices, at parse time: (message, test).
_CHECKS = {
    "learning_rate": ("--learning_rate must be positive", lambda v: v > 0),
    "hidden_sizes": ("--hidden_sizes must be comma-separated positive integers, e.g. 150,100",
                     lambda v: bool(v) and all(h > 0 for h in v)),
    "profile_steps": ("--profile_steps must be two steps A,B with 0 <= A < B",
                      lambda v: v is None or (len(v) == 2 and 0 <= v[0] < v[1])),
    "inspect_steps": (f"--inspect_steps must be steps N or ranges A-B (A <= B), "
                      f"comma-separated, e.g. 100,200-205, at most {MAX_INSPECT_STEPS} steps",
                      lambda v: parse_steps(v) is not None),
    "class_order": ("--class_order must be comma-separated class ids, each once",
                    lambda v: v is None or (all(c >= 0 for c in v) and len(set(v)) == len(v))),
}


def define_flags(*, module_name: str | None = None) -> None:
    """Defines one absl flag per `Config` and `RunControl` field (once per process).

    `module_name`: the module the flags belong to, for `--helpshort` (default: the
    caller's). They are also listed by `--helpshort` of a console script.
    """
    module_name = module_name or sys._getframe(1).f_globals.get("__name__", "__main__")
    if module_name == "__main__":
        module_name = sys.argv[0]
    for cls in (config_lib.Config, RunControl):
        for field in dataclasses.fields(cls):
            if field.name not in FLAGS:
                _define(field, module_name)
    # A console script's main module is its wrapper: --helpshort lists this module's flags.
    for cls in (config_lib.Config, RunControl):
        for field in dataclasses.fields(cls):
            FLAGS.register_key_flag_for_module(sys.argv[0], FLAGS[field.name])


def show_in_helpshort(module_name: str) -> None:
    """Lists the flags `module_name` defines in `--helpshort` (a console script's wrapper)."""
    for flag in FLAGS.get_flags_for_module(module_name):
        FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def _define(field: dataclasses.Field, module_name: str) -> None:
    meta, name, default = field.metadata, field.name, field.default
    kwargs = {"module_name": module_name}
    bounds = {k: v for k, v in (("lower_bound", meta["lower"]), ("upper_bound", meta["upper"]))
              if v is not None}
    if meta["choices"]:
        flags.DEFINE_enum(name, default, meta["choices"], meta["help"], **kwargs)
    elif meta["items"] is not None:
        flags.DEFINE_list(name, None if default is None else [str(v) for v in default],
                          meta["help"], **kwargs)
        if meta["items"] is int:
            flags.register_validator(
                name, lambda v: v is None or all(s.strip().isdigit() for s in v),
                f"--{name} must be comma-separated non-negative integers")
    elif isinstance(default, bool):
        flags.DEFINE_boolean(name, default, meta["help"], **kwargs)
    elif isinstance(default, float):
        flags.DEFINE_float(name, default, meta["help"], **bounds, **kwargs)
    elif isinstance(default, int) or _base_type(field) is int:
        flags.DEFINE_integer(name, default, meta["help"], **bounds, **kwargs)
    else:
        flags.DEFINE_string(name, default, meta["help"], **kwargs)
    if name in _CHECKS:
        message, test = _CHECKS[name]
        flags.register_validator(name, _validator(field, test), message)


def _validator(field: dataclasses.Field, test):
    """`valid(raw flag value) -> bool`: `test` of the field's value; False if it cannot be made."""
    def valid(raw):
        try:
            return bool(test(_value(field, raw)))
        except (ValueError, TypeError):
            return False

    return valid


def _base_type(field: dataclasses.Field):
    kind = field.type
    if isinstance(kind, types.UnionType):
        kind = next(t for t in kind.__args__ if t is not type(None))
    return kind


def _value(field: dataclasses.Field, raw):
    """The field's value from a parsed flag (lists of strings become tuples of items)."""
    items = field.metadata["items"]
    if items is None or raw is None:
        return raw
    return tuple(items(v.strip()) for v in raw)


def from_flags(cls):
    """An instance of `cls` (`Config` or `RunControl`) from the parsed flags.

    Raises:
      ValueError: a value the class rejects (the message names it).
    """
    return cls(**{f.name: _value(f, FLAGS[f.name].value) for f in dataclasses.fields(cls)})


# Modules whose flags are not the script's own.
_LIBRARIES = ("absl", "tensorflow", "tensorboard", "keras", "tapeloop")


def script_flags() -> dict:
    """The values of the flags the running script defines itself (not tapeloop's or a
    library's), as JSON values: what config.json records, and a resume compares."""
    ours = {f.name for cls in (config_lib.Config, RunControl) for f in dataclasses.fields(cls)}
    out = {}
    for module, module_flags in FLAGS.flags_by_module_dict().items():
        if module.split(".")[0] in _LIBRARIES:
            continue
        out.update({flag.name: _json_value(flag.value) for flag in module_flags
                    if flag.name not in ours})
    return dict(sorted(out.items()))


def _json_value(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return list(value) if isinstance(value, (list, tuple)) else str(value)


def config_from_flags(*, own_model: bool = False, given: frozenset = frozenset(),
                      scenario=None) -> config_lib.Config:
    """The run's `Config`, from the parsed flags.

    With `--scenario`, every setting of its reference protocol (`scenarios.protocol`)
    that the command line (or a flag file) does not give takes the protocol's value;
    `own_model`: the script passes its own model, whose settings stay unset; `given`:
    settings given otherwise (a sweep's point), which the protocol leaves too;
    `scenario`: the script's own scenario object: a task sequence's settings
    (`scenarios.TASK_SEQUENCE`: its tasks once, no validation split) unless given.
    """
    values = {f.name: _value(f, FLAGS[f.name].value) for f in dataclasses.fields(config_lib.Config)}
    from tapeloop.trainers.extend import scenarios
    if values["scenario"] is not None and values["scenario"] in config_lib.SCENARIOS:
        defaults = scenarios.protocol(values["scenario"])
    elif scenario is not None and scenario.unit == "task":
        defaults = scenarios.TASK_SEQUENCE
    else:
        defaults = {}
    values.update({k: v for k, v in defaults.items()
                   if not FLAGS[k].present and k not in given
                   and not (own_model and k in config_lib.MODEL_SETTINGS)})
    return config_lib.Config(**values)


# What a script passes to `run_from_flags` (the rest of `train_and_evaluate`'s arguments
# come from the flags).
SCRIPT_ARGS = ("data", "model", "loss", "penalty", "train_step", "actions", "scenario",
               "remedies")


def run_from_flags(argv=(), **train_args) -> dict | None:
    """`main` for a user's script: `tapeloop.run_from_flags(argv, model=..., data=...)`."""
    return main(argv, **train_args)


def main(argv, **train_args) -> dict | None:
    """Trains one run from the parsed flags; every expected failure exits with one line.

    Args:
      argv: what `app.run` passes (no positional arguments are allowed).
      **train_args: passed on to `controller.train_and_evaluate` (`SCRIPT_ARGS`: data,
        model, loss, penalty, train_step, actions, scenario, remedies): what the user's
        script brings. `data` may be a
        function that makes the `Splits`: called here, its `DataError` is one line.

    Returns:
      The run's results (or None when it stopped early as asked).
    """
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {argv[1:]} (flags start with --)")
    unknown = sorted(set(train_args) - set(SCRIPT_ARGS))
    if unknown:
        sys.exit(f"error: run_from_flags takes {', '.join(SCRIPT_ARGS)}, not "
                 f"{', '.join(unknown)}"
                 + (" (the script's own flags are recorded as its script_flags already)"
                    if "script_flags" in unknown else
                    " (the run's control comes from the flags)"))
    try:
        config = config_from_flags(own_model=train_args.get("model") is not None,
                                   scenario=train_args.get("scenario"))
        control = from_flags(RunControl)
    except ValueError as e:
        sys.exit(f"error: {e}")
    run_dir = _run_dir(control) if control.run_name else None  # before TensorFlow loads
    # Imported here so that --help and flag errors answer without loading TensorFlow.
    import tensorflow as tf
    from absl import logging

    from tapeloop.data.mnist import DataError
    from tapeloop.trainers.run import controller

    logging.set_verbosity(logging.WARNING)  # TensorFlow logs every checkpoint save at INFO.
    try:
        strategy = _make_strategy(config, control)
    except ValueError as e:
        sys.exit(f"error: {e}")
    data = train_args.get("data")
    if callable(data):  # made here, devices set up: a DataError ends in one line too
        try:
            data = train_args["data"] = data()
        except DataError as e:
            sys.exit(f"error: {e}")
    if run_dir is None:
        data_name = re.sub(r"[^\w.-]+", "-", data.name) if data is not None else config.dataset
        passed = train_args.get("scenario")  # an object: named by its own name
        what = (passed.name if passed is not None and passed.unit == "class"
                else config.order if passed is None and config.scenario is None
                else f"{config.scenario or passed.name}_{'+'.join(config.remedy)}")
        run_dir = _run_dir(control, f"{data_name}_{what}_"
                                    f"{datetime.datetime.now():%Y%m%d-%H%M%S}")
    # MetricWriter compiles one small function per tag set; TensorFlow counts those as
    # retraces of one function and warns. Real retracing shows as workings/tracing/* scalars.
    tf.get_logger().addFilter(
        lambda record: "triggered tf.function retracing" not in record.getMessage())
    if control.run_eagerly:
        tf.config.run_functions_eagerly(True)
    if control.check_numerics:
        tf.debugging.enable_check_numerics()
    if control.debugger_dump_dir:
        tf.debugging.experimental.enable_dump_debug_info(
            control.debugger_dump_dir, tensor_debug_mode="FULL_HEALTH",
            circular_buffer_size=1000)
    try:
        return controller.train_and_evaluate(
            config, run_dir, overwrite=control.overwrite,
            resume=control.resume, stop_after_steps=control.stop_after_steps,
            profile_steps=control.profile_steps,
            inspect_steps=parse_steps(control.inspect_steps), strategy=strategy,
            check_numerics=control.check_numerics, script_flags=script_flags(), **train_args)
    except (DataError, controller.SetupError, controller.NonFiniteError) as e:
        sys.exit(f"error: {e}")
    except controller.StoppedAfter as e:
        print(e)
    except tf.errors.InvalidArgumentError as e:
        if not control.check_numerics:
            raise
        sys.exit(f"error: {controller.numerics_line(e.message)}")
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
            tf.errors.CancelledError) as e:
        if config.strategy != "multi_worker":
            raise
        what = (f"no answer from another worker within --collective_timeout_seconds="
                f"{control.collective_timeout_seconds:g}"
                if isinstance(e, tf.errors.DeadlineExceededError)
                else "another worker stopped or cannot be reached")
        node = re.search(r"node (\S+)", e.message)
        sys.exit(f"error: multi_worker: a collective op failed, {what} ({type(e).__name__}"
                 + (f" at {node.group(1)}" if node else "") + "); start every worker again "
                 "with the same command to resume from the last checkpoint")
    except controller.Interrupted as e:
        print(e, file=sys.stderr)
        sys.exit(128 + e.signum)
    except (OSError, tf.errors.OpError) as e:
        why = write_failure(e)
        if why is None and not (isinstance(e, tf.errors.ResourceExhaustedError)
                                or "OOM" in str(e)):
            raise
        step = run_dirs.latest_step(run_dir)
        kept = (f"the last checkpoint (step {step}) is intact" if step is not None
                else "no checkpoint was saved yet")
        if why is None:
            sys.exit(f"error: out of memory while training ({run_dirs.error_line(e)}); "
                     f"{kept}: use a smaller model or --batch_size, then run the same "
                     "command again")
        sys.exit(f"error: cannot write {run_dir}: {why}; {kept}: "
                 f"{_FIXES.get(why, 'fix that')}, then run the same command again to resume")
    return None


# What went wrong writing a file, as errno and TensorFlow's messages say it.
_WRITE_FAILURES = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                   errno.EROFS: "read-only file system", errno.EACCES: "permission denied"}
_FIXES = {"no space left on device": "free some space", "disk quota exceeded": "free some space",
          "read-only file system": "make it writable again",
          "permission denied": "make it writable again"}


def write_failure(error: Exception) -> str | None:
    """What kept a file from being written (e.g. "no space left on device"), or None."""
    if isinstance(error, OSError) and error.errno in _WRITE_FAILURES:
        return _WRITE_FAILURES[error.errno]
    text = str(getattr(error, "message", error)).lower()
    return next((why for why in _WRITE_FAILURES.values() if why in text), None)


def _run_dir(control: RunControl, default_name: str = "") -> Path:
    """The run directory of `control` (`run_dir_in`); a refused name exits with one line."""
    try:
        return run_dir_in(control.logdir, control.run_name or default_name)
    except ValueError as e:
        sys.exit(f"error: {e}")


def run_dir_in(logdir: str, run_name: str) -> Path:
    """`LOGDIR/RUN_NAME`, refused unless it lies strictly inside `logdir`.

    Raises:
      ValueError: an absolute run name, one with "." or ".." parts, a last part that
        starts with "." (the name of a lock, `run_dirs.lock_path`) or is longer than
        a file name may be, or one that leads outside `logdir` through a symbolic
        link or into a loop of them.
    """
    parts = run_name.rstrip("/").split("/")
    if run_name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"--run_name ({run_name!r}) must name a directory inside --logdir "
                         f"({logdir}): a relative name without '.' or '..' parts")
    if parts[-1].startswith("."):
        raise ValueError(f"--run_name ({run_name!r}) must not start with '.': tapeloop names "
                         "its locks .RUN_NAME.lock")
    if any(len(os.fsencode(p)) > run_dirs.NAME_MAX for p in parts):
        raise ValueError(f"--run_name ({run_name[:40]}...) has a part longer than "
                         f"{run_dirs.NAME_MAX} bytes, the longest file name")
    run_dir = Path(logdir) / run_name.rstrip("/")
    try:
        inside = Path(logdir).resolve() in run_dir.resolve().parents
    except (RuntimeError, OSError) as e:  # a loop of symbolic links
        raise ValueError(f"--run_name ({run_name!r}) in --logdir ({logdir}) cannot be "
                         f"resolved: {e}") from None
    if not inside:
        raise ValueError(f"--run_name ({run_name!r}) leads outside --logdir ({logdir}) "
                         "through a symbolic link")
    return run_dir


def _make_strategy(config: config_lib.Config, control: RunControl):
    """Devices, threads and the tf.distribute strategy: before TensorFlow starts anything.

    Raises:
      ValueError: a cluster that cannot be built.
    """
    from tapeloop.trainers.engine import distribute
    from tapeloop.trainers.run import controller

    if control.cpu_devices:
        distribute.split_cpu(control.cpu_devices)
    controller.configure_threads(config.intra_op_threads)
    if control.worker_hosts:
        if config.strategy != "multi_worker" or control.task_index is None:
            raise ValueError("--worker_hosts needs --strategy=multi_worker and --task_index")
        os.environ["TF_CONFIG"] = json.dumps(
            distribute.cluster_config(list(control.worker_hosts), control.task_index))
    return distribute.make_strategy(config.strategy,
                                    collective_timeout=control.collective_timeout_seconds)
