"""The report's figure grids (PNG), one figure per model or regime with one panel per task: training curves,
t-SNE of source vs target features, the A-distance of every model, and the deployed file's confusion matrices.

Each function draws what it is given and returns whether it wrote a figure (nothing to draw: no file).
"""
from __future__ import annotations

import csv
import math
import statistics
import textwrap
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .features import Embedding

# (history column, legend): the loss and accuracy curves; source-test is the validation split (labeled source
# images held out of training), target-test the split the tables report.
LOSS_CURVES = (("loss", "train"), ("source_test_loss", "validation (source-test)"),
               ("target_test_loss", "target-test"))
ACC_CURVES = (("train_acc", "train"), ("source_test_acc", "validation (source-test)"),
              ("target_test_acc", "target-test"))
COLOURS = {"train": "tab:gray", "validation (source-test)": "tab:orange", "target-test": "tab:blue"}


def _task_title(task: str) -> str:
    return task.replace("2", "→")


def _layout(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(max_cols, n)
    return math.ceil(n / cols), cols


def _suptitle(fig, title: str, size: float = 10) -> None:
    """A figure title wrapped to the figure's width (a one-panel grid is narrow)."""
    chars = max(30, int(fig.get_figwidth() * 72 / (0.6 * size)))
    fig.suptitle(textwrap.fill(title, chars), fontsize=size)


def _save(fig, path: Path) -> None:
    from ..plots import plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- curves
def read_history(path: Path) -> list[dict[str, float]]:
    """``history.csv`` as rows of floats (empty cells and unreadable files give nothing)."""
    try:
        with path.open() as f:
            return [{k: float(v) for k, v in row.items() if k and v not in (None, "")} for row in csv.DictReader(f)]
    except (OSError, ValueError):
        return []


def _mean_band(histories: Sequence[list[dict]], key: str) -> Optional[tuple[list[float], list[float], list[float]]]:
    """Epochs, mean and std over seeds of one column (epochs every seed has)."""
    per_seed = [{r["epoch"]: r[key] for r in h if key in r and "epoch" in r} for h in histories]
    per_seed = [s for s in per_seed if s]
    if not per_seed:
        return None
    epochs = sorted(set.intersection(*(set(s) for s in per_seed)))
    vals = [[s[e] for s in per_seed] for e in epochs]
    return epochs, [statistics.fmean(v) for v in vals], [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]


def curves_grid(histories: dict[str, list[list[dict]]], title: str, path: Path) -> bool:
    """One regime's training curves: per task a loss panel above an accuracy panel, mean over seeds (band: ± std
    over seeds). ``histories``: task -> one history per seed."""
    from ..plots import plt

    tasks = [t for t, hs in histories.items() if any(hs)]
    if not tasks:
        return False
    rows, cols = _layout(len(tasks))
    fig, axes = plt.subplots(2 * rows, cols, figsize=(4.2 * cols, 2.6 * 2 * rows), squeeze=False,
                             layout="constrained")
    for i in range(rows * cols):
        ax_loss, ax_acc = axes[2 * (i // cols), i % cols], axes[2 * (i // cols) + 1, i % cols]
        if i >= len(tasks):
            ax_loss.axis("off"), ax_acc.axis("off")
            continue
        hs = histories[tasks[i]]
        for ax, curves, ylabel in ((ax_loss, LOSS_CURVES, "loss"), (ax_acc, ACC_CURVES, "accuracy (%)")):
            for key, name in curves:
                band = _mean_band(hs, key)
                if band is None:
                    continue
                ep, m, s = band
                ax.plot(ep, m, color=COLOURS[name], label=name, lw=1.2)
                ax.fill_between(ep, np.subtract(m, s), np.add(m, s), color=COLOURS[name], alpha=0.15, lw=0)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.tick_params(labelsize=7)
        n_seeds = sum(1 for h in hs if h)
        ax_loss.set_title(f"{_task_title(tasks[i])} ({n_seeds} seed{'s' if n_seeds > 1 else ''})", fontsize=9)
        ax_acc.set_xlabel("epoch", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels) or 1, fontsize=8, frameon=False)
    _suptitle(fig, title)
    _save(fig, path)
    return True


# ----------------------------------------------------------------------------- t-SNE and A-distance
def tsne_grid(panels: Sequence[tuple[str, Union[Embedding, Path, None], Optional[float], str]], title: str,
              path: Path) -> bool:
    """One model's t-SNE per task: source red, target blue (tllib's colours). ``panels``: (task, an embedding,
    or the PNG a run's analysis phase drew, or None; the A-distance to print; why there is nothing to draw)."""
    from ..plots import plt

    if not any(e is not None for _, e, _, _ in panels):
        return False
    rows, cols = _layout(len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.3 * rows + 0.4), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        if i >= len(panels):
            ax.axis("off")
            continue
        task, e, dist, why = panels[i]
        ax.set_title(_task_title(task) + ("" if dist is None else f", A-distance {dist:.2f}"), fontsize=9)
        if e is None:
            ax.text(0.5, 0.5, f"not drawn:\n{why}", ha="center", va="center", fontsize=7, wrap=True,
                    transform=ax.transAxes)
            continue
        if isinstance(e, Path):  # the run's own drawing, its frame and title included
            ax.imshow(plt.imread(e))
            ax.axis("off")
            continue
        s, t = e.points[:e.n_source], e.points[e.n_source:]
        ax.scatter(s[:, 0], s[:, 1], s=3, c="r", alpha=0.5, label=f"source ({len(s)})")
        ax.scatter(t[:, 0], t[:, 1], s=3, c="b", alpha=0.5, label=f"target ({len(t)})")
        ax.legend(loc="best", fontsize=6, markerscale=2)
    _suptitle(fig, title)
    _save(fig, path)
    return True


def a_distance_grid(values: dict[str, dict[str, list[float]]], models: Sequence[str], path: Path) -> bool:
    """Proxy A-distance per task (panels) and model (bars, top to bottom in ``models`` order): mean over the seeds
    measured, whiskers ± std. ``values``: task -> model -> values over seeds."""
    from ..plots import plt

    tasks = [t for t, per in values.items() if any(per.get(m) for m in models)]
    if not tasks:
        return False
    rows, cols = _layout(len(tasks))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = [textwrap.fill(m, 28) for m in models]
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols + 2.2, (0.32 * len(models) + 0.9) * rows),
                             squeeze=False, sharey=True, sharex=True, layout="constrained")
    for i, ax in enumerate(axes.flat):
        if i >= len(tasks):
            ax.axis("off")
            continue
        per = values[tasks[i]]
        for j, m in enumerate(models):
            v = per.get(m) or []
            if v:
                ax.barh(j, statistics.fmean(v), xerr=statistics.stdev(v) if len(v) > 1 else None,
                        color=colours[j % len(colours)], capsize=2, height=0.7)
        ax.set_yticks(range(len(models)), names, fontsize=7)
        ax.set_xlim(min([0.0, *(x for v in per.values() for x in v)]), 2.0)  # 2: linearly separable domains
        ax.set_title(_task_title(tasks[i]), fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        if i // cols == rows - 1:
            ax.set_xlabel("A-distance (lower: closer domains)", fontsize=7)
    axes[0, 0].invert_yaxis()  # shared: the first model on top in every panel
    _save(fig, path)
    return True


# ----------------------------------------------------------------------------- confusion
def confusion_grid(panels: Sequence[dict], title: str, path: Path) -> bool:
    """Target-test confusion matrices, one panel per task (``task``, ``confusion``, ``classes``, ``artifact``,
    ``seed``, ``acc``); colour: the share of a true class (row) predicted as each class, numbers: counts (when
    the classes are few enough to read)."""
    from ..plots import plt

    if not panels:
        return False
    rows, cols = _layout(len(panels))
    n_cls = max(len(p["confusion"]) for p in panels)
    side = min(5.0, max(2.8, 0.28 * n_cls + 1.4))
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, side * rows + 0.5), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.axis("off")
            continue
        p = panels[i]
        cm = np.asarray(p["confusion"], dtype=float)
        share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        classes = list(p.get("classes") or range(len(cm)))
        ticks = range(len(classes))
        fs = 6 if len(classes) <= 12 else 4
        ax.set_xticks(ticks, classes, rotation=90, fontsize=fs)
        ax.set_yticks(ticks, classes, fontsize=fs)
        if len(classes) <= 12:
            for r in range(cm.shape[0]):
                for c in range(cm.shape[1]):
                    if cm[r, c]:
                        ax.text(c, r, int(cm[r, c]), ha="center", va="center", fontsize=5,
                                color="white" if share[r, c] > 0.5 else "black")
        acc = "" if p.get("acc") is None else f", {p['acc']:.1f}%"
        ax.set_title(f"{_task_title(p['task'])}: {p['artifact']} (seed {p['seed']}{acc})", fontsize=8)
        ax.set_xlabel("predicted", fontsize=7), ax.set_ylabel("true", fontsize=7)
    _suptitle(fig, title)
    _save(fig, path)
    return True
