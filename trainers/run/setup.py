"""A run's set-up: the caller's request checked, its data, order and model made, its run
directory judged and started; `prepare` returns the `Run` the controller trains.

Everything here happens before the first step, and every refusal is a one-line
`SetupError` raised before anything is written.
"""

import dataclasses
import functools
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from tapeloop.data import mnist, pipelines, splits
from tapeloop.trainers.engine import distribute, losses, model as model_lib, steps
from tapeloop.trainers.extend import actions as actions_lib
from tapeloop.trainers.extend import remedies as remedies_lib, scenarios as scenarios_lib
from tapeloop.trainers.instruments import probe
from tapeloop.trainers.records import config as config_lib, run_dirs
from tapeloop.trainers.records.config import Config
from tapeloop.trainers.records.run_dirs import (RunDirError, SetupError, check_recorded,
                                                check_run_dir)
from tapeloop.trainers.run import checkpoints


def load_splits(config: Config) -> splits.Splits:
    """Loads and preprocesses the data set named by `config`.

    Raises:
      mnist.DataError: the MNIST source is missing or bad.
    """
    if config.data_dir:  # the user's own files: any example shape, any number of classes
        arrays = mnist.load_user_copy(Path(config.data_dir))
        return splits.from_arrays(
            *arrays, validation_split=config.validation_split,
            max_train_examples=config.max_train_examples,
            max_test_examples=config.max_test_examples, name=Path(config.data_dir).name,
            source=f"data_dir {config.data_dir}")
    if config.dataset == "noise":
        return splits.noise_splits(
            num_examples=config.noise_examples, input_dim=config.noise_dim,
            num_classes=config.noise_classes, validation_split=config.validation_split,
            seed=config.seed)
    m, source = mnist.load_mnist()
    return splits.mnist_splits(
        m, validation_split=config.validation_split,
        max_train_examples=config.max_train_examples,
        max_test_examples=config.max_test_examples, source=source)

def prepare(config: Config, run_dir: Path | None, request: "Request", *, chief: bool, lock,
             say, threads_note) -> "Run":
    """Judges the run dir, loads the data, builds the model, starts the run dir if fresh.

    `lock`: the chief's `run_dirs.RunLock` (None on other workers, or without a run dir).
    """
    data, model, scenario, remedies = (request.data, request.model, request.scenario,
                                       request.remedies)
    config, data = passed_in(config, data, model)
    config = order_settings(config, scenario)
    resuming = False
    if run_dir is not None and chief:
        resuming = check_run_dir(run_dir, overwrite=request.overwrite, resume=request.resume,
                                 config=config)
    elif run_dir is not None:  # Only the chief judges the run dir; workers follow its checkpoint.
        resuming = (request.resume and not request.overwrite
                    and checkpoints.latest_step(run_dir) is not None)
    data = data if data is not None else load_splits(config)
    if len(data.y_train) == 0:
        raise SetupError(f"the training split is empty (validation {len(data.y_val)}, test "
                         f"{len(data.y_test)} examples): give more examples "
                         "(--max_train_examples) or a smaller --validation_split")
    scenario = bound_scenario(config, scenario, remedies, data)
    probe_set = _probe_set(config, data) if scenario.unit == "class" else None
    stream_batch = config.batch_size  # the stream's part of a batch (the rest: a remedy's)
    for remedy in remedies:
        stream_batch = remedy.stream_batch_size(stream_batch)
    epoch_plan = functools.partial(scenario.plan, batch_size=stream_batch,
                                   joint=any(r.joint for r in remedies))
    steps_per_epoch = epoch_plan(epoch=0).total_steps
    last_step = config.epochs * steps_per_epoch - 1
    if any(s > last_step for s in request.inspect_steps):
        shown = ", ".join(map(str, sorted(request.inspect_steps)))
        raise SetupError(f"inspect_steps ({shown}) must "
                         f"be steps of this run, 0..{last_step}")
    known = {"data": data.describe(),
             **({"script_flags": request.script_flags}
                if request.script_flags is not None else {})}
    if resuming and chief:  # before the model: a changed data set or flag is named as such
        check_recorded(run_dir, known)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    strategy = request.strategy
    built, objective = _make_model(config, data, strategy, model, request.loss, scenario)
    if scenario.kind == "task" and objective.probabilities:
        raise SetupError("a task-incremental scenario masks the other tasks' logits: the "
                         "model must output logits, not probabilities (drop its softmax)")
    recorded = {"model": model_lib.describe(built, builder_name(config, model)),
                "objective": objective.name,
                "train_step": qualified_name(request.make_step or steps.make_train_step), **known}
    if scenario.unit == "task":  # the tutorial's orders: config.json's order and class_order
        recorded["scenario"] = {**scenario.table(), "class": qualified_name(type(scenario))}
    else:  # and the order's class (a user's own subclass, passed in)
        recorded["order"] = qualified_name(type(scenario))
    if scenario.unit == "task" or remedies:
        recorded["remedies"] = [{"name": r.name, "class": qualified_name(type(r)),
                                 "hparams": r.hparams()} for r in remedies]
    if resuming and chief:
        check_recorded(run_dir, recorded)
    if run_dir is not None and not resuming and chief:
        if not lock.held:  # The parent did not exist: nobody else can have been in it.
            lock.acquire()
            if run_dir.is_dir() and any(run_dir.iterdir()):
                raise RunDirError(f"{run_dir} was started by another process meanwhile: "
                                  "choose another --run_name, or run again to resume it")
        _start_run_dir(run_dir, config, recorded)
    # Non-chief workers write checkpoints (saving takes every worker) to a temporary
    # directory, and nothing else.
    own_dir = None if run_dir is None else distribute.worker_dir(run_dir, strategy)
    where = Where(run_dir=run_dir, own_dir=own_dir, log_dir=run_dir if chief else None,
                  resuming=resuming)
    plan = Plan(scenario=scenario, probe_set=probe_set, test_x=scenario.inputs(data, data.x_test),
                stream_batch=stream_batch, epoch_plan=epoch_plan, steps_per_epoch=steps_per_epoch)
    return Run(config=config, request=request, data=data,
                model=built, objective=objective, recorded=recorded, where=where, plan=plan,
                say=say, threads_note=threads_note,
                actions=tuple(request.actions) + tuple(remedies))


def passed_in(config: Config, data: splits.Splits | None, model) -> tuple:
    """The config and data of a run whose script passes its own data or model.

    The settings of tapeloop's own data and model cannot apply: they are refused if
    set, and recorded as None (`config.passed_in`). How the splits are cut applies to
    the script's data too: a setting given (not its default) cuts the data again
    (`Splits.remake`); one left at its default records how the script cut it.

    Raises:
      SetupError: a setting that would be silently ignored, or a cut the data cannot
        take again.
    """
    if data is None and model is None:
        return config, data
    try:
        config = config_lib.passed_in(config, data=data is not None, model=model is not None)
    except ValueError as e:
        raise SetupError(str(e)) from None
    if data is None:
        return config, data
    cut = {}
    for name in config_lib.CUT_SETTINGS:
        mine, its = getattr(config, name), getattr(data, name)
        keep_its = mine == config_lib.DEFAULTS[name] or its == mine
        cut[name] = its if keep_its and its is not None else mine
    changed = {k: v for k, v in cut.items() if v != getattr(data, k)}
    if changed and (data.remake is None or any(getattr(data, k) is None for k in changed)):
        name, value = next(iter(changed.items()))
        raise SetupError(f"--{name}={value} cannot be applied: this script passes data that "
                         "tapeloop cannot cut again (pass it where the script makes its data)")
    if changed:
        data = data.remake(**cut)
    return dataclasses.replace(config, **cut), data


def order_settings(config: Config, scenario) -> Config:
    """The config of a run whose order is set by an object or a scenario, so that
    config.json and HParams record what trains: a tutorial's order passed as an object
    gives its order, class order and block length; a scenario (`--scenario` or an object)
    makes `order` None, and an object gives its `steps_per_task` (its name is recorded
    under `recorded.scenario`); the tutorial's orders have no tasks: `steps_per_task` None.

    Raises:
      SetupError: a setting given (not its default) that the object contradicts or that
        does not apply (`steps_per_task` without a scenario), or no order at all (`order`
        None without a scenario).
    """
    if isinstance(scenario, scenarios_lib.orders.Order):
        own = {"order": scenario.order, "class_order": scenario.class_order,
               "block_steps": scenario.block_steps, "steps_per_task": None}
    elif scenario is not None:
        own = {"order": None, "class_order": None, "block_steps": 0,
               "steps_per_task": scenario.steps_per_task}
    elif config.scenario is not None:
        return dataclasses.replace(config, order=None)
    elif config.order is None:
        raise SetupError("order None needs a scenario: give an order, --scenario or a "
                         "scenario object")
    else:  # one of the tutorial's orders, by name
        own = {"steps_per_task": None}
    if own.get("steps_per_task", 0) is None and config.steps_per_task not in (
            config_lib.DEFAULTS["steps_per_task"], None):
        raise SetupError(f"--steps_per_task={config.steps_per_task} applies to a scenario "
                         f"only (order is {own.get('order', config.order)!r})")
    what = "order" if isinstance(scenario, scenarios_lib.orders.Order) else "scenario"
    for name, value in own.items():
        given = getattr(config, name)
        if given not in (config_lib.DEFAULTS[name], value):
            shown = ",".join(map(str, given)) if isinstance(given, tuple) else given
            raise SetupError(f"--{name}={shown} contradicts the {what} passed in "
                             f"({type(scenario).__name__}, {name} {value}): give one of them")
    try:
        return dataclasses.replace(config, **own)
    except ValueError as e:
        raise SetupError(str(e)) from None


def checked_control(run_dir, *, actions, stop_after_steps: int, profile_steps,
                     inspect_steps) -> tuple:
    """The run-control arguments, checked; returns the actions as a tuple.

    Raises:
      SetupError: one of them is invalid (the message echoes it).
    """
    if profile_steps is not None and not 0 <= profile_steps[0] < profile_steps[1]:
        raise SetupError(f"profile_steps ({profile_steps}) must be two steps A < B")
    if stop_after_steps < 0:
        raise SetupError(f"stop_after_steps ({stop_after_steps}) must be >= 0")
    if inspect_steps and run_dir is None:
        raise SetupError("inspect_steps needs a run directory to write its dumps to")
    if any(s < 0 for s in inspect_steps):
        raise SetupError(f"inspect_steps ({sorted(inspect_steps)}) must be steps >= 0")
    actions = tuple(actions)
    if any(not isinstance(a, actions_lib.Action) for a in actions):
        raise SetupError("actions must be tapeloop.Action objects")
    idle = [actions_lib.never_runs(a) for a in actions if not isinstance(a, remedies_lib.Remedy)]
    if any(idle):
        raise SetupError(f"{next(w for w in idle if w)}: it would never run")
    return actions


def checked_remedies(config: Config, scenario, remedies, train_step) -> tuple:
    """The run's remedies: the built-in ones `config.remedy` names, then the caller's;
    returns the config with only the remedy settings that apply
    (`config.applied_settings`) and the remedies.

    Raises:
      SetupError: a remedy that is not a `Remedy`, or remedies without a scenario.
    """
    remedies = list(remedies)
    if any(not isinstance(r, remedies_lib.Remedy) for r in remedies):
        raise SetupError("remedies must be tapeloop.Remedy objects")
    passed = bool(remedies)
    try:
        remedies = remedies_lib.make(config) + remedies
    except ValueError as e:
        raise SetupError(str(e)) from None
    continual = config.scenario is not None or (scenario is not None and scenario.unit == "task")
    if train_step is not None and (continual or remedies):
        raise SetupError(f"{'a scenario' if continual else 'a remedy'} trains with tapeloop's "
                         "training step (task masks and remedies enter there): leave out "
                         "train_step")
    # A remedy that takes a share of the stream's batch (the reservoir) mixes first.
    remedies.sort(key=lambda r: type(r).stream_batch_size is remedies_lib.Remedy.stream_batch_size)
    if any(r.joint for r in remedies) and (len(remedies) > 1 or not continual):
        raise SetupError("joint training is a bound of a scenario's tasks: it takes no other "
                         "remedy, and no order of the tutorial's")
    return config_lib.applied_settings(config, remedies_passed=passed), remedies


def bound_scenario(config: Config, scenario, remedies, data: splits.Splits):
    """The run's scenario, cut from its data: the object passed, `config.scenario`, or
    the tutorial's order `config.order` (`scenarios.orders`)."""
    if scenario is not None and config.scenario is not None:
        raise SetupError(f"pass a scenario object or --scenario={config.scenario}, not both")
    if scenario is None and config.scenario is None:
        scenario = scenarios_lib.orders.from_config(config)
    if isinstance(scenario, scenarios_lib.orders.Shuffled):
        acting = [r.name for r in remedies if type(r).on_phase_end is not
                  actions_lib.Action.on_phase_end]
        if acting:
            raise SetupError(f"remedy {', '.join(acting)} acts at task ends: the shuffled order "
                             "has none (its phases are epochs); give a sorted order or a "
                             "scenario")
    if scenario is not None and scenario.unit == "class":
        return _bind(scenario, data)
    if config.validation_split:
        raise SetupError(f"a scenario is scored on its probe and test split per task: "
                         f"--validation_split={config.validation_split:g} would hold out "
                         "examples it never uses (give 0)")
    if scenario is not None and config.epochs != 1:
        raise SetupError(f"a scenario trains its tasks once (epochs {config.epochs}): "
                         "its steps per task set its length")
    return _bind(scenario or scenarios_lib.make(config.scenario,
                                                steps_per_task=config.steps_per_task), data)


def _bind(scenario, data: splits.Splits):
    try:
        return scenario.bind(data)
    except ValueError as e:  # e.g. a class order that does not fit the data
        raise SetupError(str(e)) from None


def _probe_set(config: Config, data: splits.Splits):
    """The probe's (rows, labels), or None with the probe off."""
    if not config.eval_every_steps:
        return None
    try:
        return probe.select_probe(data.x_test, data.y_test, per_class=config.probe_per_class,
                                  num_classes=data.num_classes)
    except ValueError as e:
        raise SetupError(str(e)) from None


def _start_run_dir(run_dir: Path, config: Config, recorded: dict) -> None:
    """Creates `run_dir` (or empties it of what tapeloop wrote) with its `config.json`."""
    try:
        if run_dir.is_dir():
            run_dirs.clear_run_dir(run_dir)  # --overwrite, or a run without a checkpoint
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(config.to_json(recorded=recorded) + "\n")
    except OSError as e:
        raise RunDirError(f"{run_dir} cannot be created or written: "
                          f"{e.strerror or e}") from None


@dataclasses.dataclass(frozen=True)
class Request:
    """What the caller of `train_and_evaluate` passed besides the config (checked)."""

    data: splits.Splits | None
    model: object  # a builder, a Keras model, or None (config.model)
    loss: Callable | None
    penalty: Callable | None
    make_step: Callable | None  # the caller's train_step factory
    actions: tuple  # the user's actions
    scenario: object  # a scenario object, or None (config.scenario / config.order)
    remedies: tuple  # the built-in remedies config.remedy names, then the caller's
    overwrite: bool
    resume: bool
    verbose: bool
    stop_after_steps: int
    profile_steps: tuple[int, int] | None
    inspect_steps: frozenset[int]
    check_numerics: bool
    script_flags: dict | None
    strategy: tf.distribute.Strategy  # the caller's, or built from config.strategy


@dataclasses.dataclass(frozen=True)
class Where:
    """Where a run writes."""

    run_dir: Path | None
    own_dir: Path | None  # where this process checkpoints (a non-chief: a temporary dir)
    log_dir: Path | None  # where it writes everything else (None off the chief)
    resuming: bool


@dataclasses.dataclass(frozen=True)
class Plan:
    """The order of a run's data, bound to it."""

    scenario: object  # the order of the data (`trainers.extend.scenarios`), bound to it
    probe_set: tuple | None  # (rows, labels); None: the probe is off (or scored per task)
    test_x: np.ndarray  # the test split's rows as the scenario presents them
    stream_batch: int  # the stream's examples per batch (the others: a remedy's)
    epoch_plan: Callable[..., pipelines.EpochPlan]  # epoch_plan(epoch=e)
    steps_per_epoch: int


@dataclasses.dataclass(frozen=True)
class Run:
    """A run, set up by `train_and_evaluate`: everything `_train` needs."""

    config: Config
    request: Request
    data: splits.Splits
    model: tf.keras.Model
    objective: losses.Objective
    recorded: dict  # what config.json records of the model, objective and data
    where: Where
    plan: Plan
    say: Callable[..., None]
    threads_note: str | None
    actions: tuple  # the user's actions, then the remedies


def _make_model(config: Config, data: splits.Splits, strategy, model, loss, scenario):
    """Builds (or checks) the run's model under the strategy's scope; its objective.

    Raises:
      SetupError: the model cannot take the data, or its outputs or loss do not fit.
    """
    outputs, shape = scenario.num_outputs, scenario.example_shape(data)
    try:
        with strategy.scope():
            tf.keras.utils.set_random_seed(config.seed)
            if isinstance(model, tf.keras.Model):
                built = model_lib.checked(model, shape, outputs)
            else:
                make = model or model_lib.builder(
                    config.model, hidden_sizes=config.hidden_sizes,
                    activation=config.activation, dropout=config.dropout, seed=config.seed,
                    dropout_alg="philox" if config.jit_compile else None)
                built = model_lib.build(make, shape, outputs)
        return built, losses.make_objective(built, loss)
    except ValueError as e:
        raise SetupError(f"model {builder_name(config, model)}: {e}") from None
    except (tf.errors.ResourceExhaustedError, MemoryError) as e:
        raise SetupError(f"model {builder_name(config, model)}: out of memory building it "
                         f"({run_dirs.error_line(e)}): use a smaller model") from None


def builder_name(config: Config, model) -> str:
    if model is None:
        return config.model
    return qualified_name(model if not isinstance(model, tf.keras.Model) else type(model))


def qualified_name(target) -> str:
    """`module:qualname` of a function or class (what config.json records of it)."""
    target = getattr(target, "func", target)  # a functools.partial: its function
    module = getattr(target, "__module__", "?")
    if module == "__main__":  # the script itself: name its file
        module = Path(getattr(sys.modules["__main__"], "__file__", "__main__")).name
    return f"{module}:{getattr(target, '__qualname__', '?')}"

