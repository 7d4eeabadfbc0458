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

import numpy as np
import tensorflow as tf

from tapeloop.data import splits
from tapeloop.trainers.engine import (distribute, evaluation, loop, model as model_lib,
                                      optimizers, steps)
from tapeloop.trainers.extend import actions as actions_lib, remedies as remedies_lib
from tapeloop.trainers.instruments import continual, drift, suite as instruments
from tapeloop.trainers.records import events, forgetting, run_dirs, tables, writers
from tapeloop.trainers.records.config import Config
from tapeloop.trainers.records.run_dirs import RunDirError, SetupError  # noqa: F401 (API)
from tapeloop.trainers.run import checkpoints, standard_actions, stopping
from tapeloop.trainers.run.setup import (Plan, Request, Run, checked_control,
                                         checked_remedies, load_splits, prepare)  # noqa: F401


Interrupted, StoppedAfter = standard_actions.Interrupted, standard_actions.StoppedAfter


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
    actions = checked_control(run_dir, actions=actions, stop_after_steps=stop_after_steps,
                               profile_steps=profile_steps, inspect_steps=inspect_steps)
    config, remedies = checked_remedies(config, scenario, remedies, train_step)
    if config.jit_compile and (check_numerics or (strategy is not None
                                                  and distribute.is_distributed(strategy))):
        raise SetupError("jit_compile: not with " + ("check_numerics (XLA has no numeric "
                         "checks)" if check_numerics else "a tf.distribute strategy"))
    if strategy is None:
        try:
            strategy = distribute.make_strategy(config.strategy)
        except ValueError as e:
            raise SetupError(str(e)) from None
    request = Request(data=data, model=model, loss=loss, penalty=penalty, make_step=train_step,
                      actions=actions, scenario=scenario, remedies=tuple(remedies),
                      overwrite=overwrite, resume=resume, verbose=verbose,
                      stop_after_steps=stop_after_steps, profile_steps=profile_steps,
                      inspect_steps=frozenset(inspect_steps), check_numerics=check_numerics,
                      script_flags=script_flags, strategy=strategy)
    chief = distribute.is_chief(strategy)
    say = print if verbose and chief else (lambda *a, **k: None)  # the chief speaks for all
    threads_note = configure_threads(config.intra_op_threads)
    run_dir = None if run_dir is None else Path(run_dir)
    # One process trains a run directory at a time: the chief holds its lock throughout.
    lock = run_dirs.RunLock(run_dir) if run_dir is not None and chief else None
    with lock or contextlib.nullcontext():
        run = prepare(config, run_dir, request, chief=chief, lock=lock, say=say,
                       threads_note=threads_note)
        try:
            return _train(run)
        finally:
            if run.where.own_dir is not None and run.where.own_dir != run_dir:
                shutil.rmtree(run.where.own_dir, ignore_errors=True)

def _build(run: Run, writer: writers.MetricWriter):
    """The optimizer, step counter, instruments, compiled functions and context of a run.

    Everything is created under `strategy.scope()`, so a tf.distribute strategy
    mirrors the variables; the step counter stays a plain host variable. A compiled
    model keeps its own optimizer. Batch splits are switched off for a model with
    batch statistics (`model.has_batch_statistics`), which a split would change.
    The actions' and remedies' state is built here, before the checkpoint is assembled.
    """
    config, data, model, strategy = run.config, run.data, run.model, run.request.strategy
    objective, scenario = run.objective, run.plan.scenario
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
            run_dir=run.where.log_dir, say=run.say, forward=_task_forward(forward, mask),
            strategy=strategy, scenario=scenario, seed=config.seed,
            batch_size=config.batch_size,
            train_x=scenario.inputs(data, data.x_train),
            forward_of=lambda other: model_lib.flat_forward(other, input_shape))
        for action in run.actions:  # their state, before the checkpoint is assembled
            if isinstance(action, remedies_lib.Remedy):
                action.context = context
            action.build(model)
        probing = run.plan.probe_set is not None or (per_task and config.eval_every_steps)
        task_probe = (continual.task_probe(
            scenario, forward, run.plan.test_x, data.y_test,
            per_class=config.probe_per_class, batch_splits=batch_splits, strategy=strategy,
            objective=objective) if per_task and probing else None)
        tools = (instruments.Instruments(model, run.plan.probe_set, num_classes=data.num_classes,
                                         writer=writer, run_dir=run.where.log_dir,
                                         batch_splits=batch_splits, strategy=strategy,
                                         forward=forward, objective=objective,
                                         every_n_steps=config.eval_every_steps,
                                         task_probe=task_probe,
                                         num_tasks=scenario.num_tasks if per_task else 0)
                 if probing else None)
        continual_args = ({} if run.request.make_step is not None else  # a user's step:
                          {"output_mask": mask, "remedies": run.request.remedies})  # none
        train_step = (run.request.make_step or steps.make_train_step)(
            model, optimizer, batch_splits=batch_splits,
            distributed=distribute.is_distributed(strategy), forward=forward,
            objective=objective, penalty=run.request.penalty, **continual_args)
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
                                or run.request.check_numerics),
            log_regularization=regularized, jit_compile=config.jit_compile,
            jit_batch_rows=run.plan.stream_batch)
    return Parts(optimizer=optimizer, global_step=global_step, tools=tools,
                 train_loop=train_loop, evaluate=evaluate, test=test, context=context,
                 writer=writer)


@dataclasses.dataclass(frozen=True)
class Parts:
    """What `_build` makes of a run: its optimizer, step counter, instruments (None with
    the probe off), compiled loop, evaluators (`test`: per task in a scenario), context."""

    optimizer: object
    global_step: tf.Variable
    tools: object
    train_loop: loop.TrainLoop
    evaluate: evaluation.Evaluator
    test: evaluation.Evaluator
    context: actions_lib.RunContext
    writer: writers.MetricWriter


def _example_shape(run: Run) -> tuple[int, ...]:
    """One example's shape as the model sees it (a scenario may transform it)."""
    return run.plan.scenario.example_shape(run.data)


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
               epochs: int, plan: Plan, steps_per_loop: int, finished,
               progress: standard_actions.Progress) -> None:
    """The loop: train up to the next step an action asks for, and tell the actions.

    `plan`: the epochs' phases (`plan.epoch_plan`) and length. `finished(end_step)` says
    whether a phase or epoch ending there was done before (`Checkpointing.finished`: a
    resumed run skips those).
    """
    epoch_plan, steps_per_epoch = plan.epoch_plan, plan.steps_per_epoch
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


def _train(run: Run) -> dict:
    """Builds the run's pieces, resumes it if asked, runs the loop, returns the results."""
    config, model, data = run.config, run.model, run.data
    writer = writers.MetricWriter(run.where.log_dir)
    parts = _build(run, writer)
    optimizer, global_step, tools, train_loop, evaluate, test, context = (
        parts.optimizer, parts.global_step, parts.tools, parts.train_loop, parts.evaluate,
        parts.test, parts.context)
    extra = {f"action_{i}": actions_lib.checkpointed(a) for i, a in enumerate(run.actions)
             if a.checkpoint_items()}
    saved_items = {i: frozenset(a.checkpoint_items()) for i, a in enumerate(run.actions)}
    state = (checkpoints.RunState(model=model, optimizer=optimizer, global_step=global_step,
                                  drift=tools.drift if tools else None,
                                  run_dir=run.where.own_dir, restore_dir=run.where.run_dir,
                                  extra=extra)
             if run.where.run_dir is not None else None)
    if state is not None and not run.where.resuming:
        _say_disk_use(run, state)
    results = {"epoch_seconds": []}
    progress = standard_actions.Progress()
    checkpointing = standard_actions.Checkpointing(
        state, progress, every_steps=config.checkpoint_every_steps,
        steps_per_loop=config.steps_per_loop, flush=writer.flush,
        host_state=lambda: {"results": results,
                            "matrix": tools.matrix.to_dict() if tools else None})
    if run.where.resuming:
        finished = _resume(run, checkpointing, results, tools)
        if finished is not None:
            writer.close()
            return finished
    scenario = run.plan.scenario
    stream = distribute.distribute_stream(
        run.request.strategy, lambda shard, shards: scenario.pipeline(
            data, context.train_x, batch_size=run.plan.stream_batch, seed=config.seed,
            epochs=config.epochs, start_step=int(global_step),
            joint=any(r.joint for r in run.request.remedies), shard=(shard, shards)))
    trainer = Trainer(train_loop, stream, global_step, checkpointing)
    _say_setup(run, optimizer, start_step=trainer.step)
    if not run.where.resuming and run.where.log_dir is not None:
        instruments.save_weights(run.where.log_dir / "weights" / "initial.npz", model)
    report = standard_actions.EpochReport(
        epochs=config.epochs, steps_per_epoch=run.plan.steps_per_epoch, progress=progress,
        results=results, writer=writer, evaluate=test,
        test_set=(run.plan.test_x, data.y_test),
        test_every_epoch=config.test_every_epoch, bar=run.request.verbose and _tty(), say=run.say,
        tracing_counts=lambda: _tracing_counts(train_loop, evaluate, tools),
        unit=scenario.unit)
    stop = stopping.StopRequests()
    every = _standard_actions(run, parts, trainer=trainer, checkpointing=checkpointing,
                              stop=stop, report=report, progress=progress,
                              results=results, saved_items=saved_items)
    try:
        with writer.as_default(), stop:
            if not run.where.resuming:
                instruments.describe_run(writer, config, instrumented=tools is not None,
                                         recorded=run.recorded, run_dir=run.where.log_dir)
                if tools:
                    loop.make_periodic_writer(tools.periodic, global_step,
                                              len(model.trainable_variables))()
            try:
                run_epochs(trainer, every, context, epochs=config.epochs, plan=run.plan,
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
            if final and scenario.unit == "task" and run.where.log_dir is not None:
                final.update(_stability(run.where.log_dir, tools, scenario))
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


def _resume(run: Run, checkpointing, results: dict, tools) -> dict | None:
    """Restores the latest checkpoint; returns the saved results if the run is finished.

    Raises:
      SetupError: the run is past the epochs asked for.
    """
    try:
        host = checkpointing.restore()
    except checkpoints.NoCheckpoint as e:
        raise RunDirError(f"{run.where.run_dir}: {e}: pass --overwrite to start it again, or "
                          "choose another --run_name") from None
    for line in checkpointing.skipped:
        run.say(f"note: {line}")
    results.clear()
    results.update(host["results"])
    if tools and host["matrix"]:
        tools.matrix = forgetting.AccuracyMatrix.from_dict(host["matrix"])
    step, epochs = checkpointing.start_step, run.config.epochs
    total = epochs * run.plan.steps_per_epoch
    if step > total:
        raise SetupError(f"{run.where.run_dir} is at step {step}, past the {epochs} epochs asked "
                         f"for ({total} steps): pass more --epochs to continue it, or "
                         "--overwrite to start it again")
    if step == total and (run.where.run_dir / "results.json").is_file():
        run.say(f"{run.where.run_dir} already finished its {epochs} epochs (step {step}); nothing "
                "to do (--epochs more to continue it, --overwrite to start it again)")
        return run_dirs.read_json(run.where.run_dir / "results.json")
    return None


def _standard_actions(run: Run, parts: Parts, *, trainer, checkpointing, stop, report,
                      progress, results, saved_items) -> list:
    """The run's actions, in the order they act on one event (see `standard_actions`)."""
    tools, writer, evaluate = parts.tools, parts.writer, parts.evaluate
    scenario = run.plan.scenario
    remedies = run.request.remedies
    task_of = functools.partial(scenario.trained_in, joint=any(r.joint for r in remedies))
    if scenario.unit == "task":
        what = f"{scenario.name}, {'+'.join(r.name for r in remedies) or 'none'}"
    else:
        what = f"{scenario.name}, {run.data.name}"
    sa = standard_actions
    own = [sa.Validation(_validation_sets(run) if scenario.unit == "class" else {},
                         evaluate=evaluate, writer=writer,
                         results=results, progress=progress,
                         once_per_epoch=getattr(scenario, "validate_once_per_epoch", False))]
    if tools:
        own.append(sa.Instrumentation(tools, progress, task_of=task_of, title=(
            f"accuracy matrix: {run.where.run_dir.name if run.where.run_dir else 'run'} ({what})")))
    own += [report, *run.actions, sa.ActionStateCheck(run.actions, saved_items)]
    if run.request.profile_steps:
        own.append(sa.Profiling(*run.request.profile_steps, run.where.run_dir, run.say))
    if run.request.inspect_steps:
        own.append(sa.Inspection(run.request.inspect_steps, trainer, run.where.run_dir,
                                 drift.variable_names(run.model), run.say))
    own.append(sa.StopOnSignal(stop, checkpointing))
    if run.request.stop_after_steps:
        own.append(sa.StopAfter(run.request.stop_after_steps, checkpointing))
    return own + [checkpointing]


# A run directory past this size is announced at the start, with what takes the space.
LARGE_RUN_BYTES = 2 << 30


def _say_disk_use(run: Run, state: checkpoints.RunState) -> None:
    """Says, before training, when the checkpoints will take gigabytes of disk."""
    each = state.size_bytes()
    parameters = model_lib.trainable_parameter_count(run.model)
    total = each * state.kept + 2 * 4 * parameters  # and the initial and final weights
    if total > LARGE_RUN_BYTES:
        run.say(f"note: {run.where.run_dir} will take about {total / 2**30:.1f} GB: each "
                f"checkpoint "
                f"holds {each / 2**30:.1f} GB (model {parameters:,} parameters, optimizer "
                f"slots, drift references), {state.kept} are kept; a smaller model (or "
                "input) takes less")


def _say_setup(run: Run, optimizer, *, start_step: int) -> None:
    """Prints what the run trains on, with what, and where it writes."""
    say, config, data, model = run.say, run.config, run.data, run.model
    strategy, run_dir, probe_set = run.request.strategy, run.where.run_dir, run.plan.probe_set
    per_task = run.plan.scenario.unit == "task"
    replayed = config.batch_size - run.plan.stream_batch
    if run.threads_note:
        say(run.threads_note)
    say(f"data: {data.source}")
    if per_task:
        say(run.plan.scenario.describe())
    if per_task or run.request.remedies:
        say("remedies: " + (", ".join(
            f"{r.name}" + (" (" + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in r.hparams().items()) + ")"
                           if r.hparams() else "") for r in run.request.remedies)
                or "none (fine-tuning)"))
    say(f"train {len(data.y_train)}, validation {len(data.y_val)} "
        f"({config.validation_scope}), test {len(data.y_test)} examples; "
        + (f"order {run.plan.scenario.name}, " if not per_task else "")
        + f"batch {config.batch_size}"
        + (f" ({run.plan.stream_batch} new + {replayed} remembered)" if replayed else "")
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
        + (f"trained with {run.objective.name}" if run.request.make_step is None else
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
    if run.where.resuming:
        per_epoch = run.plan.steps_per_epoch
        say(f"resuming {run_dir} from its checkpoint at step {start_step} (epoch "
            f"{start_step // per_epoch + 1}, step {start_step % per_epoch} of {per_epoch})")


def _finish(run: Run, results: dict, test, final: dict | None, *, step: int) -> dict:
    """The results: completed, saved with the final weights, printed."""
    config, model, strategy, log_dir, say = (run.config, run.model, run.request.strategy,
                                             run.where.log_dir,
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
    unit = run.plan.scenario.unit
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


def _validation_sets(run: Run) -> dict:
    """Maps each phase after which validation runs to its (images, labels).

    `all_classes`: every phase validates on the whole held-out split.
    `current_class`: each class block validates on that class's held-out examples
    only, as `fit(validation_split=...)` did inside the tutorial's class loop.
    """
    config, data = run.config, run.data
    if len(data.y_val) == 0:
        return {}
    phases = sorted({p for e in range(config.epochs) for p in run.plan.epoch_plan(epoch=e).phases})
    if config.validation_scope == "current_class":
        sets = {c: (data.x_val[data.y_val == c], data.y_val[data.y_val == c]) for c in phases}
        return {c: s for c, s in sets.items() if len(s[1])}
    return {p: (data.x_val, data.y_val) for p in phases}


def _floats(a: np.ndarray) -> list:
    return [None if np.isnan(v) else float(v) for v in a]


def _tty() -> bool:
    return sys.stdout.isatty()
