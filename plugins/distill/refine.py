"""Clustering-refined teacher pseudo-labels (the self-supervised labelling of SHOT, Liang et al., 2020).

A teacher adapted to the target still mislabels whole regions of it, but its features often group those images
with the right class: each class centroid is the mean of the target features weighted by the teacher's
probability of that class, every image takes the label of its nearest centroid (cosine), and the centroids are
recomputed from those hard labels for another round. Only the teacher's features and probabilities are read;
never a target label.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class RefinedLabels:
    labels: torch.Tensor  # (N,) refined label per unlabeled target image, in the loader's index order
    changed: float  # share of images whose refined label differs from the teacher's argmax (label-free)
    classes_kept: int  # classes that kept a centroid (the others had no probability mass on the target)


def cluster_refined_labels(features: torch.Tensor, probs: torch.Tensor, rounds: int = 2,
                           min_mass: float = 1e-3) -> RefinedLabels:
    """SHOT's weighted k-means from the teacher's soft assignment. ``features`` ``(N, D)``, ``probs`` ``(N, C)``.
    A class whose total weight is below ``min_mass`` of the images has no centroid (SHOT drops empty clusters:
    a centroid of almost nothing is noise that would steal images)."""
    if features.shape[0] != probs.shape[0] or features.ndim != 2 or probs.ndim != 2:
        raise ValueError(f"features {tuple(features.shape)} and probabilities {tuple(probs.shape)} do not pair up")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    f = F.normalize(features.float(), dim=1)
    weights = probs.float()
    n, num_classes = probs.shape
    for _ in range(rounds):
        mass = weights.sum(0)
        centroids = F.normalize(weights.t() @ f / mass.clamp_min(1e-8)[:, None], dim=1)
        similarity = f @ centroids.t()
        similarity[:, mass < min_mass * n] = -float("inf")
        labels = similarity.argmax(1)
        weights = F.one_hot(labels, num_classes).float()
    kept = int((weights.sum(0) > 0).sum())
    return RefinedLabels(labels, float((labels != probs.argmax(1)).float().mean()), kept)


class RefinedPseudoLabelLoss(nn.Module):
    """Cross-entropy of the student's target logits on fixed refined labels, looked up by the images' indices."""

    def __init__(self, refined: RefinedLabels):
        super().__init__()
        self.register_buffer("labels", refined.labels.clone(), persistent=False)

    def forward(self, y_s: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(y_s, self.labels[idx.to(self.labels.device)].to(y_s.device))
