"""Pictures for people: the accuracy matrix and the per-class probe curves, as PNG.

matplotlib (Agg, no display needed) draws them with axes, labels, a legend and a
colour bar; BUILD.md says why it is the one plotting dependency. It is imported
when a picture is drawn, not when a run starts.
"""

import io

import numpy as np

# Ten clearly distinct colours (matplotlib's tab10); more classes take evenly spaced hues.
def class_colours(n: int) -> list:
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    return [matplotlib.colormaps["hsv"](i / n) for i in range(n)]


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot

    return pyplot.figure(figsize=(width, height), dpi=100)


def _png(fig) -> bytes:
    from matplotlib import pyplot

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    pyplot.close(fig)
    return buffer.getvalue()


def accuracy_matrix_png(matrix: np.ndarray, *, row_labels: list[str], title: str,
                        unit: str = "class") -> bytes:
    """The accuracy matrix as a labelled heatmap: rows = phases in order, columns = classes.

    Every row is drawn; with many rows (short class blocks) only some are labelled.
    """
    matrix = np.asarray(matrix, np.float64)
    rows, classes = matrix.shape
    fig = _figure(2.2 + 0.45 * classes, 1.6 + min(0.25 * rows, 9.0))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", cmap="viridis", vmin=0.0,
                      vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(classes))
    ax.set_xlabel(f"{unit} measured (probe accuracy)")
    every = max(1, int(np.ceil(rows / 40)))
    ax.set_yticks(range(0, rows, every))
    ax.set_yticklabels(row_labels[::every], fontsize=7 if rows > 20 else 9)
    ax.set_ylabel(f"after phase ({unit} trained)")
    if rows <= 12 and classes <= 12:
        for r in range(rows):
            for c in range(classes):
                if not np.isnan(matrix[r, c]):
                    ax.text(c, r, f"{matrix[r, c]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if matrix[r, c] < 0.6 else "black")
    fig.colorbar(image, ax=ax, label="accuracy")
    ax.set_title(title, fontsize=10)
    return _png(fig)


def probe_curves_png(runs: list[dict]) -> bytes:
    """Per-class probe accuracy of each run (one panel each, same axes), phases shaded.

    Each run: `name`, `steps` (probe steps), `accuracy` (steps x classes), `classes`,
    `phases` ([(first step, end step, label)]), `by_class` (labels are classes) and
    `zoom` (None, or a (first, last) step range drawn again in a panel of its own:
    the last epoch of a class-sorted run, where the sawtooth can be read).
    """
    panels = [(run, None) for run in runs] + [(run, run["zoom"]) for run in runs
                                               if run.get("zoom")]
    fig = _figure(12, 2.8 * len(panels) + 0.6)
    last = max((r["phases"][-1][1] if r["phases"] else max(r["steps"], default=1))
               for r in runs)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (run, zoom) in zip(axes, panels):
        first, end = zoom or (0, last)
        steps = np.asarray(run["steps"])
        accuracy = np.asarray(run["accuracy"], np.float64).reshape(len(steps), -1)
        colours = class_colours(accuracy.shape[1])
        for i, (a, b, label) in enumerate(run["phases"]):
            if b < first or a > end:
                continue
            ax.axvspan(a, b, color="0.90" if i % 2 else "0.97", lw=0)
            if (b - a) / max(end - first, 1) > 0.012:
                ax.text((max(a, first) + min(b, end)) / 2, 1.02, str(label) if run["by_class"]
                        else f"ep {label + 1}", ha="center", va="bottom", fontsize=7,
                        color="0.35")
        shown = (steps >= first) & (steps <= end)
        for c in range(accuracy.shape[1]):
            ax.plot(steps[shown], accuracy[shown, c], color=colours[c], lw=1.0,
                    label=(run.get("labels") or [f"class {k}" for k in run["classes"]])[c])
        ax.set_ylim(0.0, 1.0)
        ax.set_xlim(first, end)
        ax.set_ylabel("probe accuracy")
        ax.set_xlabel("step")
        what = (f"steps {first}-{end}, the last epoch" if zoom else "the whole run")
        unit = run.get("unit", "class")
        ax.set_title(f"{run['name']}: {what}" + (f"  (top: the {unit} each shaded block trains)"
                                                  if run["by_class"] else ""),
                     fontsize=10, loc="left", pad=12)
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return _png(fig)
