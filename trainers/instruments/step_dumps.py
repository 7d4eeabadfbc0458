"""Inspection dumps of single training steps: `RUN/inspect/step_<N>.npz`, saved and read.

Step N is the batch whose `train/*` scalars are logged at step N: the update that
takes the global step from N to N+1. A dump holds that batch (`image`, `label`,
`phase`), the model's `logits` and `example_loss` on it (before the update, with
the step's dropout masks), `grad_norms` (one per trainable variable, named in
`variable_names`) and the applied update (`update/<name>`: after minus before).
"""

import os
from pathlib import Path

import numpy as np

from tapeloop.trainers.records import tables


def dump_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "inspect" / f"step_{step}.npz"


def save(path: Path, step: int, out: dict, variable_names: list[str]) -> dict:
    """Writes one step's dump (`out`: numpy values of `train_loop.inspect`), atomically.

    Returns:
      The dump as `load` would read it back.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"step": np.int64(step), "phase": np.int64(out["phase"]),
              "image": out["image"], "label": out["label"], "logits": out["logits"],
              "example_loss": out["example_loss"], "grad_norms": out["grad_norms"],
              "variable_names": np.array(variable_names)}
    arrays.update({f"update/{name}": u for name, u in zip(variable_names, out["update"])})
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return {**{k: v for k, v in arrays.items() if not k.startswith("update/")},
            "variable_names": list(variable_names),
            "update": dict(zip(variable_names, out["update"]))}


def load(path: Path) -> dict:
    """Reads a dump into a dict of arrays (`update` becomes {name: array}).

    Raises:
      ValueError: the file is not a tapeloop step dump.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"{path}: not a readable npz file ({e})") from None
    missing = {"step", "label", "logits", "example_loss", "grad_norms",
               "variable_names"} - set(d)
    if missing:
        raise ValueError(f"{path}: not a tapeloop step dump (missing {', '.join(sorted(missing))})")
    names = [str(n) for n in d.pop("variable_names")]
    d["variable_names"] = names
    d["update"] = {n: d.pop(f"update/{n}") for n in names}
    return d


def summary_line(dump: dict, path: Path | None = None) -> str:
    """One line: the batch's loss and accuracy, its worst example, gradient and update norms."""
    loss = dump["example_loss"]
    predicted = np.argmax(dump["logits"], axis=1)
    worst = int(np.argmax(loss))
    update_norm = np.sqrt(sum(float(np.sum(u.astype(np.float64) ** 2))
                              for u in dump["update"].values()))
    grad_norm = float(np.sqrt(np.sum(dump["grad_norms"].astype(np.float64) ** 2)))
    return (f"inspect step {int(dump['step'])}: phase {int(dump['phase'])}, "
            f"{len(loss)} examples, loss {loss.mean():.4f}, "
            f"accuracy {np.mean(predicted == dump['label']):.4f}, worst example {worst} "
            f"(label {int(dump['label'][worst])}, predicted {int(predicted[worst])}, "
            f"loss {loss[worst]:.4f}), grad norm {grad_norm:.4f}, update norm {update_norm:.6f}"
            + (f" -> {path}" if path else ""))


def describe(dump: dict, *, worst: int = 5) -> str:
    """A readable report of one dump: summary, per-class loss, worst examples, per-layer norms."""
    loss = dump["example_loss"]
    labels = dump["label"]
    logits = dump["logits"].astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    predicted = np.argmax(logits, axis=1)
    lines = [summary_line(dump), "", "per class in this batch:"]
    rows = []
    for c in np.unique(labels):
        m = labels == c
        rows.append([str(int(c)), str(int(m.sum())), f"{loss[m].mean():.4f}",
                     f"{np.mean(predicted[m] == c):.4f}"])
    lines.append(tables.format_table(["class", "examples", "mean loss", "accuracy"], rows))
    lines += ["", f"worst {min(worst, len(loss))} examples:"]
    order = np.argsort(-loss, kind="stable")[:worst]
    lines.append(tables.format_table(
        ["index", "label", "predicted", "loss", "p(label)", "p(predicted)"],
        [[str(int(i)), str(int(labels[i])), str(int(predicted[i])), f"{loss[i]:.4f}",
          f"{probs[i, labels[i]]:.4f}", f"{probs[i, predicted[i]]:.4f}"] for i in order]))
    lines += ["", "per variable:"]
    lines.append(tables.format_table(
        ["variable", "shape", "grad norm", "update norm", "max |update|"],
        [[n, "x".join(map(str, u.shape)), f"{g:.6f}", f"{np.linalg.norm(u):.6f}",
          f"{np.abs(u).max():.6f}"]
         for n, g, u in zip(dump["variable_names"], dump["grad_norms"],
                            dump["update"].values())]))
    bias = [n for n in dump["variable_names"] if n.endswith("logits/bias")]
    if bias:
        u = dump["update"][bias[0]]
        lines += ["", "update of each class's output bias (" + bias[0] + "):",
                  "  ".join(f"{c}: {v:+.6f}" for c, v in enumerate(u))]
    return "\n".join(lines)
