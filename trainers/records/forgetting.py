"""Forgetting metrics over an accuracy matrix, in numpy (host side, at phase boundaries).

The accuracy matrix A has one row per finished phase t (in run order) and one
column per class c: A[t, c] is the held-out probe accuracy on class c right after
phase t. A phase is a class block in sorted order and an epoch in shuffled order;
its *task* is the set of classes it trained on.

- Per-class forgetting after phase t: f[c] = max_{l <= t} A[l, c] - A[t, c], the
  best accuracy so far minus the current one (>= 0).
- Average forgetting: the mean of f over the classes trained so far.
- Backward transfer (Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory"):
  BWT_t = mean over earlier phases i < t of (R[t, task_i] - R[i, task_i]), where
  R[t, task] is the mean accuracy over the task's classes after phase t. Negative
  BWT: learning later phases hurt earlier ones. With one pass over ten single-class
  tasks this is exactly the paper's definition; over several epochs every earlier
  phase counts as a task of its own.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass
class AccuracyMatrix:
    """Rows of per-class probe accuracy, one per finished phase, with where they were taken."""

    num_classes: int
    rows: list = dataclasses.field(default_factory=list)  # each (num_classes,) float
    tasks: list = dataclasses.field(default_factory=list)  # classes trained in each phase
    steps: list = dataclasses.field(default_factory=list)  # global step at each row
    epochs: list = dataclasses.field(default_factory=list)  # epoch of each row
    phases: list = dataclasses.field(default_factory=list)  # phase id of each row
    _folded: int = dataclasses.field(default=0, init=False, repr=False, compare=False)

    def add(self, row, *, task, step: int, epoch: int, phase: int) -> None:
        """Appends the row measured after a phase that trained the classes `task`."""
        row = np.asarray(row, np.float64)
        if row.shape != (self.num_classes,):
            raise ValueError(f"row has shape {row.shape}, expected ({self.num_classes},)")
        self.rows.append(row)
        self.tasks.append(tuple(int(c) for c in task))
        self.steps.append(int(step))
        self.epochs.append(int(epoch))
        self.phases.append(int(phase))

    @property
    def matrix(self) -> np.ndarray:
        return np.array(self.rows).reshape(len(self.rows), self.num_classes)

    def summary(self) -> dict:
        """Forgetting metrics after the latest row (see the module docstring).

        Kept as running sums, so each call costs the rows added since the last one:
        short class blocks make thousands of rows. Equal to `class_forgetting`,
        `average_forgetting` and `backward_transfer` of the whole matrix (tested).
        """
        if not self.rows:
            raise ValueError("the accuracy matrix has no rows yet")
        if self._folded > len(self.rows):
            self._folded = 0  # rows were replaced: start over
        if self._folded == 0:
            self._best = np.full(self.num_classes, np.nan)
            self._task_weight = np.zeros(self.num_classes)  # sum of 1/|task| per class
            self._after = 0.0  # sum of each row's mean accuracy on its own task
            self._seen = set()
        for row, task in zip(self.rows[self._folded:], self.tasks[self._folded:]):
            self._best = np.fmax(self._best, row)
            self._task_weight[list(task)] += 1.0 / len(task)
            self._after += float(row[list(task)].mean())
            self._seen.update(task)
        self._folded = len(self.rows)
        last, task = self.rows[-1], list(self.tasks[-1])
        per_class = self._best - last
        earlier = len(self.rows) - 1
        bwt = float("nan")
        if earlier:
            weight = self._task_weight.copy()
            weight[task] -= 1.0 / len(task)
            bwt = (float(weight @ np.nan_to_num(last))
                   - (self._after - float(last[task].mean()))) / earlier
        seen = sorted(self._seen)
        return {"class_forgetting": per_class,
                "average_forgetting": float(np.mean(per_class[seen])) if seen else float("nan"),
                "bwt": bwt}

    def to_dict(self) -> dict:
        """JSON-ready state (for checkpoints); `from_dict` rebuilds it."""
        return {"num_classes": self.num_classes, "rows": [list(map(float, r)) for r in self.rows],
                "tasks": [list(t) for t in self.tasks], "steps": self.steps,
                "epochs": self.epochs, "phases": self.phases}

    @classmethod
    def from_dict(cls, state: dict) -> "AccuracyMatrix":
        return cls(num_classes=state["num_classes"],
                   rows=[np.array(r, np.float64) for r in state["rows"]],
                   tasks=[tuple(t) for t in state["tasks"]], steps=list(state["steps"]),
                   epochs=list(state["epochs"]), phases=list(state["phases"]))

    def to_csv(self) -> str:
        """step, epoch, phase, class_0, ..., one line per row."""
        head = ",".join(["step", "epoch", "phase"] + [f"class_{c}"
                                                      for c in range(self.num_classes)])
        lines = [head]
        for step, epoch, phase, row in zip(self.steps, self.epochs, self.phases, self.rows):
            lines.append(",".join([str(step), str(epoch), str(phase)]
                                  + [f"{v:.6f}" for v in row]))
        return "\n".join(lines) + "\n"


def class_forgetting(matrix: np.ndarray) -> np.ndarray:
    """Best accuracy so far minus the last row's, per class (zeros for a single row)."""
    matrix = np.asarray(matrix, np.float64)
    if matrix.ndim != 2 or len(matrix) == 0:
        raise ValueError(f"matrix must be 2-D with at least one row, got {matrix.shape}")
    return np.nanmax(matrix, axis=0) - matrix[-1]


def average_forgetting(matrix: np.ndarray, classes) -> float:
    """Mean of `class_forgetting` over `classes` (the classes trained so far)."""
    classes = list(classes)
    if not classes:
        return float("nan")
    return float(np.mean(class_forgetting(matrix)[classes]))


def backward_transfer(matrix: np.ndarray, tasks) -> float:
    """Mean change, from right after its phase to now, of every earlier phase's task."""
    matrix = np.asarray(matrix, np.float64)
    if len(matrix) < 2:
        return float("nan")
    last = matrix[-1]
    changes = [last[list(task)].mean() - matrix[i, list(task)].mean()
               for i, task in enumerate(tasks[:-1])]
    return float(np.mean(changes))


def phases_are_classes(blocks: list, epoch_ends: list) -> bool:
    """Whether the `phase_blocks` are class blocks: more of them than epochs."""
    return len(blocks) > max(len(epoch_ends), 1)


def phase_blocks(phase_points) -> list[list[int]]:
    """`[[first step, end step, label]]`, one per run of equal `train/phase` values.

    `phase_points`: `(step, phase)` pairs in step order. Points TensorBoard thinned
    out leave gaps; a block then ends at its last point seen.
    """
    blocks = []
    for step, value in phase_points:
        label = int(round(value))
        if blocks and blocks[-1][2] == label:
            blocks[-1][1] = int(step) + 1
        else:
            blocks.append([int(step), int(step) + 1, label])
    return blocks


def sawtooth(curves: dict[int, np.ndarray], phase_of_step: dict[int, int], *,
             start: int, end: int) -> dict:
    """Per-class shape of the probe curves over one stretch of training (e.g. the last epoch).

    Args:
      curves: `{step: per-class probe accuracy}` at the probe steps.
      phase_of_step: `{step: phase of the batch trained at that step}`.
      start, end: the stretch is the probes at steps in (start, end], each the state
        right after the batch of step s - 1.

    Returns:
      `spread`: max - min per class over the stretch;
      `peak_phase`: phase of the batch just trained at each class's first maximum;
      `peak_in_own_block`: whether the class's accuracy is highest (ties included)
        at a probe taken inside the block that trains that class (sorted order).

    Raises:
      ValueError: if no probe lies in the stretch.
    """
    steps = sorted(s for s in curves if start < s <= end)
    if not steps:
        raise ValueError(f"no probe steps in ({start}, {end}]")
    # A class never probed (no test examples) is NaN throughout: it peaks nowhere.
    values = np.array([curves[s] for s in steps])
    measured = ~np.all(np.isnan(values), axis=0)
    filled = np.where(measured, values, -np.inf)
    phases = np.array([phase_of_step.get(s - 1, -1) for s in steps])
    best = np.nanmax(filled, axis=0)
    own_best = np.array([np.nanmax(filled[phases == c, c]) if np.any(phases == c) else -np.inf
                         for c in range(values.shape[1])])
    with np.errstate(invalid="ignore"):  # -inf - -inf in the unmeasured columns
        spread = np.where(measured, best - np.nanmin(filled, axis=0), np.nan)
    return {"spread": spread,
            "peak_phase": np.where(measured, phases[np.nanargmax(filled, axis=0)], -1),
            "peak_in_own_block": measured & (own_best >= best - 1e-9)}


def block_ids(phase_of_step: dict[int, int]) -> dict[int, int]:
    """Numbers the phase blocks: a new block starts wherever the phase changes."""
    out, block, previous = {}, -1, None
    for step in sorted(phase_of_step):
        phase = phase_of_step[step]
        if phase != previous or step - 1 not in phase_of_step:
            block += 1
        out[step] = block
        previous = phase
    return out


def drift_growth(drift: dict[int, float], phase_of_step: dict[int, int]) -> dict:
    """How distance-from-phase-start behaves inside each phase block.

    Args:
      drift: `{step: distance from the phase-start weights}` at the probe steps; the
        probe at step s measured the state right after the batch of step s - 1.
      phase_of_step: `{step: phase of the batch trained at that step}`.

    Returns:
      `rising_pairs` / `pairs`: consecutive probes inside one block where the distance
      grew; `rising_blocks` / `blocks`: blocks (with two or more probes) whose last
      probe is farther than their first.
    """
    blocks_of = block_ids(phase_of_step)
    blocks: dict[int, list[float]] = {}
    for step in sorted(drift):
        if step - 1 in blocks_of:
            blocks.setdefault(blocks_of[step - 1], []).append(drift[step])
    runs = [b for b in blocks.values() if len(b) >= 2]
    return {"rising_pairs": sum(int(b[i + 1] > b[i]) for b in runs for i in range(len(b) - 1)),
            "pairs": sum(len(b) - 1 for b in runs),
            "rising_blocks": sum(int(b[-1] > b[0]) for b in runs), "blocks": len(runs)}


# Continual evaluation (De Lange, van de Ven & Tuytelaars, ICLR 2023;
# see trainers/instruments/continual.py).
WINDOW_STEPS = 100  # WF^w's window, in training steps
STABILITY_METRICS = ("min_acc", "wc_acc", f"wf_{WINDOW_STEPS}")  # result/* scalars

# What each forgetting metric is, in one sentence: the `description` of its summaries,
# which TensorBoard's own tabs show (writers.ScalarProtos).
_AVERAGE = ("Average forgetting: the mean, over the classes (or tasks) trained so far, of "
            "the best probe accuracy so far minus the current one.")
_BWT = ("Backward transfer (Lopez-Paz & Ranzato 2017): the mean, over earlier phases, of "
        "their task's probe accuracy now minus right after the phase; negative: later "
        "phases hurt earlier ones.")
DESCRIPTIONS = {
    "forgetting/average": _AVERAGE, "result/average_forgetting": _AVERAGE + " At the end.",
    "forgetting/bwt": _BWT, "result/bwt": _BWT + " At the end.",
    "result/min_acc": "min-ACC (De Lange et al. 2023): the mean over tasks of the lowest probe "
                      "accuracy a task fell to after it was learned (the stability gap).",
    "result/wc_acc": "WC-ACC (De Lange et al. 2023): 1/T x the last task's accuracy + "
                     "(1 - 1/T) x min-ACC, a worst-case accuracy.",
    f"result/wf_{WINDOW_STEPS}": f"WF{WINDOW_STEPS} (De Lange et al. 2023): the mean over "
                                 f"tasks of the largest drop of a task's probe accuracy within "
                                 f"{WINDOW_STEPS} steps.",
}


def stability_metrics(probe_steps: np.ndarray, accuracy: np.ndarray, task_ends: list[int], *,
                      window: int = WINDOW_STEPS) -> dict:
    """min-ACC, WC-ACC and WF^window from the step-level probe (see the module docstring).

    Args:
      probe_steps: (S,) the steps the probe measured, ascending.
      accuracy: (S, T) each task's probe accuracy at those steps.
      task_ends: the step each task's training ended, in task order (T of them).
    """
    probe_steps, accuracy = np.asarray(probe_steps), np.asarray(accuracy, np.float64)
    tasks = accuracy.shape[1]
    minima, drops = [], []
    for k in range(tasks - 1):
        after = probe_steps > task_ends[k]
        if not after.any():
            continue
        minima.append(float(np.min(accuracy[after, k])))
        since = probe_steps >= task_ends[k]  # the drops count from the task-end accuracy
        curve, at = accuracy[since, k], probe_steps[since]
        worst = 0.0
        for i in range(len(curve)):
            inside = (at >= at[i] - window) & (at <= at[i])
            worst = max(worst, float(np.max(curve[inside]) - curve[i]))
        drops.append(worst)
    min_acc = float(np.mean(minima)) if minima else float("nan")
    final = accuracy[-1]
    wc_acc = (float(final[-1]) / tasks + (1 - 1 / tasks) * min_acc if minima
              else float(final[-1]))
    return {"min_acc": min_acc, "wc_acc": wc_acc, f"wf_{window}": (float(np.mean(drops))
                                                                   if drops else float("nan")),
            "acc": float(np.mean(final)), "task_min_acc": minima}
