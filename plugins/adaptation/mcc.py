"""MCC (Jin et al., 2020): minimum class confusion on target predictions.

With temperature-scaled probabilities ``P`` (B x C) and entropy weights ``w = 1 + exp(-H(p))`` (mean 1), the
class confusion is ``C = P^T diag(w) P``; each row is normalised to sum 1 (category normalisation) and the loss is
the off-diagonal mass over the number of classes. ``C`` is symmetric, so this equals tllib's column-broadcast
normalisation exactly.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import gather_with_grad
from ..interop import tllib_losses
from ..metrics import entropy
from .base import Method, Step
from .dann import require_positive
from .kernels import fp32


class MinimumClassConfusionLoss(nn.Module):
    """``forward(logits)`` on target logits (tllib shape); ``temperature`` 2.5 (paper/tllib Office default)."""

    def __init__(self, temperature: float = 2.5):
        super().__init__()
        self.temperature = temperature

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        b, c = logits.shape
        with fp32(logits.device):
            p = F.softmax(logits.float() / self.temperature, dim=1)
            w = 1.0 + torch.exp(-entropy(p).detach())  # certain samples count more; the weights are not trained
            w = (b * w / w.sum()).unsqueeze(1)
            confusion = (p * w).t() @ p
            confusion = confusion / confusion.sum(1, keepdim=True)
            return (confusion.sum() - confusion.trace()) / c


class MCC(Method):
    name = "mcc"
    uses_target = True

    def __init__(self, model: nn.Module, num_classes: int, args: argparse.Namespace, total_iters: int):
        super().__init__(model, num_classes, args, total_iters)
        require_positive(args, "temperature")
        if tllib_losses.wanted(args):
            self.losses, self.mcc = "tllib", tllib_losses.minimum_class_confusion(args.temperature)
        else:
            self.mcc = MinimumClassConfusionLoss(args.temperature)

    @staticmethod
    def add_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("-T", "--temperature", type=float, default=2.5, help="softmax temperature")
        tllib_losses.add_args(parser)

    def forward(self, step: Step) -> tuple[torch.Tensor, dict[str, float]]:
        # the class confusion is a statistic of the whole batch: under torchrun, of the global one
        return self.mcc(gather_with_grad(step.logits_t)), {}

    def config(self) -> dict:
        return {"temperature": self.mcc.temperature, **self.losses_config()}
