"""Target metrics recovered from a recorded confusion matrix.

A confusion matrix holds every (true, predicted) pair, so the macro precision/recall/F1, NMI, Rand index and
adjusted Rand index of a record written before a metric was added are exactly recoverable from it (the loss is
not: it needs the logits). The report fills in only what a record lacks; recorded values are never replaced.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

# What a confusion matrix determines (``liteda.metrics.classification_metrics`` keys).
DERIVABLE = ("acc", "precision_macro", "recall_macro", "f1_macro", "nmi", "rand", "ari")


def pairs_from_confusion(cm: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) with one entry per counted image (row = true class, column = predicted)."""
    cm = np.asarray(cm, dtype=np.int64)
    true, pred = np.nonzero(cm)
    counts = cm[true, pred]
    return np.repeat(true, counts), np.repeat(pred, counts)


def metrics_from_confusion(cm: Sequence[Sequence[int]]) -> dict[str, float]:
    """The metrics of :data:`DERIVABLE`, computed as ``classification_metrics`` computes them from labels."""
    from sklearn.metrics import (adjusted_rand_score, normalized_mutual_info_score, precision_recall_fscore_support,
                                 rand_score)

    y_true, y_pred = pairs_from_confusion(cm)
    if not len(y_true):
        return {}
    classes = list(range(len(cm)))
    p, r, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes, average="macro", zero_division=0)
    return {"acc": float((y_true == y_pred).mean() * 100), "precision_macro": float(p * 100),
            "recall_macro": float(r * 100), "f1_macro": float(f1 * 100),
            "nmi": float(normalized_mutual_info_score(y_true, y_pred)), "rand": float(rand_score(y_true, y_pred)),
            "ari": float(adjusted_rand_score(y_true, y_pred))}


def completed(metrics: Optional[dict]) -> dict:
    """``metrics`` with the derivable metrics it lacks filled in from its ``confusion`` (a copy; unchanged when
    it has no confusion matrix or lacks nothing)."""
    metrics = dict(metrics or {})
    cm = metrics.get("confusion")
    if not cm or all(metrics.get(k) is not None for k in DERIVABLE):
        return metrics
    derived = metrics_from_confusion(cm)
    return {**metrics, **{k: v for k, v in derived.items() if metrics.get(k) is None}}
