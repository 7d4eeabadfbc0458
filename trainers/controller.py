"""The controller: decides when to train, evaluate, log and print, around the compiled loop.

Data flows one way: config -> data -> pipeline -> compiled loop -> writers.
Step numbers: a value logged at step s describes the model after s updates
(`train/*` at step s is the batch that update s+1 learns from, measured before it).
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from data import mnist, pipelines, splits
from trainers import (evaluation, instruments, loop, model as model_lib, optimizers, probe,
                      steps, tables, writers)
from trainers.config import Config


class SetupError(ValueError):
    """The run cannot start as configured; the message says why and what to do."""


class RunDirError(SetupError):
    """The run directory cannot be used; the message says why and what to do."""


def load_splits(config: Config) -> splits.Splits:
    """Loads and preprocesses the data set named by `config`.

    Raises:
      mnist.DataError: the MNIST source is missing or bad.
    """
    if config.dataset == "noise":
        return splits.noise_splits(
            num_examples=config.noise_examples, input_dim=config.noise_dim,
            num_classes=config.noise_classes, validation_split=config.validation_split,
            seed=config.seed)
    m, source = mnist.load_mnist(config.data_dir)
    return splits.mnist_splits(
        m, validation_split=config.validation_split,
        max_train_examples=config.max_train_examples,
        max_test_examples=config.max_test_examples, source=source)


def check_run_dir(run_dir: Path, *, overwrite: bool) -> None:
    """Refuses a run directory that is a file, unwritable, or already holds a run.

    Raises:
      RunDirError: with the reason and the way out.
    """
    run_dir = Path(run_dir)
    for parent in (run_dir, *run_dir.parents):
        if parent.exists():
            if not parent.is_dir():
                raise RunDirError(f"{parent} is a file, not a directory")
            if not _writable(parent):
                raise RunDirError(f"{parent} is not writable")
            break
    if run_dir.is_dir() and any(run_dir.iterdir()) and not overwrite:
        raise RunDirError(f"{run_dir} already holds a run: pass --overwrite to replace it, "
                          "or choose another --run_name")


def train_and_evaluate(config: Config, run_dir: str | Path | None, *,
                       data: splits.Splits | None = None, overwrite: bool = False,
                       verbose: bool = True) -> dict:
    """Trains the model of `config` and evaluates it; logs everything under `run_dir`.

    Args:
      config: the run's settings.
      run_dir: where events, `config.json`, `results.json`, `accuracy_matrix.csv`/`.png`
        and `weights/` go; None logs nothing.
      data: preloaded splits (default: `load_splits(config)`).
      overwrite: replace whatever `run_dir` holds.
      verbose: print the set-up, a progress bar, one line per epoch and the final table.

    Returns:
      The results (also saved as `run_dir/results.json`): final test loss/accuracy
      overall and per class, last epoch's training loss/accuracy, last validation
      loss/accuracy, forgetting metrics (None with the probe off), steps, and seconds
      per epoch.

    Raises:
      SetupError (RunDirError), mnist.DataError: before anything is written.
    """
    say = print if verbose else (lambda *a, **k: None)
    threads_note = configure_threads(config.intra_op_threads)
    if run_dir is not None:
        run_dir = Path(run_dir)
        check_run_dir(run_dir, overwrite=overwrite)
    data = data if data is not None else load_splits(config)
    probe_set = None
    if config.eval_every_steps:
        try:
            probe_set = probe.select_probe(data.x_test, data.y_test,
                                           per_class=config.probe_per_class,
                                           num_classes=data.num_classes)
        except ValueError as e:
            raise SetupError(str(e)) from None
    if run_dir is not None:
        if overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(config.to_json() + "\n")

    tf.keras.utils.set_random_seed(config.seed)
    model = model_lib.build_mlp(
        input_dim=data.input_dim, hidden_sizes=config.hidden_sizes,
        num_classes=data.num_classes, activation=config.activation, dropout=config.dropout,
        seed=config.seed)
    optimizer = optimizers.make_optimizer(
        config.optimizer, learning_rate=config.learning_rate, momentum=config.momentum,
        nesterov=config.nesterov)
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    writer = writers.MetricWriter(run_dir)
    tools = (instruments.Instruments(model, probe_set, num_classes=data.num_classes,
                                     writer=writer, run_dir=run_dir,
                                     batch_splits=config.batch_splits) if probe_set else None)
    train_loop = loop.make_train_loop(
        steps.make_train_step(model, optimizer, batch_splits=config.batch_splits), global_step,
        log_every_step=config.log_every_step, every_n_steps=config.eval_every_steps,
        periodic=tools.periodic if tools else None,
        before_periodic=tools.before_periodic if tools else None)
    evaluate = evaluation.make_evaluator(model, num_classes=data.num_classes,
                                         input_dim=data.input_dim,
                                         batch_size=config.eval_batch_size,
                                         batch_splits=config.batch_splits)
    val_sets = _validation_sets(config, data)
    stream = iter(pipelines.make_pipeline(
        config.order, data.x_train, data.y_train, batch_size=config.batch_size,
        seed=config.seed, epochs=config.epochs, class_order=config.class_order))
    trained_classes = tuple(sorted(set(int(c) for c in data.y_train)))

    if threads_note:
        say(threads_note)
    say(f"data: {data.source}")
    say(f"train {len(data.y_train)}, validation {len(data.y_val)} "
        f"({config.validation_scope}), test {len(data.y_test)} examples; "
        f"order {config.order}, batch {config.batch_size}")
    say(f"probe: {len(probe_set[1])} test examples, every {config.eval_every_steps} steps "
        "and at every phase end" if tools else "probe: off")
    for line in model_lib.summary_lines(model):
        say("  " + line)
    if run_dir is not None:
        say(f"logging to {run_dir}  (tensorboard --logdir {run_dir.parent})")
        instruments.save_weights(run_dir / "weights" / "initial.npz", model)

    results = {"epoch_seconds": []}
    with writer.as_default():
        instruments.describe_run(writer, config, instrumented=tools is not None)
        if tools:
            loop.make_periodic_writer(tools.periodic, global_step,
                                      len(model.trainable_variables))()
        for epoch in range(config.epochs):
            plan = pipelines.plan_epoch(data.y_train, order=config.order,
                                        batch_size=config.batch_size, epoch=epoch,
                                        class_order=config.class_order)
            bar = tf.keras.utils.Progbar(plan.total_steps, verbose=int(verbose and _tty()),
                                         stateful_metrics=["loss", "acc"])
            start = time.perf_counter()
            sums = np.zeros(3)  # loss_sum, correct, count
            done = 0
            for phase, phase_steps in zip(plan.phases, plan.steps):
                if tools:
                    tools.phase_start()
                for k in _chunks(phase_steps, config.steps_per_loop):
                    out = train_loop(stream, tf.constant(k, tf.int64))
                    out = {key: float(v) for key, v in out.items()}
                    sums += (out["loss_sum"], out["correct"], out["count"])
                    done += k
                    bar.update(done, [("loss", out["loss"]), ("acc", out["accuracy"])])
                step = int(global_step)
                if phase in val_sets:
                    val = evaluate(*val_sets[phase])
                    writer.write_scalars(step, val.scalars("val"))
                    results.update(val_loss=val.loss, val_accuracy=val.accuracy)
                if tools:
                    tools.phase_end(step=step, epoch=epoch, phase=phase,
                                    task=(phase,) if config.order == "sorted" else trained_classes)
            test = evaluate(data.x_test, data.y_test)
            train_loss, train_accuracy = sums[0] / sums[2], sums[1] / sums[2]
            if tools:
                tools.epoch_end(step)
            seconds = time.perf_counter() - start
            writer.write_scalars(step, {
                "epoch/train_loss": train_loss, "epoch/train_accuracy": train_accuracy,
                "epoch/seconds": seconds, **test.scalars("test"),
                **{f"test/accuracy/class_{c}": a for c, a in enumerate(test.class_accuracy)
                   if not np.isnan(a)}})
            traces = _tracing_counts(train_loop, evaluate, tools)
            writer.write_scalars(step, {f"tracing/{k}": v for k, v in traces.items()})
            for name, count in traces.items():
                if epoch > 0 and count > results["tracing"][name]:
                    say(f"warning: {name} was traced again in epoch {epoch + 1} ({count} traces):"
                        " an input changed shape or dtype, or a Python value changed")
            results["tracing"] = traces
            writer.flush()
            results["epoch_seconds"].append(seconds)
            results.update(train_loss=train_loss, train_accuracy=train_accuracy)
            val_text = (f" | val loss {results['val_loss']:.4f} acc {results['val_accuracy']:.4f}"
                        if val_sets else "")
            say(f"epoch {epoch + 1}/{config.epochs} step {step}: train loss {train_loss:.4f} "
                f"acc {train_accuracy:.4f}{val_text} | test loss {test.loss:.4f} "
                f"acc {test.accuracy:.4f} | {seconds:.1f} s", flush=True)
        final = tools.summary() if tools else None
        writer.write_scalars(step, {
            "final/test_accuracy": test.accuracy,
            **({"final/average_forgetting": final["average_forgetting"],
                "final/bwt": final["bwt"]} if final else {})})
    writer.close()

    results.update(
        steps=step, epochs=config.epochs, test_loss=test.loss,
        test_accuracy=test.accuracy, test_class_accuracy=_floats(test.class_accuracy),
        test_class_count=[int(c) for c in test.class_count],
        average_forgetting=final["average_forgetting"] if final else None,
        bwt=final["bwt"] if final else None,
        class_forgetting=_floats(final["class_forgetting"]) if final else None)
    if run_dir is not None:
        instruments.save_weights(run_dir / "weights" / "final.npz", model)
        (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    say("\ntest accuracy per class:")
    say(tables.class_accuracy_table({"test": (test.accuracy, test.class_accuracy)},
                                    counts=test.class_count))
    if final:
        say(f"forgetting on the probe: average {final['average_forgetting']:.4f}, "
            f"BWT {final['bwt']:+.4f}")
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
        return (f"note: TensorFlow already started with intra_op_threads={current or 'default'}; "
                f"intra_op_threads={intra_op_threads} applies to a fresh process")
    return None


def _tracing_counts(train_loop, evaluate, tools) -> dict[str, int]:
    """How often each compiled function has been traced so far (1 = never retraced)."""
    counts = {"train_loop": train_loop.experimental_get_tracing_count(),
              "evaluate": evaluate.eval_step.experimental_get_tracing_count()}
    if tools:
        counts["probe"] = tools.probe_tracing_count()
    return counts


def _validation_sets(config: Config, data: splits.Splits) -> dict:
    """Maps each phase after which validation runs to its (images, labels).

    `all_classes`: every phase validates on the whole held-out split.
    `current_class`: each class block validates on that class's held-out examples
    only, as `fit(validation_split=...)` did inside the tutorial's class loop.
    """
    if len(data.y_val) == 0:
        return {}
    phases = (range(config.epochs) if config.order == "shuffled"
              else sorted(set(int(c) for c in data.y_train)))
    if config.validation_scope == "current_class":
        sets = {c: (data.x_val[data.y_val == c], data.y_val[data.y_val == c]) for c in phases}
        return {c: s for c, s in sets.items() if len(s[1])}
    return {p: (data.x_val, data.y_val) for p in phases}


def _chunks(total: int, size: int):
    """Yields chunk lengths of at most `size` that add up to `total`."""
    for start in range(0, total, size):
        yield min(size, total - start)


def _floats(a: np.ndarray) -> list:
    return [None if np.isnan(v) else float(v) for v in a]


def _tty() -> bool:
    return sys.stdout.isatty()


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)
