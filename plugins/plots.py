"""PNG plots (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(rows: Sequence[dict], path: Path, title: str = "") -> None:
    """Per-epoch loss and accuracy curves (train, source-test, target-test)."""
    if not rows:
        return
    ep = [r["epoch"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, label in (("loss", "train loss"), ("source_test_loss", "source-test loss"),
                       ("target_test_loss", "target-test loss"), ("transfer_loss", "transfer loss")):
        if key in rows[0]:
            ax1.plot(ep, [r.get(key) for r in rows], label=label)
    for key, label in (("train_acc", "train acc"), ("source_test_acc", "source-test acc"),
                       ("target_test_acc", "target-test acc")):
        if key in rows[0]:
            ax2.plot(ep, [r.get(key) for r in rows], label=label)
    ax1.set_xlabel("epoch"), ax2.set_xlabel("epoch"), ax1.set_ylabel("loss"), ax2.set_ylabel("accuracy (%)")
    ax1.legend(fontsize=8), ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(cm: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str = "") -> None:
    import numpy as np

    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(0.45 * len(classes) + 2.5, 0.45 * len(classes) + 2))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
