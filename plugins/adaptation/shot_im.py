"""SHOT-IM (Liang et al., 2020): source-free adaptation by information maximisation.

Starts from the source-only model (``needs_source_model``), freezes its head (the source hypothesis) and trains
the feature extractor on unlabeled target data only (``uses_source_labels = False``: the engine then forwards
the target batch alone). Loss = mean per-sample entropy (confident predictions) minus the entropy of the
batch-mean prediction (diverse predictions). SHOT's pseudo-label clustering term (beta = 0.3) is not included.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather_with_grad
from .base import Method, Step


class InformationMaximizationLoss(nn.Module):
    """``forward(logits) = mean_i H(p_i) - H(mean_i p_i)`` (the negative of metrics.info_max_score's score)."""

    def __init__(self, epsilon: float = 1e-5):
        super().__init__()
        self.epsilon = epsilon

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        p = F.softmax(logits, dim=1)
        ent = -(p * torch.log(p + self.epsilon)).sum(1).mean()
        p_mean = p.mean(0)
        div = -(p_mean * torch.log(p_mean + self.epsilon)).sum()
        return ent - div


class SHOTIM(Method):
    name = "shot_im"
    uses_target = True
    uses_source_labels = False
    frozen = ("head",)
    needs_source_model = True

    def __init__(self, model: nn.Module, num_classes: int, args: argparse.Namespace, total_iters: int):
        super().__init__(model, num_classes, args, total_iters)
        self.im = InformationMaximizationLoss()

    def forward(self, step: Step) -> tuple[torch.Tensor, dict[str, float]]:
        # the diversity term reads the batch's mean prediction: under torchrun, the global batch's
        return self.im(gather_with_grad(step.logits_t)), {}

    def config(self) -> dict:
        return {"loss": "entropy - diversity", "frozen": list(self.frozen)}
