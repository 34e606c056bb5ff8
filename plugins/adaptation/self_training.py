"""FixMatch-style self-training (Sohn et al., 2020) as a term any adaptation method can add (``--self-training W``).

Each unlabeled target image comes as two views: the method's usual (weak) training crop and a strong view
(RandAugment + cutout). The weak view's prediction, where it is confident (max probability >= threshold), is a
hard pseudo-label for the strong view: ``loss = mean_i 1[max p_weak_i >= tau] * CE(logits_strong_i, argmax p_weak_i)``
(the mean over the whole batch, as in FixMatch and tllib's ``ConfidenceBasedSelfTrainingLoss``). No target label is
read: the labels are the model's own.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConfidenceBasedSelfTrainingLoss(nn.Module):
    """``forward(logits_strong, logits_weak) -> (loss, mask, pseudo_labels)``; the weak logits are not trained through."""

    def __init__(self, threshold: float = 0.95):
        super().__init__()
        self.threshold = threshold

    def forward(self, logits_strong: torch.Tensor, logits_weak: torch.Tensor):
        confidence, pseudo_labels = F.softmax(logits_weak.detach().float(), dim=1).max(dim=1)
        mask = (confidence >= self.threshold).float()
        loss = (F.cross_entropy(logits_strong.float(), pseudo_labels, reduction="none") * mask).mean()
        return loss, mask, pseudo_labels
