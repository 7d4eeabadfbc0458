"""Continual evaluation: a scenario's tasks scored by the probe at every probe step, and the
metrics of the stability gap (computed by `forgetting.stability_metrics`).

The probe holds `probe_per_class` test examples of every class of every task (as the
task presents them: permuted, with its targets) and scores each task on the outputs
the scenario scores it on; it runs in the compiled loop every `eval_every_steps`
steps, like the tutorial's per-class probe, writing `probe/accuracy/task_T`.

From that step-level curve, at the end of a run (De Lange, van de Ven & Tuytelaars,
"Continual evaluation for lifelong learning: identifying the stability gap", ICLR
2023), with a(k, s) task k's probe accuracy at step s and e_k the step task k's
training ended:

- min-ACC: the mean over every task k but the last of min_{s > e_k} a(k, s), the
  worst accuracy task k fell to at any evaluation after it was learned.
- WC-ACC (worst-case accuracy): 1/T * a(T, end) + (1 - 1/T) * min-ACC, T tasks.
- WF^w (windowed forgetting, w in steps): the mean over those tasks of the largest
  drop max_{s' in [s-w, s]} a(k, s') - a(k, s) within any window of w steps from e_k
  on (the task-end accuracy counts as a window's start).
- ACC: the mean final accuracy over all tasks; average forgetting and BWT come from
  the task-end accuracy matrix, as for the tutorial's classes.
"""

import numpy as np
import tensorflow as tf

from tapeloop.trainers.engine import distribute, evaluation, steps


def task_probe(scenario, forward, x: np.ndarray, y: np.ndarray, *, per_class: int,
               batch_splits: int = 1, strategy=None, objective=None):
    """`probe() -> {tag: tensor}`: each task's probe accuracy and loss, and their means."""
    mask = scenario.output_mask()
    sets = []
    for t in range(scenario.num_tasks):
        rows, targets = scenario.task_examples(x, y, t, limit=per_class)
        scored = _scored(forward, None if mask is None else tf.constant(mask[t]))
        sets.append((tf.constant(rows), tf.constant(targets), distribute.sum_over_replicas(
            strategy, steps.make_eval_step(scored, scenario.num_outputs,
                                           batch_splits=batch_splits, objective=objective))))

    def probe():
        out, accuracies, losses = {}, [], []
        for t, (rows, targets, eval_step) in enumerate(sets):
            sums = eval_step(rows, targets)
            count = tf.reduce_sum(sums["count"])
            accuracies.append(tf.reduce_sum(sums["correct"]) / count)
            losses.append(tf.reduce_sum(sums["loss_sum"]) / count)
            out[f"probe/accuracy/task_{t}"] = accuracies[-1]
            out[f"probe/loss/task_{t}"] = losses[-1]
        out["probe/accuracy"] = tf.add_n(accuracies) / len(sets)
        out["probe/loss"] = tf.add_n(losses) / len(sets)
        return out

    return probe


def task_evaluator(scenario, forward, *, input_dim: int, batch_size: int, batch_splits: int,
                   strategy, objective):
    """`evaluate(x, y) -> EvalResult` over tasks: `class_accuracy[t]` is task t's accuracy
    on all of (x, y)'s examples of its classes, `accuracy` the mean over tasks."""
    mask = scenario.output_mask()
    evaluators = [evaluation.make_evaluator(
        _scored(forward, None if mask is None else tf.constant(mask[t])),
        num_classes=scenario.num_outputs, input_dim=input_dim, batch_size=batch_size,
        batch_splits=batch_splits, strategy=strategy, objective=objective)
        for t in range(scenario.num_tasks)]

    def evaluate(x: np.ndarray, y: np.ndarray) -> evaluation.EvalResult:
        results = [e(*scenario.task_examples(x, y, t)) for t, e in enumerate(evaluators)]
        accuracy = np.array([r.accuracy for r in results])
        loss = np.array([r.loss for r in results])
        count = np.array([int(r.class_count.sum()) for r in results])
        return evaluation.EvalResult(loss=float(loss.mean()), accuracy=float(accuracy.mean()),
                                     class_loss=loss, class_accuracy=accuracy,
                                     class_count=count)

    return evaluation.Evaluator(evaluate, evaluators[0].eval_step)


def _scored(forward, mask):
    if mask is None:
        return forward

    def scored(rows, training=False):
        return steps.masked(forward(rows, training=training), mask)

    return scored
