"""Target metrics (scikit-learn where it has them) and model resources (params, MACs via FlopCounterMode, MB)."""
from __future__ import annotations

import os
import time
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels over a loader, in eval mode (restores the previous mode)."""
    was_training = model.training
    model.eval()
    outs, labels = [], []
    for x, y in loader:
        outs.append(model(x.to(device)).float().cpu())
        labels.append(y)
    model.train(was_training)
    return torch.cat(outs), torch.cat(labels)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """PROTOCOL.md's per-run target metrics. Accuracies in percent (tllib's convention)."""
    from sklearn.metrics import (adjusted_rand_score, confusion_matrix, normalized_mutual_info_score,
                                 precision_recall_fscore_support, rand_score)

    y_true, y_pred = labels.numpy(), logits.argmax(1).numpy()
    classes = list(range(num_classes))
    p, r, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes, average="macro", zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=classes)
    support = cm.sum(1)
    per_class = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    return {
        "n": int(len(y_true)),
        "acc": float((y_true == y_pred).mean() * 100),
        "loss": float(F.cross_entropy(logits, labels).item()),
        "precision_macro": float(p * 100),
        "recall_macro": float(r * 100),
        "f1_macro": float(f1 * 100),
        "per_class_acc": [None if np.isnan(a) else float(a * 100) for a in per_class],
        "confusion": cm.tolist(),
        "nmi": float(normalized_mutual_info_score(y_true, y_pred)),
        "rand": float(rand_score(y_true, y_pred)),
        "ari": float(adjusted_rand_score(y_true, y_pred)),
    }


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean().item() * 100)


def entropy(probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-8))).sum(dim)


def info_max_score(logits: torch.Tensor) -> dict:
    """Unsupervised validator (no labels): mean prediction entropy (lower is better) and diversity, the
    entropy of the mean prediction (higher is better); ``score = diversity - entropy``."""
    p = logits.float().softmax(1)
    ent = float(entropy(p).mean())
    div = float(entropy(p.mean(0, keepdim=True)).squeeze())
    return {"entropy": ent, "diversity": div, "im_score": div - ent}


def prediction_collapse(logits: torch.Tensor, num_classes: int, share: float = 0.9) -> dict:
    """Label-free collapse check: a model whose predictions on the (unlabeled) target fall into one class has
    collapsed (an adversarial game lost, a degenerate self-training), whatever its accuracy happens to be.
    ``collapsed`` when one class takes at least ``share`` of the predictions (and more than the 2/num_classes a
    two-class task may legitimately reach)."""
    pred = logits.argmax(1)
    counts = torch.bincount(pred, minlength=num_classes)
    top = int(counts.argmax())
    majority = float(counts[top]) / max(1, len(pred))
    return {"majority_class": top, "majority_share": majority, "classes_predicted": int((counts > 0).sum()),
            "collapsed": bool(num_classes > 1 and len(pred) >= 2 * num_classes
                              and majority >= max(share, 2.0 / num_classes))}


def soft_neighborhood_density(logits: torch.Tensor, temperature: float = 0.05) -> float:
    """SND (Saito et al., 2021), an unsupervised validator (higher is better): the mean entropy of each target
    sample's softmax over cosine similarities to the other samples' predictions (self excluded), at
    ``temperature`` 0.05. Dense neighbourhoods of consistent predictions give high entropy."""
    z = F.normalize(logits.float().softmax(1), dim=1)
    sim = (z @ z.t()) / temperature
    sim.fill_diagonal_(float("-inf"))
    return float(entropy(sim.softmax(1)).mean())


def count_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


@torch.no_grad()
def count_flops(model: nn.Module, input_size: int, channels: int = 3) -> dict:
    """FLOPs at batch 1 by torch's FlopCounterMode (a multiply-add counts 2); MACs = FLOPs / 2."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    x = torch.zeros(1, channels, input_size, input_size)
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    flops = int(counter.get_total_flops())
    return {"flops": flops, "macs": flops // 2, "input_size": input_size}


def file_size_mb(path: str | os.PathLike) -> float:
    """Size on disk in MB (10^6 bytes)."""
    return os.path.getsize(path) / 1e6


def time_calls(fn: Callable[[], object], iters: int, warmup: int) -> list[float]:
    """Milliseconds of ``iters`` calls of ``fn`` after ``warmup`` untimed ones (latency of any runtime)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return times
