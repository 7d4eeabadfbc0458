"""The controller: decides when to train, evaluate, log and print, around the compiled loop.

Data flows one way: config -> data -> pipeline -> compiled loop -> writers.
Step numbers: a value logged at step s describes the model after s updates
(`train/*` at step s is the batch that update s+1 learns from, measured before it).
"""

import contextlib
import dataclasses
import functools
import json
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from tapeloop.data import mnist, pipelines, splits
from tapeloop.trainers.extend import remedies as remedies_lib, scenarios as scenarios_lib
from tapeloop.trainers.engine import distribute, evaluation, loop, losses, model as model_lib, optimizers, steps
from tapeloop.trainers.instruments import continual, drift, probe, suite as instruments
from tapeloop.trainers.records import events, forgetting, run_dirs, tables, writers
from tapeloop.trainers.extend import actions as actions_lib
from tapeloop.trainers.run import checkpoints, standard_actions, stopping
from tapeloop.trainers.records import config as config_lib
from tapeloop.trainers.records.config import Config
from tapeloop.trainers.records.run_dirs import (RunDirError, SetupError,  # noqa: F401 (API)
                                        check_recorded, check_run_dir)


Interrupted, StoppedAfter = standard_actions.Interrupted, standard_actions.StoppedAfter


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


def train_and_evaluate(config: Config, run_dir: str | Path | None, *,
                       data: splits.Splits | None = None, model=None, loss=None, penalty=None,
                       train_step=None, actions=(), scenario=None, remedies=(),
                       overwrite: bool = False,
                       resume: bool = True, verbose: bool = True, stop_after_steps: int = 0,
                       profile_steps: tuple[int, int] | None = None,
                       inspect_steps: frozenset[int] = frozenset(),
                       strategy: tf.distribute.Strategy | None = None,
                       check_numerics: bool = False, script_flags: dict | None = None) -> dict:
    """Trains the model of `config` and evaluates it; logs everything under `run_dir`.

    Args:
      config: the run's settings.
      run_dir: where events, `config.json`, `results.json`, `accuracy_matrix.csv`/`.png`
        and `weights/` go; None logs nothing. Beside it go its lock (`.NAME.lock`) and
        the HParams experiment of the runs side by side (`events.out.tfevents.*.hparams`).
      data: the data: `Splits` (`data.splits.from_arrays` / `from_datasets` make them
        from the user's arrays or finite `tf.data.Dataset`s; default:
        `load_splits(config)`).
      model: the model (default: `config.model`, built by `model.builder`): a builder
        `build(input_shape, num_classes) -> keras.Model` (called under the strategy's
        scope, right after the seed is set), or a Keras model. Its outputs are logits,
        or probabilities if it ends in a softmax; a compiled model trains with its
        compiled loss and optimizer.
      loss: `loss(labels, outputs) -> per-example losses` (integer labels), instead of
        the compiled loss or cross-entropy.
      penalty: `penalty() -> scalar`, added to every step's loss under the tape and
        logged with `model.losses` as `train/regularization_loss`.
      train_step: `make(model, optimizer, *, forward, objective, penalty, batch_splits,
        distributed) -> step(batch) -> steps.StepMetrics`, replacing
        `steps.make_train_step` (whose arguments it receives).
      actions: `actions.Action` objects: the user's periodic work, run at their steps
        and at phase and epoch ends (see `trainers.extend.actions`).
      scenario: the order of the data, a `trainers.extend.scenarios.Scenario`, instead of
        `config.scenario` or `config.order`: a continual-learning scenario's tasks are
        trained one after another and scored per task; one of the tutorial's orders
        (`scenarios.orders`) streams whole epochs, scored per class.
      remedies: `trainers.extend.remedies.Remedy` objects against forgetting, besides the
        built-in ones `config.remedy` names.
      overwrite: replace whatever `run_dir` holds.
      resume: continue the checkpointed run `run_dir` holds (same settings), from its
        latest checkpoint; False refuses a `run_dir` that holds a run.
      stop_after_steps: > 0: stop once the global step reaches it, after saving a
        checkpoint (raises `StoppedAfter`); rerunning continues from there.
      profile_steps: (A, B): a TensorFlow profiler trace of steps A..B, written to
        `run_dir/plugins/profile` for TensorBoard's Profile tab.
      inspect_steps: steps whose batch, logits, per-example losses, gradient norms and
        update are saved to `run_dir/inspect/step_<N>.npz` (see `step_dumps`), with
        a summary line; the other steps run in the compiled loop as usual.
      strategy: the tf.distribute strategy to train under (default: built from
        `config.strategy`; a multi-worker strategy should be built first thing in the
        program). Only the chief writes `run_dir`; other workers checkpoint to a
        temporary directory removed at the end, and resume from the chief's.
      verbose: print the set-up, a progress bar, one line per epoch and the final table.
      check_numerics: the caller enabled `tf.debugging.enable_check_numerics()`; the
        loop's conditionals are then lowered (`loop.make_train_loop`), so that a NaN
        is reported at the op that made it.
      script_flags: the values of the calling script's own flags (`cli.script_flags`),
        recorded in config.json and HParams; a resume with other values is refused.

    Returns:
      The results (also saved as `run_dir/results.json`): final test loss/accuracy
      overall and per class, last epoch's training loss/accuracy, last validation
      loss/accuracy, forgetting metrics (None with the probe off), steps, and seconds
      per epoch.

    Raises (each importable from `tapeloop`, each message one line):
      SetupError (RunDirError), DataError: before anything is written.
      Interrupted: SIGINT/SIGTERM; a checkpoint was saved first.
      NonFiniteError: a loss or gradient was NaN/Inf; the last good checkpoint stays.
      StoppedAfter: `stop_after_steps` reached; a checkpoint was saved.
    """
    actions = _checked_control(run_dir, actions=actions, stop_after_steps=stop_after_steps,
                               profile_steps=profile_steps, inspect_steps=inspect_steps)
    remedies = _checked_remedies(config, scenario, remedies, train_step)
    if config.jit_compile and (check_numerics or (strategy is not None
                                                  and distribute.is_distributed(strategy))):
        raise SetupError("jit_compile: not with " + ("check_numerics (XLA has no numeric "
                         "checks)" if check_numerics else "a tf.distribute strategy"))
    if strategy is None:
        try:
            strategy = distribute.make_strategy(config.strategy)
        except ValueError as e:
            raise SetupError(str(e)) from None
    chief = distribute.is_chief(strategy)
    say = print if verbose and chief else (lambda *a, **k: None)  # the chief speaks for all
    threads_note = configure_threads(config.intra_op_threads)
    run_dir = None if run_dir is None else Path(run_dir)
    # One process trains a run directory at a time: the chief holds its lock throughout.
    lock = run_dirs.RunLock(run_dir) if run_dir is not None and chief else None
    with lock or contextlib.nullcontext():
        run = _prepare(config, run_dir, chief=chief, lock=lock, say=say, threads_note=threads_note,
                       data=data, model=model, loss=loss, penalty=penalty,
                       train_step=train_step, actions=actions, scenario=scenario,
                       remedies=remedies, overwrite=overwrite,
                       resume=resume, verbose=verbose, stop_after_steps=stop_after_steps,
                       profile_steps=profile_steps, inspect_steps=inspect_steps,
                       strategy=strategy, check_numerics=check_numerics,
                       script_flags=script_flags)
        try:
            return _train(run)
        finally:
            if run.own_dir is not None and run.own_dir != run_dir:
                shutil.rmtree(run.own_dir, ignore_errors=True)


def _prepare(config: Config, run_dir: Path | None, *, chief: bool, lock, say, threads_note, data,
             model, loss, penalty, train_step, actions, scenario, remedies, overwrite: bool,
             resume: bool,
             verbose: bool, stop_after_steps: int, profile_steps, inspect_steps, strategy,
             check_numerics: bool, script_flags: dict | None) -> "_Run":
    """Judges the run dir, loads the data, builds the model, starts the run dir if fresh.

    `lock`: the chief's `run_dirs.RunLock` (None on other workers, or without a run dir).
    """
    config, data = _passed_in(config, data, model)
    config = _order_settings(config, scenario)
    resuming = False
    if run_dir is not None and chief:
        resuming = check_run_dir(run_dir, overwrite=overwrite, resume=resume, config=config)
    elif run_dir is not None:  # Only the chief judges the run dir; workers follow its checkpoint.
        resuming = resume and not overwrite and checkpoints.latest_step(run_dir) is not None
    data = data if data is not None else load_splits(config)
    if len(data.y_train) == 0:
        raise SetupError(f"the training split is empty (validation {len(data.y_val)}, test "
                         f"{len(data.y_test)} examples): give more examples "
                         "(--max_train_examples) or a smaller --validation_split")
    scenario = _bound_scenario(config, scenario, remedies, data)
    probe_set = _probe_set(config, data) if scenario.unit == "class" else None
    stream_batch = config.batch_size  # the stream's part of a batch (the rest: a remedy's)
    for remedy in remedies:
        stream_batch = remedy.stream_batch_size(stream_batch)
    epoch_plan = functools.partial(scenario.plan, batch_size=stream_batch,
                                   joint=any(r.joint for r in remedies))
    steps_per_epoch = epoch_plan(epoch=0).total_steps
    last_step = config.epochs * steps_per_epoch - 1
    if any(s > last_step for s in inspect_steps):
        raise SetupError(f"inspect_steps ({', '.join(map(str, sorted(inspect_steps)))}) must "
                         f"be steps of this run, 0..{last_step}")
    known = {"data": data.describe(),
             **({"script_flags": script_flags} if script_flags is not None else {})}
    if resuming and chief:  # before the model: a changed data set or flag is named as such
        check_recorded(run_dir, known)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    built, objective = _make_model(config, data, strategy, model, loss, scenario.num_outputs,
                                   scenario.example_shape(data))
    if scenario.kind == "task" and objective.probabilities:
        raise SetupError("a task-incremental scenario masks the other tasks' logits: the "
                         "model must output logits, not probabilities (drop its softmax)")
    recorded = {"model": model_lib.describe(built, _builder_name(config, model)),
                "objective": objective.name,
                "train_step": qualified_name(train_step or steps.make_train_step), **known}
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
    return _Run(config=config, data=data, probe_set=probe_set, model=built, scenario=scenario,
                test_x=scenario.inputs(data, data.x_test),
                remedies=tuple(remedies),
               objective=objective, recorded=recorded, strategy=strategy, run_dir=run_dir,
               own_dir=own_dir, log_dir=run_dir if chief else None, resuming=resuming,
               say=say, verbose=verbose, stream_batch=stream_batch, epoch_plan=epoch_plan,
               steps_per_epoch=steps_per_epoch, threads_note=threads_note, penalty=penalty,
               make_step=train_step, actions=tuple(actions) + tuple(remedies),
               stop_after_steps=stop_after_steps,
               profile_steps=profile_steps, inspect_steps=inspect_steps,
               check_numerics=check_numerics)


def _passed_in(config: Config, data: splits.Splits | None, model) -> tuple:
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


def _order_settings(config: Config, scenario) -> Config:
    """The config of a run passed one of the tutorial's orders as an object: its order,
    class order and block length, so that config.json records what trains.

    Raises:
      SetupError: a setting given (not its default) that the object contradicts.
    """
    if not isinstance(scenario, scenarios_lib.orders.Order):
        return config
    own = {"order": scenario.order, "class_order": scenario.class_order,
           "block_steps": scenario.block_steps}
    for name, value in own.items():
        given = getattr(config, name)
        if given != config_lib.DEFAULTS[name] and given != value:
            raise SetupError(f"--{name}={given} contradicts the order passed in "
                             f"({type(scenario).__name__}, {name} {value}): give one of them")
    try:
        return dataclasses.replace(config, **own)
    except ValueError as e:
        raise SetupError(str(e)) from None


def _checked_control(run_dir, *, actions, stop_after_steps: int, profile_steps,
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
    return actions


def _checked_remedies(config: Config, scenario, remedies, train_step) -> list:
    """The run's remedies: the built-in ones `config.remedy` names, then the caller's.

    Raises:
      SetupError: a remedy that is not a `Remedy`, or remedies without a scenario.
    """
    remedies = list(remedies)
    if any(not isinstance(r, remedies_lib.Remedy) for r in remedies):
        raise SetupError("remedies must be tapeloop.Remedy objects")
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
    return remedies


def _bound_scenario(config: Config, scenario, remedies, data: splits.Splits):
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
class _Run:
    """A run, set up by `train_and_evaluate`: everything `_train` needs."""

    config: Config
    data: splits.Splits
    probe_set: tuple | None  # (rows, labels); None: the probe is off (or scored per task)
    scenario: object  # the order of the data (`trainers.extend.scenarios`), bound to it
    test_x: np.ndarray  # the test split's rows as the scenario presents them
    model: tf.keras.Model
    objective: losses.Objective
    recorded: dict  # what config.json records of the model, objective and data
    strategy: tf.distribute.Strategy
    run_dir: Path | None
    own_dir: Path | None  # where this process checkpoints (a non-chief: a temporary dir)
    log_dir: Path | None  # where it writes everything else (None off the chief)
    resuming: bool
    say: Callable[..., None]
    verbose: bool
    stream_batch: int  # the stream's examples per batch (the others: a remedy's)
    epoch_plan: Callable[..., pipelines.EpochPlan]  # epoch_plan(epoch=e)
    steps_per_epoch: int
    threads_note: str | None
    penalty: Callable | None
    make_step: Callable | None
    actions: tuple  # the user's actions, then the remedies
    remedies: tuple
    stop_after_steps: int
    profile_steps: tuple[int, int] | None
    inspect_steps: frozenset[int]
    check_numerics: bool


def _make_model(config: Config, data: splits.Splits, strategy, model, loss, outputs: int,
                shape: tuple[int, ...]):
    """Builds (or checks) the run's model under the strategy's scope; its objective.

    Raises:
      SetupError: the model cannot take the data, or its outputs or loss do not fit.
    """
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
        raise SetupError(f"model {_builder_name(config, model)}: {e}") from None
    except (tf.errors.ResourceExhaustedError, MemoryError) as e:
        raise SetupError(f"model {_builder_name(config, model)}: out of memory building it "
                         f"({run_dirs.error_line(e)}): use a smaller model") from None


def _builder_name(config: Config, model) -> str:
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


def _build(run: _Run, writer: writers.MetricWriter):
    """The optimizer, step counter, instruments, compiled functions and context of a run.

    Everything is created under `strategy.scope()`, so a tf.distribute strategy
    mirrors the variables; the step counter stays a plain host variable. A compiled
    model keeps its own optimizer. Batch splits are switched off for a model with
    batch statistics (`model.has_batch_statistics`), which a split would change.
    The actions' and remedies' state is built here, before the checkpoint is assembled.
    """
    config, data, model, strategy = run.config, run.data, run.model, run.strategy
    objective, scenario = run.objective, run.scenario
    per_task = scenario.unit == "task"
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    splits_ok = not model_lib.has_batch_statistics(model)
    batch_splits = config.batch_splits if splits_ok else 1
    input_shape = model_lib.model_input_shape(model, _example_shape(run))
    forward = model_lib.flat_forward(model, input_shape)
    mask, input_dim = scenario.output_mask(), scenario.input_dim
    with strategy.scope():
        compiled = getattr(model, "compiled", False) and getattr(model, "optimizer", None)
        optimizer = compiled or optimizers.make_optimizer(
            config.optimizer, learning_rate=config.learning_rate, momentum=config.momentum,
            nesterov=config.nesterov)
        if not optimizer.built:  # its slots exist before any step (a user's too) is traced
            optimizer.build(model.trainable_variables)
        evaluate = evaluation.make_evaluator(forward, num_classes=scenario.num_outputs,
                                             input_dim=input_dim,
                                             batch_size=config.eval_batch_size,
                                             batch_splits=batch_splits, strategy=strategy,
                                             objective=objective)
        test = evaluate if not per_task else continual.task_evaluator(
            scenario, forward, input_dim=input_dim, batch_size=config.eval_batch_size,
            batch_splits=batch_splits, strategy=strategy, objective=objective)
        context = actions_lib.RunContext(
            model=model, write_scalars=writer.write_scalars, evaluate=evaluate, data=data,
            run_dir=run.log_dir, say=run.say, forward=_task_forward(forward, mask),
            strategy=strategy, scenario=scenario, seed=config.seed,
            batch_size=config.batch_size,
            train_x=scenario.inputs(data, data.x_train),
            forward_of=lambda other: model_lib.flat_forward(other, input_shape))
        for action in run.actions:  # their state, before the checkpoint is assembled
            if isinstance(action, remedies_lib.Remedy):
                action.context = context
            action.build(model)
        probing = run.probe_set is not None or (per_task and config.eval_every_steps)
        task_probe = (continual.task_probe(
            scenario, forward, run.test_x, data.y_test,
            per_class=config.probe_per_class, batch_splits=batch_splits, strategy=strategy,
            objective=objective) if per_task and probing else None)
        tools = (instruments.Instruments(model, run.probe_set, num_classes=data.num_classes,
                                         writer=writer, run_dir=run.log_dir,
                                         batch_splits=batch_splits, strategy=strategy,
                                         forward=forward, objective=objective,
                                         every_n_steps=config.eval_every_steps,
                                         task_probe=task_probe,
                                         num_tasks=scenario.num_tasks if per_task else 0)
                 if probing else None)
        continual_args = ({} if run.make_step is not None else  # a user's step: no remedies
                          {"output_mask": mask, "remedies": run.remedies})
        train_step = (run.make_step or steps.make_train_step)(
            model, optimizer, batch_splits=batch_splits,
            distributed=distribute.is_distributed(strategy), forward=forward,
            objective=objective, penalty=run.penalty, **continual_args)
        regularized = (train_step.regularized if isinstance(train_step, steps.TrainStep)
                       else True)  # a user's own step: its regularization_loss is logged
        train_step = steps.user_code(train_step)  # a step of yours: converted by AutoGraph
        train_loop = loop.make_train_loop(
            distribute.run_train_step(strategy, train_step), global_step,
            inspect_step=distribute.run_train_step(strategy, train_step, details=True,
                                                   max_rows=2 * config.batch_size),
            log_every_step=config.log_every_step, every_n_steps=config.eval_every_steps,
            periodic=tools.periodic if tools else None,
            before_periodic=tools.before_periodic if tools else None,
            variables=model.trainable_variables,
            lower_conditionals=(distribute.is_distributed(strategy)
                                or run.check_numerics),
            log_regularization=regularized, jit_compile=config.jit_compile,
            jit_batch_rows=run.stream_batch)
    return optimizer, global_step, tools, train_loop, evaluate, test, context


def _example_shape(run: _Run) -> tuple[int, ...]:
    """One example's shape as the model sees it (a scenario may transform it)."""
    return run.scenario.example_shape(run.data)


def _task_forward(forward, mask: np.ndarray | None):
    """`forward(rows, tasks=None, training=False)`: with tasks, a task-IL scenario's masks."""
    mask = None if mask is None else tf.constant(mask)

    def task_forward(rows, tasks=None, training=False):
        outputs = forward(rows, training=training)
        if mask is None or tasks is None:
            return outputs
        return steps.masked(outputs, tf.gather(mask, tasks))

    return task_forward


class NonFiniteError(Exception):
    """A loss or gradient stopped being finite; no checkpoint was written after it."""


def numerics_line(message: str, step: int | None = None) -> str:
    """One line from a `tf.debugging.enable_check_numerics` error: the op, what ran it
    (the training step, the probe or an evaluation), and the step."""
    lines = message.splitlines()
    found = next((x.strip(" !") for x in lines if "Infinity or NaN" in x), lines[0])
    files = " ".join(x for x in lines if "File " in x and "/trainers/" in x)
    where = ("the probe" if "probe.py" in files else
             "an evaluation" if "evaluation.py" in files and "steps.py" not in files else
             "the training step")
    return (f"check_numerics: {found} in {where}"
            + (f" at step {step}" if step is not None else "")
            + "; training stopped, nothing saved after it")


def xla_line(message: str) -> str:
    """One line from XLA's refusal to compile a step (--jit_compile)."""
    lines = [x.strip() for x in message.splitlines()]
    why = next((x for x in lines if "compile-time constant" in x or "not supported" in x
                or "unsupported" in x.lower()), lines[-1])
    return (f"jit_compile: XLA cannot compile the training step ({why}); train without "
            "jit_compile")


class Trainer:
    """Runs the compiled loop on the run's stream, some steps at a time (orbit's trainer)."""

    def __init__(self, train_loop, stream, global_step: tf.Variable, checkpointing):
        self.train_loop, self.stream = train_loop, stream
        self._global_step, self._checkpointing = global_step, checkpointing
        self._next_call = None

    @property
    def step(self) -> int:
        return int(self._global_step)

    def run_next_step_with(self, call) -> None:
        """The next step runs as `call(train_loop, stream) -> sums` (inspection does)."""
        self._next_call = call

    def train(self, num_steps: int) -> dict:
        """Runs `num_steps` steps; returns their sums and last values (see `loop`).

        Raises:
          NonFiniteError: a loss or gradient was not finite (nothing is saved after it).
        """
        if self._next_call is not None:
            if num_steps != 1:
                raise AssertionError(f"a taken-over call runs 1 step, not {num_steps}")
            call, self._next_call = self._next_call, None
            out = call(self.train_loop, self.stream)
        else:
            try:
                out = self.train_loop(self.stream, tf.constant(num_steps, tf.int64))
            except tf.errors.InvalidArgumentError as e:  # --check_numerics found one
                if "tf2xla conversion failed" in e.message:
                    raise SetupError(xla_line(e.message)) from None
                if "Infinity or NaN" not in e.message:
                    raise
                raise NonFiniteError(numerics_line(e.message, step=self.step)) from None
            out = {key: float(v) for key, v in out.items()}
        if out["first_bad_step"] >= 0:
            what = "loss" if out["bad_kind"] == 0 else "gradient"
            last = self._checkpointing.latest()
            raise NonFiniteError(
                f"the {what} is not finite (NaN or Inf) at step {int(out['first_bad_step'])}; "
                "training stopped, nothing saved after it"
                + (f"; the last good checkpoint is {last}" if last else ""))
        return out


def run_epochs(trainer: Trainer, actions, context: actions_lib.RunContext, *,
               epochs: int, epoch_plan, steps_per_epoch: int, steps_per_loop: int,
               finished, progress: standard_actions.Progress) -> None:
    """The loop: train up to the next step an action asks for, and tell the actions.

    `finished(end_step)` says whether a phase or epoch ending there was done before
    (`Checkpointing.finished`: a resumed run skips those).
    """
    dispatch = actions_lib.dispatch
    dispatch(actions, "on_begin", trainer.step, context)
    for epoch in range(epochs):
        first = epoch * steps_per_epoch
        if finished(first + steps_per_epoch):
            continue
        progress.epoch, progress.epoch_first_step, progress.sums = epoch, first, np.zeros(3)
        dispatch(actions, "on_epoch_start", trainer.step, epoch, context)
        for phase in standard_actions.phases(epoch_plan(epoch=epoch), first):
            if finished(phase.end):
                continue
            progress.phase = phase
            if phase.start >= trainer.step:  # not resumed inside it
                dispatch(actions, "on_phase_start", trainer.step, phase.label, context)
            while trainer.step < phase.end:
                cut = min(phase.end, actions_lib.next_cut(actions, trainer.step) or phase.end)
                progress.add(trainer.train(min(steps_per_loop, cut - trainer.step)))
                dispatch([a for a in actions if a.due(trainer.step)], "on_step", trainer.step,
                         context)
            dispatch(actions, "on_phase_end", trainer.step, phase.label, context)
        dispatch(actions, "on_epoch_end", trainer.step, epoch, context)
    dispatch(actions, "on_end", trainer.step, context)


def _train(run: _Run) -> dict:
    """Builds the run's pieces, resumes it if asked, runs the loop, returns the results."""
    config, model, data = run.config, run.model, run.data
    writer = writers.MetricWriter(run.log_dir)
    optimizer, global_step, tools, train_loop, evaluate, test, context = _build(run, writer)
    extra = {f"action_{i}": actions_lib.checkpointed(a) for i, a in enumerate(run.actions)
             if a.checkpoint_items()}
    saved_items = {i: frozenset(a.checkpoint_items()) for i, a in enumerate(run.actions)}
    state = (checkpoints.RunState(model=model, optimizer=optimizer, global_step=global_step,
                                  drift=tools.drift if tools else None,
                                  run_dir=run.own_dir, restore_dir=run.run_dir, extra=extra)
             if run.run_dir is not None else None)
    if state is not None and not run.resuming:
        _say_disk_use(run, state)
    results = {"epoch_seconds": []}
    progress = standard_actions.Progress()
    checkpointing = standard_actions.Checkpointing(
        state, progress, every_steps=config.checkpoint_every_steps,
        steps_per_loop=config.steps_per_loop, flush=writer.flush,
        host_state=lambda: {"results": results,
                            "matrix": tools.matrix.to_dict() if tools else None})
    if run.resuming:
        finished = _resume(run, checkpointing, results, tools)
        if finished is not None:
            writer.close()
            return finished
    scenario = run.scenario
    stream = distribute.distribute_stream(run.strategy, lambda shard, shards: scenario.pipeline(
        data, context.train_x, batch_size=run.stream_batch, seed=config.seed,
        epochs=config.epochs, start_step=int(global_step),
        joint=any(r.joint for r in run.remedies), shard=(shard, shards)))
    trainer = Trainer(train_loop, stream, global_step, checkpointing)
    _say_setup(run, optimizer, start_step=trainer.step)
    if not run.resuming and run.log_dir is not None:
        instruments.save_weights(run.log_dir / "weights" / "initial.npz", model)
    report = standard_actions.EpochReport(
        epochs=config.epochs, steps_per_epoch=run.steps_per_epoch, progress=progress,
        results=results, writer=writer, evaluate=test,
        test_set=(run.test_x, data.y_test),
        test_every_epoch=config.test_every_epoch, bar=run.verbose and _tty(), say=run.say,
        tracing_counts=lambda: _tracing_counts(train_loop, evaluate, tools),
        unit=scenario.unit)
    stop = stopping.StopRequests()
    every = _standard_actions(run, trainer=trainer, checkpointing=checkpointing, stop=stop,
                              report=report, tools=tools, progress=progress, writer=writer,
                              evaluate=evaluate, results=results, saved_items=saved_items)
    try:
        with writer.as_default(), stop:
            if not run.resuming:
                instruments.describe_run(writer, config, instrumented=tools is not None,
                                         recorded=run.recorded, run_dir=run.log_dir)
                if tools:
                    loop.make_periodic_writer(tools.periodic, global_step,
                                              len(model.trainable_variables))()
            try:
                run_epochs(trainer, every, context, epochs=config.epochs,
                           epoch_plan=run.epoch_plan, steps_per_epoch=run.steps_per_epoch,
                           steps_per_loop=config.steps_per_loop,
                           finished=checkpointing.finished, progress=progress)
                writer.flush()
            except writers.EventFileLost as e:
                last = checkpointing.latest()
                raise RunDirError(f"{e}; " + (f"the checkpoint {last} is intact" if last else
                                              "no checkpoint was saved yet")
                                  + ": run the same command again to resume into a new "
                                  "event file") from None
            final = tools.summary() if tools else None
            if final and scenario.unit == "task" and run.log_dir is not None:
                final.update(_stability(run.log_dir, tools, scenario))
            writer.write_scalars(trainer.step, {
                "result/test_accuracy": report.test.accuracy,
                **({"result/average_forgetting": final["average_forgetting"],
                    "result/bwt": final["bwt"]} if final else {}),
                **({f"result/{k}": final[k] for k in forgetting.STABILITY_METRICS
                    if final and k in final})})
    finally:
        writer.close()
    return _finish(run, results, report.test, final, step=trainer.step)


def _stability(log_dir: Path, tools, scenario) -> dict:
    """The stability-gap metrics of a scenario's run, from its step-level probe (events)."""
    curves = events.read_scalars(log_dir)
    tags = [f"probe/accuracy/task_{t}" for t in range(scenario.num_tasks)]
    if any(tag not in curves for tag in tags):
        return {}
    probe_steps = np.array(sorted(curves[tags[0]]))
    accuracy = np.array([[curves[tag].get(s, np.nan) for tag in tags] for s in probe_steps])
    task_ends = tools.matrix.steps if len(tools.matrix.steps) == scenario.num_tasks else []
    if not task_ends:  # joint training: one phase, no task ends to fall from
        return {}
    return forgetting.stability_metrics(probe_steps, accuracy, task_ends)


def _resume(run: _Run, checkpointing, results: dict, tools) -> dict | None:
    """Restores the latest checkpoint; returns the saved results if the run is finished.

    Raises:
      SetupError: the run is past the epochs asked for.
    """
    try:
        host = checkpointing.restore()
    except checkpoints.NoCheckpoint as e:
        raise RunDirError(f"{run.run_dir}: {e}: pass --overwrite to start it again, or "
                          "choose another --run_name") from None
    for line in checkpointing.skipped:
        run.say(f"note: {line}")
    results.clear()
    results.update(host["results"])
    if tools and host["matrix"]:
        tools.matrix = forgetting.AccuracyMatrix.from_dict(host["matrix"])
    step, epochs = checkpointing.start_step, run.config.epochs
    total = epochs * run.steps_per_epoch
    if step > total:
        raise SetupError(f"{run.run_dir} is at step {step}, past the {epochs} epochs asked "
                         f"for ({total} steps): pass more --epochs to continue it, or "
                         "--overwrite to start it again")
    if step == total and (run.run_dir / "results.json").is_file():
        run.say(f"{run.run_dir} already finished its {epochs} epochs (step {step}); nothing "
                "to do (--epochs more to continue it, --overwrite to start it again)")
        return run_dirs.read_json(run.run_dir / "results.json")
    return None


def _standard_actions(run: _Run, *, trainer, checkpointing, stop, report, tools, progress,
                      writer, evaluate, results, saved_items) -> list:
    """The run's actions, in the order they act on one event (see `standard_actions`)."""
    scenario = run.scenario
    task_of = functools.partial(scenario.trained_in, joint=any(r.joint for r in run.remedies))
    if scenario.unit == "task":
        what = f"{scenario.name}, {'+'.join(r.name for r in run.remedies) or 'none'}"
    else:
        what = f"{scenario.name}, {run.data.name}"
    sa = standard_actions
    own = [sa.Validation(_validation_sets(run) if scenario.unit == "class" else {},
                         evaluate=evaluate, writer=writer,
                         results=results, progress=progress,
                         once_per_epoch=getattr(scenario, "validate_once_per_epoch", False))]
    if tools:
        own.append(sa.Instrumentation(tools, progress, task_of=task_of, title=(
            f"accuracy matrix: {run.run_dir.name if run.run_dir else 'run'} ({what})")))
    own += [report, *run.actions, sa.ActionStateCheck(run.actions, saved_items)]
    if run.profile_steps:
        own.append(sa.Profiling(*run.profile_steps, run.run_dir, run.say))
    if run.inspect_steps:
        own.append(sa.Inspection(run.inspect_steps, trainer, run.run_dir,
                                 drift.variable_names(run.model), run.say))
    own.append(sa.StopOnSignal(stop, checkpointing))
    if run.stop_after_steps:
        own.append(sa.StopAfter(run.stop_after_steps, checkpointing))
    return own + [checkpointing]


# A run directory past this size is announced at the start, with what takes the space.
LARGE_RUN_BYTES = 2 << 30


def _say_disk_use(run: _Run, state: checkpoints.RunState) -> None:
    """Says, before training, when the checkpoints will take gigabytes of disk."""
    each = state.size_bytes()
    parameters = model_lib.trainable_parameter_count(run.model)
    total = each * state.kept + 2 * 4 * parameters  # and the initial and final weights
    if total > LARGE_RUN_BYTES:
        run.say(f"note: {run.run_dir} will take about {total / 2**30:.1f} GB: each checkpoint "
                f"holds {each / 2**30:.1f} GB (model {parameters:,} parameters, optimizer "
                f"slots, drift references), {state.kept} are kept; a smaller model (or "
                "input) takes less")


def _say_setup(run: _Run, optimizer, *, start_step: int) -> None:
    """Prints what the run trains on, with what, and where it writes."""
    say, config, data, model, strategy = run.say, run.config, run.data, run.model, run.strategy
    run_dir, probe_set, per_task = run.run_dir, run.probe_set, run.scenario.unit == "task"
    replayed = config.batch_size - run.stream_batch
    if run.threads_note:
        say(run.threads_note)
    say(f"data: {data.source}")
    if per_task:
        say(run.scenario.describe())
    if per_task or run.remedies:
        say("remedies: " + (", ".join(
            f"{r.name}" + (" (" + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in r.hparams().items()) + ")"
                           if r.hparams() else "") for r in run.remedies) or "none (fine-tuning)"))
    say(f"train {len(data.y_train)}, validation {len(data.y_val)} "
        f"({config.validation_scope}), test {len(data.y_test)} examples; "
        + (f"order {run.scenario.name}, " if not per_task else "")
        + f"batch {config.batch_size}"
        + (f" ({run.stream_batch} new + {replayed} remembered)" if replayed else "")
        + (f", class blocks of {config.block_steps} batches" if config.block_steps else ""))
    untested = np.flatnonzero(np.bincount(data.y_test, minlength=data.num_classes) == 0)
    if len(untested):
        say(f"note: class{'es' if len(untested) > 1 else ''} "
            f"{', '.join(map(str, untested))} ha{'ve' if len(untested) > 1 else 's'} no test "
            "examples: trained, but not tested nor probed (test accuracy and forgetting cover "
            "the other classes)")
    if per_task:
        say(f"probe: {config.probe_per_class} test examples of every class of every task, "
            f"every {config.eval_every_steps} steps and at every task end"
            if config.eval_every_steps else "probe: off")
    else:
        say(f"probe: {len(probe_set[1])} test examples, every {config.eval_every_steps} steps "
            "and at every phase end" if probe_set else "probe: off")
    say(f"model {run.recorded['model']['builder']}: examples of shape "
        f"{tuple(model_lib.model_input_shape(model, _example_shape(run)))}, "
        f"{run.recorded['model']['outputs']} out, "
        + (f"trained with {run.objective.name}" if run.make_step is None else
           f"trained by the step {run.recorded['train_step']} (evaluated with "
           f"{run.objective.name})")
        + ("" if optimizers.is_fused(optimizer, model.trainable_variables) else
           f", {type(optimizer).__name__} (Keras's apply_gradients)")
        + ("" if not model_lib.has_batch_statistics(model) or config.batch_splits == 1 else
           "; batch statistics: batches not split"))
    for line in model_lib.summary_lines(model):
        say("  " + line)
    if distribute.is_distributed(strategy):
        say(f"strategy {config.strategy}: {strategy.num_replicas_in_sync} replicas, "
            f"{config.batch_size // strategy.num_replicas_in_sync} examples each per batch")
    if run_dir is not None:
        say(f"logging to {run_dir}  (tensorboard --logdir {run_dir.parent})")
    if run.resuming:
        per_epoch = run.steps_per_epoch
        say(f"resuming {run_dir} from its checkpoint at step {start_step} (epoch "
            f"{start_step // per_epoch + 1}, step {start_step % per_epoch} of {per_epoch})")


def _finish(run: _Run, results: dict, test, final: dict | None, *, step: int) -> dict:
    """The results: completed, saved with the final weights, printed."""
    config, model, strategy, log_dir, say = (run.config, run.model, run.strategy, run.log_dir,
                                             run.say)
    results.update(
        steps=step, epochs=config.epochs, test_loss=test.loss,
        test_accuracy=test.accuracy, test_class_accuracy=_floats(test.class_accuracy),
        test_class_count=[int(c) for c in test.class_count],
        average_forgetting=final["average_forgetting"] if final else None,
        bwt=final["bwt"] if final else None,
        class_forgetting=_floats(final["class_forgetting"]) if final else None,
        **{k: final[k] for k in forgetting.STABILITY_METRICS if final and k in final})
    if log_dir is not None:
        instruments.save_weights(log_dir / "weights" / "final.npz", model)
        (log_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if distribute.task_name(strategy):  # Workers in sync print the same fingerprint.
        print(f"{distribute.task_name(strategy)}: final weights fingerprint "
              f"{distribute.weights_fingerprint(model.trainable_variables)}", flush=True)
    unit = run.scenario.unit
    say(f"\ntest accuracy per {unit}" + ("" if unit == "class" else
                                        " (all: the mean over tasks)") + ":")
    say(tables.class_accuracy_table({"test": (test.accuracy, test.class_accuracy)},
                                    counts=test.class_count, unit=unit,
                                    class_names=run.data.class_names))
    if final:
        say(f"forgetting on the probe: average {tables.number(final['average_forgetting'])}, "
            f"BWT {tables.number(final['bwt'], signed=True)}"
            + (" (one phase: nothing after it to forget)" if np.isnan(final["bwt"]) else ""))
    if final and "min_acc" in final:
        say(f"stability gap (continual evaluation, every {config.eval_every_steps} steps): "
            f"min-ACC {final['min_acc']:.4f}, WC-ACC {final['wc_acc']:.4f}, "
            f"WF{forgetting.WINDOW_STEPS} {final[f'wf_{forgetting.WINDOW_STEPS}']:.4f}")
    return results


def configure_threads(intra_op_threads: int) -> str | None:
    """Sets TensorFlow's threads per op (0 keeps its default) before it starts.

    Returns:
      None, or a note when TensorFlow already runs with another setting (it can only
      be set before the first op: a notebook has to restart to change it).
    """
    if intra_op_threads == 0:
        return None
    current = tf.config.threading.get_intra_op_parallelism_threads()
    if current == intra_op_threads:
        return None
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    except RuntimeError:
        if intra_op_threads in _THREAD_NOTES_GIVEN:  # chained runs: said once per process
            return None
        _THREAD_NOTES_GIVEN.add(intra_op_threads)
        return (f"note: TensorFlow already started with intra_op_threads={current or 'default'}; "
                f"intra_op_threads={intra_op_threads} applies to a fresh process")
    return None


_THREAD_NOTES_GIVEN: set[int] = set()


def _tracing_counts(train_loop, evaluate, tools) -> dict[str, int]:
    """How often each compiled function has been traced so far (1 = never retraced)."""
    counts = {**train_loop.tracing_counts(), "evaluate": evaluate.tracing_count()}
    if tools:
        counts["probe"] = tools.probe_tracing_count()
    return counts


def _validation_sets(run: _Run) -> dict:
    """Maps each phase after which validation runs to its (images, labels).

    `all_classes`: every phase validates on the whole held-out split.
    `current_class`: each class block validates on that class's held-out examples
    only, as `fit(validation_split=...)` did inside the tutorial's class loop.
    """
    config, data = run.config, run.data
    if len(data.y_val) == 0:
        return {}
    phases = sorted({p for e in range(config.epochs) for p in run.epoch_plan(epoch=e).phases})
    if config.validation_scope == "current_class":
        sets = {c: (data.x_val[data.y_val == c], data.y_val[data.y_val == c]) for c in phases}
        return {c: s for c, s in sets.items() if len(s[1])}
    return {p: (data.x_val, data.y_val) for p in phases}


def _floats(a: np.ndarray) -> list:
    return [None if np.isnan(v) else float(v) for v in a]


def _tty() -> bool:
    return sys.stdout.isatty()
